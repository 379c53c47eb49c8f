#include "connection.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <deque>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "noise_channel.h"
#include "url.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::wa {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

int64_t NowUnixMs() { return absl::ToUnixMillis(absl::Now()); }

// The WebSocket below the Noise layer, plain or over TLS.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual awaitable<void> Connect(const Url& url, const std::string& origin,
                                  absl::Duration timeout) = 0;
  virtual awaitable<size_t> Read(beast::flat_buffer& buffer) = 0;
  virtual awaitable<void> Write(ByteView data) = 0;
  virtual awaitable<void> Close() = 0;
  virtual void Abort() = 0;
};

template <class Stream>
class BeastTransport final : public Transport {
 public:
  template <class... Args>
  explicit BeastTransport(asio::any_io_executor executor, Args&&... args)
      : resolver_(executor), ws_(executor, std::forward<Args>(args)...) {}

  awaitable<void> Connect(const Url& url, const std::string& origin,
                          absl::Duration timeout) override {
    auto& lowest = beast::get_lowest_layer(ws_);
    lowest.expires_after(ToChrono(timeout));
    auto endpoints = co_await resolver_.async_resolve(url.host, url.port, use_awaitable);
    if (aborted_) throw beast::system_error(asio::error::operation_aborted);
    co_await lowest.async_connect(endpoints, use_awaitable);
    if constexpr (!std::is_same_v<Stream, websocket::stream<beast::tcp_stream>>) {
      auto& tls = ws_.next_layer();
      if (!SSL_set_tlsext_host_name(tls.native_handle(), url.host.c_str())) {
        throw beast::system_error(beast::error_code(static_cast<int>(::ERR_get_error()),
                                                    asio::error::get_ssl_category()));
      }
      tls.set_verify_mode(asio::ssl::verify_peer);
      tls.set_verify_callback(asio::ssl::host_name_verification(url.host));
      co_await tls.async_handshake(asio::ssl::stream_base::client, use_awaitable);
    }
    lowest.expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = ToChrono(timeout);
    t.idle_timeout = websocket::stream_base::none();  // the WhatsApp keepalive watches liveness
    t.keep_alive_pings = false;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator([origin](websocket::request_type& req) {
      req.set(beast::http::field::origin, origin);
      req.set(beast::http::field::cache_control, "no-cache");
      req.set(beast::http::field::pragma, "no-cache");
    }));
    ws_.binary(true);
    ws_.read_message_max(kMaxFrameSize + 16);
    std::string host = url.host;
    if (url.port != (url.tls ? "443" : "80")) host += ":" + url.port;
    co_await ws_.async_handshake(host, url.target, use_awaitable);
  }

  awaitable<size_t> Read(beast::flat_buffer& buffer) override {
    co_return co_await ws_.async_read(buffer, use_awaitable);
  }

  awaitable<void> Write(ByteView data) override {
    co_await ws_.async_write(asio::buffer(data.data(), data.size()), use_awaitable);
  }

  awaitable<void> Close() override {
    co_await ws_.async_close(websocket::close_code::normal, use_awaitable);
  }

  void Abort() override {
    // A lookup in flight would otherwise go on to open a fresh socket after this.
    aborted_ = true;
    resolver_.cancel();
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

 private:
  tcp::resolver resolver_;
  Stream ws_;
  bool aborted_ = false;
};

using PlainWs = websocket::stream<beast::tcp_stream>;
using TlsWs = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

int CodeOf(const Node& node, std::string_view attr) {
  int code = 0;
  const std::string* v = node.Attr(attr);
  return v && absl::SimpleAtoi(*v, &code) ? code : 0;
}

}  // namespace

std::string_view TemporaryBanText(int code) {
  switch (code) {
    case 101:
      return "sent too many messages to people who do not have the number in their contacts";
    case 102:
      return "too many people blocked the number";
    case 103:
      return "created too many groups with people who do not have the number in their contacts";
    case 104:
      return "sent the same message to too many people";
    case 106:
      return "sent too many messages to a broadcast list";
    default:
      return "a breach of WhatsApp's terms of service (no reason given)";
  }
}

CloseInfo StreamErrorInfo(const Node& node) {
  CloseInfo info;
  info.code = CodeOf(node, "code");
  const Node* conflict = node.Child("conflict");
  const std::string conflict_type = conflict ? conflict->AttrOr("type") : "";
  if (info.code == 515) {
    info.cause = CloseCause::kRestartRequired;
  } else if (info.code == 401 && conflict_type == "device_removed") {
    info.cause = CloseCause::kLoggedOut;
  } else if (conflict_type == "replaced") {
    info.cause = CloseCause::kReplaced;
    if (!info.code) info.code = 440;
  } else {
    // 503 and anything else: the socket is gone and a reconnect follows (whatsmeow's
    // auto-reconnect does the same); a real logout shows at the next login as a <failure>.
    info.cause = CloseCause::kServerError;
    if (!info.code) info.code = 500;
  }
  info.detail = conflict_type.empty()
                    ? absl::StrCat("stream error ", info.code)
                    : absl::StrCat("stream error ", info.code, " (conflict ", conflict_type, ")");
  return info;
}

CloseInfo FailureInfo(const Node& node) {
  CloseInfo info;
  info.code = CodeOf(node, "reason");
  if (!info.code) info.code = 500;
  std::string what;
  switch (info.code) {
    case 401:
      info.cause = CloseCause::kLoggedOut;
      what = "logged out from another device";
      break;
    case 403:
      info.cause = CloseCause::kLoggedOut;
      what = "the primary device was logged out or the account is locked";
      break;
    case 406:
      info.cause = CloseCause::kLoggedOut;
      what = "logged out (the account may be banned)";
      break;
    case 402: {
      info.cause = CloseCause::kTemporaryBan;
      info.ban_code = CodeOf(node, "code");
      if (const int expire = CodeOf(node, "expire"); expire > 0) {
        info.ban_expires_in = absl::Seconds(expire);
      }
      what = absl::StrCat("temporarily banned (", info.ban_code, ": ",
                          Sv(TemporaryBanText(info.ban_code)), ")");
      break;
    }
    case 405:
      info.cause = CloseCause::kClientOutdated;
      what = "the WhatsApp Web version is outdated";
      break;
    case 500:
    case 503:
      info.cause = CloseCause::kServerError;
      what = info.code == 500 ? "internal server error" : "service unavailable";
      break;
    default:
      info.cause = CloseCause::kLoginRefused;
      what = info.code == 409   ? "the user agent was rejected"
             : info.code == 413 ? "the crypto auth token expired"
             : info.code == 414 ? "the crypto auth token is invalid"
                                : "refused";
  }
  info.detail = absl::StrCat("login failure ", info.code, ": ", what);
  // The server's own words, bounded: they end up in last_error and alert texts.
  if (const std::string* m = node.Attr("message"); m && !m->empty()) {
    absl::StrAppend(&info.detail, " (", QuoteForLog(*m, 200), ")");
  }
  return info;
}

std::string_view CloseCauseName(CloseCause cause) {
  switch (cause) {
    case CloseCause::kClosedByUs:
      return "closed_by_us";
    case CloseCause::kConnectFailed:
      return "connect_failed";
    case CloseCause::kHandshakeFailed:
      return "handshake_failed";
    case CloseCause::kSocketClosed:
      return "socket_closed";
    case CloseCause::kKeepaliveTimeout:
      return "keepalive_timeout";
    case CloseCause::kRestartRequired:
      return "restart_required";
    case CloseCause::kLoggedOut:
      return "logged_out";
    case CloseCause::kReplaced:
      return "replaced";
    case CloseCause::kTemporaryBan:
      return "temporary_ban";
    case CloseCause::kClientOutdated:
      return "client_outdated";
    case CloseCause::kServerError:
      return "server_error";
    case CloseCause::kLoginRefused:
      return "login_refused";
    case CloseCause::kProtocolError:
      return "protocol_error";
    case CloseCause::kPairingTimeout:
      return "pairing_timeout";
    case CloseCause::kPairingRejected:
      return "pairing_rejected";
  }
  return "unknown";
}

class Connection::Impl : public std::enable_shared_from_this<Connection::Impl> {
 public:
  Impl(asio::any_io_executor executor, asio::ssl::context& tls, ConnectionOptions options,
       DeviceCredentials creds, std::shared_ptr<ConnectionObserver> observer,
       std::shared_ptr<spdlog::logger> logger)
      : executor_(executor),
        tls_(tls),
        options_(std::move(options)),
        creds_(std::move(creds)),
        observer_(std::move(observer)),
        log_(std::move(logger)),
        login_deadline_(executor),
        keepalive_timer_(executor),
        qr_timer_(executor),
        close_timer_(executor),
        rng_(std::random_device{}()) {
    id_prefix_ = absl::StrCat(std::uniform_int_distribution<uint32_t>(0, 0xffff)(rng_), ".");
  }

  void Start() {
    auto url = ParseUrl(options_.url);
    if (!url.ok()) {
      Finish({CloseCause::kConnectFailed, 0, std::string(url.status().message())});
      return;
    }
    url_ = *url;
    if (url_.tls) {
      transport_ = std::make_unique<BeastTransport<TlsWs>>(executor_, tls_);
    } else {
      transport_ = std::make_unique<BeastTransport<PlainWs>>(executor_);
    }
    login_deadline_.expires_after(ToChrono(options_.connect_timeout));
    login_deadline_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec && !self->logged_in_) {
        self->Finish({CloseCause::kConnectFailed, 0, "timed out before login"});
      }
    });
    asio::co_spawn(executor_, Run(shared_from_this()), asio::detached);
  }

  void Close() {
    if (finished_ || closing_) return;
    closing_ = true;
    if (!logged_in_) {
      Finish({CloseCause::kClosedByUs, 0, "closed"});
      return;
    }
    Send(MakeNode("presence", {{"type", "unavailable"}}));
    close_timer_.expires_after(std::chrono::seconds(3));
    close_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->Finish({CloseCause::kClosedByUs, 0, "closed (close handshake timed out)"});
    });
    if (!writing_) StartWriter();
  }

  void Abort() { Finish({CloseCause::kClosedByUs, 0, "aborted"}); }

  const asio::any_io_executor& Executor() const { return executor_; }

  void Probe(std::function<void(absl::StatusOr<absl::Duration>)> done, absl::Duration timeout) {
    if (!logged_in_ || finished_ || closing_) {
      done(absl::UnavailableError("the session is not logged in"));
      return;
    }
    Ping(
        [self = shared_from_this(), done = std::move(done)](absl::StatusOr<absl::Duration> rtt) {
          if (rtt.ok()) self->OnPongReceived(*rtt);
          done(rtt);
        },
        timeout);
  }

  void Logout(std::function<void(absl::Status)> done, absl::Duration timeout) {
    if (finished_ || closing_) {
      done(absl::UnavailableError("the connection is closed"));
      return;
    }
    if (!logged_in_) {
      pending_logout_ = {std::move(done), timeout};  // sent once logged in
      return;
    }
    SendIq(
        MakeNode(
            "iq", {{"to", std::string(kServerJid)}, {"type", "set"}, {"xmlns", "md"}},
            std::vector<Node>{MakeNode("remove-companion-device",
                                       {{"jid", creds_.Jid()}, {"reason", "user_initiated"}})}),
        [done = std::move(done)](absl::StatusOr<Node> reply) { done(reply.status()); }, timeout);
  }

  ConnectionStats stats;

 private:
  static awaitable<void> Run(std::shared_ptr<Impl> self) {
    enum { kConnecting, kHandshaking, kOpen } phase = kConnecting;
    try {
      co_await self->transport_->Connect(self->url_, self->options_.origin,
                                         self->options_.connect_timeout);
      // Close() or Abort() may have ended the connection while this step ran.
      if (self->finished_) co_return;
      phase = kHandshaking;
      ClientHandshake hs(self->creds_.noise_key);
      Bytes first(kConnectionHeader.begin(), kConnectionHeader.end());
      WAS_CHECK_OK(AppendFrame(first, hs.Hello()));
      co_await self->transport_->Write(first);
      if (self->finished_) co_return;

      beast::flat_buffer buffer;
      FrameReader reader;
      std::optional<Bytes> server_hello;
      while (!server_hello) {
        const size_t n = co_await self->transport_->Read(buffer);
        if (self->finished_) co_return;
        reader.Feed(ByteView(static_cast<const uint8_t*>(buffer.data().data()), n));
        buffer.consume(n);
        auto next = reader.Next();
        if (!next.ok()) throw std::runtime_error(std::string(next.status().message()));
        server_hello = std::move(*next);
      }
      const wire::ClientPayload payload =
          self->creds_.paired() ? LoginPayload(self->creds_, self->options_.client)
                                : RegistrationPayload(self->creds_, self->options_.client);
      auto finish = hs.Finish(*server_hello, payload, self->options_.root_key,
                              absl::ToUnixSeconds(absl::Now()));
      if (!finish.ok()) {
        self->Finish({CloseCause::kHandshakeFailed, 0, std::string(finish.status().message())});
        co_return;
      }
      Bytes frame;
      WAS_CHECK_OK(AppendFrame(frame, *finish));
      co_await self->transport_->Write(frame);
      self->channel_.emplace(hs.Split());
      phase = kOpen;

      while (!self->finished_) {
        const size_t n = co_await self->transport_->Read(buffer);
        self->channel_->Feed(ByteView(static_cast<const uint8_t*>(buffer.data().data()), n));
        buffer.consume(n);
        while (!self->finished_) {
          auto node = self->channel_->Next();
          if (!node.ok()) {
            if (node.status().code() == absl::StatusCode::kResourceExhausted) {
              self->Finish({CloseCause::kProtocolError, 0, std::string(node.status().message())});
              co_return;
            }
            ++self->dropped_frames_;
            self->log_->warn("dropped an unreadable frame from the server: {}",
                             node.status().message());
            continue;
          }
          if (!node->has_value()) break;
          self->Handle(**node);
        }
      }
    } catch (const std::exception& e) {
      if (self->finished_) co_return;
      if (self->closing_) {
        self->Finish({CloseCause::kClosedByUs, 0, "closed"});
      } else if (phase == kConnecting) {
        self->Finish({CloseCause::kConnectFailed, 0, e.what()});
      } else if (phase == kHandshaking) {
        self->Finish({CloseCause::kHandshakeFailed, 0, e.what()});
      } else {
        self->Finish({CloseCause::kSocketClosed, 0, e.what()});
      }
    }
  }

  void Handle(const Node& node) {
    if (log_->should_log(spdlog::level::trace)) log_->trace("recv {}", NodeToLogXml(node));
    const std::string& tag = node.tag;
    if (tag == "success") {
      OnSuccess(node);
    } else if (tag == "failure") {
      Finish(FailureInfo(node));
    } else if (tag == "stream:error") {
      Finish(StreamErrorInfo(node));
    } else if (tag == "xmlstreamend") {
      Finish({CloseCause::kSocketClosed, 0, "the server ended the stream"});
    } else if (tag == "iq") {
      OnIq(node);
    } else if (tag == "message" || tag == "receipt" || tag == "notification" || tag == "call" ||
               tag == "status" || tag == "appdata") {
      OnStanza(node);
    } else if (tag == "ib") {
      OnIb(node);
    }
  }

  // <ib>: the server's information about the connection (whatsmeow connectionevents.go
  // handleIB, Baileys socket.ts).
  void OnIb(const Node& node) {
    if (node.Child("downgrade_webclient")) {
      Finish({CloseCause::kLoginRefused, 411,
              "the phone does not support multi-device (downgrade_webclient)"});
      return;
    }
    if (const Node* preview = node.Child("offline_preview")) {
      // Stanzas queued while the device was offline: ask for them as Baileys does (100 at a
      // time); each is acked as it arrives, so the server can drop it.
      log_->debug("{} stanzas queued while offline; fetching them", preview->AttrOr("count"));
      Send(MakeNode("ib", {}, std::vector<Node>{MakeNode("offline_batch", {{"count", "100"}})}));
    }
    if (const Node* offline = node.Child("offline")) {
      log_->debug("offline queue delivered ({} stanzas)", offline->AttrOr("count", "0"));
    }
  }

  void OnSuccess(const Node& node) {
    if (logged_in_) return;
    logged_in_ = true;
    login_deadline_.cancel();
    LoginInfo info;
    int64_t t = 0;
    if (const std::string* ts = node.Attr("t"); ts && absl::SimpleAtoi(*ts, &t)) {
      info.server_time = absl::FromUnixSeconds(t);
    }
    info.lid = node.AttrOr("lid");
    last_pong_ = absl::Now();
    // whatsmeow: become active, learn the prekey count, then show presence.
    SendIq(MakeNode("iq", {{"to", std::string(kServerJid)}, {"xmlns", "passive"}, {"type", "set"}},
                    std::vector<Node>{MakeNode("active")}),
           [](absl::StatusOr<Node>) {});
    SendIq(MakeNode("iq", {{"to", std::string(kServerJid)}, {"xmlns", "encrypt"}, {"type", "get"}},
                    std::vector<Node>{MakeNode("count")}),
           [self = shared_from_this()](absl::StatusOr<Node> reply) {
             if (!reply.ok()) return;
             if (const Node* count = reply->Child("count")) {
               self->stats.prekey_count = CodeOf(*count, "value");
             }
           });
    Send(Presence(options_.presence_available ? "available" : "unavailable"));
    ScheduleKeepalive();
    if (observer_) observer_->OnLoggedIn(info);
    if (pending_logout_) {
      auto [done, timeout] = *std::exchange(pending_logout_, std::nullopt);
      Logout(std::move(done), timeout);
    }
  }

  void OnIq(const Node& node) {
    const std::string type = node.AttrOr("type");
    if (type == "result" || type == "error") {
      auto it = pending_.find(node.AttrOr("id"));
      if (it == pending_.end()) return;
      auto done = std::move(it->second.done);
      it->second.timer->cancel();
      pending_.erase(it);
      if (type == "error") {
        const Node* err = node.Child("error");
        done(absl::FailedPreconditionError(absl::StrCat("iq error ", err ? err->AttrOr("code") : "",
                                                        " ", err ? err->AttrOr("text") : "")));
      } else {
        done(node);
      }
      return;
    }
    if (type == "set" && !creds_.paired()) {
      if (node.Child("pair-device")) return OnPairDevice(node);
      if (node.Child("pair-success")) return OnPairSuccess(node);
    }
    if (type == "get" && node.AttrOr("xmlns") == "urn:xmpp:ping") {
      Send(MakeNode("iq", {{"id", node.AttrOr("id")},
                           {"to", node.AttrOr("from", kServerJid)},
                           {"type", "result"}}));
    }
  }

  // §8 step 1: the refs arrive; each is shown in turn, then the pairing has timed out.
  void OnPairDevice(const Node& iq) {
    Send(MakeNode("iq",
                  {{"to", std::string(kServerJid)}, {"type", "result"}, {"id", iq.AttrOr("id")}}));
    auto refs = PairDeviceRefs(iq);
    if (!refs.ok()) {
      Finish({CloseCause::kProtocolError, 0, std::string(refs.status().message())});
      return;
    }
    login_deadline_.cancel();  // the QR timers bound the wait from here
    qr_refs_ = *std::move(refs);
    next_qr_ = 0;
    if (!options_.pairing_phone.empty() && !link_code_) RequestLinkCode();
    ShowNextQr();
  }

  // §8 phone-number pairing code: ask the server for a code for the number; it is valid while
  // the refs last.
  void RequestLinkCode() {
    link_code_ = CompanionHello(options_.pairing_phone, creds_, options_.pairing_platform_display);
    const absl::Duration valid =
        options_.qr_first_timeout +
        options_.qr_next_timeout * static_cast<int64_t>(qr_refs_.size() - 1);
    SendIq(link_code_->iq, [self = shared_from_this(), valid](absl::StatusOr<Node> reply) {
      if (self->finished_ || self->paired_) return;
      auto ref = reply.ok() ? LinkCodeRef(*reply) : reply.status();
      if (!ref.ok()) {
        self->Finish(
            {CloseCause::kPairingRejected, 400,
             absl::StrCat("the server refused a pairing code for ",
                          MaskPhone(self->options_.pairing_phone), ": ", ref.status().message())});
        return;
      }
      self->link_code_ref_ = *std::move(ref);
      self->log_->info("pairing: code issued for {}, valid for {}",
                       MaskPhone(self->options_.pairing_phone), absl::FormatDuration(valid));
      if (self->observer_)
        self->observer_->OnPairingCode(FormatLinkCode(self->link_code_->code), valid);
    });
  }

  // The phone's primary_hello: the person typed the code. Answer with the key bundle and key
  // the coming pair-success with the adv secret both sides now derive.
  void OnPrimaryHello(const Node& notification) {
    if (!link_code_ || link_code_ref_.empty() || paired_) return;
    auto finish = AnswerPrimaryHello(notification, *link_code_, link_code_ref_,
                                     options_.pairing_phone, creds_);
    if (!finish.ok()) {
      log_->warn("pairing: the phone's answer to the code was refused: {}",
                 finish.status().message());
      Finish({CloseCause::kPairingRejected, 401,
              absl::StrCat("pairing code answer refused: ", finish.status().message())});
      return;
    }
    creds_.adv_secret = finish->adv_secret;
    log_->info("pairing: code entered on the phone; finishing");
    SendIq(std::move(finish->iq), [](absl::StatusOr<Node>) {});
  }

  void ShowNextQr() {
    if (finished_ || closing_ || paired_) return;
    if (next_qr_ >= qr_refs_.size()) {
      Finish({CloseCause::kPairingTimeout, 408,
              link_code_ ? "the pairing code was not entered in time"
                         : "no QR code was scanned in time"});
      return;
    }
    const absl::Duration valid =
        next_qr_ == 0 ? options_.qr_first_timeout : options_.qr_next_timeout;
    const std::string text = QrCodeText(qr_refs_[next_qr_++], creds_);
    // Pairing by code: the refs only bound how long the code is valid.
    const bool show = !link_code_;
    if (show) {
      log_->info("pairing: QR code {} of {} shown for {}", next_qr_, qr_refs_.size(),
                 absl::FormatDuration(valid));
    }
    if (show && observer_) {
      observer_->OnQrCode(text, valid, static_cast<int>(next_qr_),
                          static_cast<int>(qr_refs_.size()));
    }
    qr_timer_.expires_after(ToChrono(valid));
    qr_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->ShowNextQr();
    });
  }

  // §8 steps 4–8: verify the identity the phone signed, countersign it, keep the credentials.
  void OnPairSuccess(const Node& iq) {
    qr_timer_.cancel();
    auto answer = AnswerPairSuccess(iq, creds_);
    if (!answer.ok()) {
      log_->warn("pairing rejected: {}", answer.status().message());
      Send(PairErrorReply(iq, answer.status()));
      close_after_write_ = CloseInfo{CloseCause::kPairingRejected, 401,
                                     absl::StrCat("pairing rejected: ", answer.status().message())};
      if (!writing_) StartWriter();
      return;
    }
    paired_ = true;
    creds_ = answer->creds;
    Send(answer->reply);
    log_->info("paired as device {} of {} ({})", creds_.device,
               MaskPhone(std::to_string(creds_.phone)), answer->device.platform);
    if (observer_) observer_->OnPaired(answer->device, creds_);
    // The server answers with stream error 515; the owner then logs in.
    login_deadline_.expires_after(ToChrono(options_.connect_timeout));
    login_deadline_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec)
        self->Finish({CloseCause::kRestartRequired, 515, "paired; no restart from the server"});
    });
  }

  // Inbound stanzas are acknowledged without being decrypted: an <ack> of the stanza's class,
  // which is what a connection-only client owes the server. Its attributes are whatsmeow's
  // (receipt.go sendAck): class and id, `to` the stanza's `from`, `participant` and
  // `recipient` copied when present, `type` except for messages.
  void OnStanza(const Node& node) {
    const std::string* id = node.Attr("id");
    const std::string* from = node.Attr("from");
    if (id && from) {
      Node::Attrs attrs = {{"id", *id}, {"to", *from}, {"class", node.tag}};
      if (const std::string* p = node.Attr("participant")) attrs.emplace_back("participant", *p);
      if (const std::string* r = node.Attr("recipient")) attrs.emplace_back("recipient", *r);
      if (node.tag != "message") {
        if (const std::string* t = node.Attr("type")) attrs.emplace_back("type", *t);
      }
      Send(MakeNode("ack", std::move(attrs)));
    }
    if (node.tag != "call" && node.tag != "status" && IsOwnPhone(node)) {
      absl::Time at = absl::Now();
      int64_t t = 0;
      if (const std::string* ts = node.Attr("t");
          ts && absl::SimpleAtoi(*ts, &t) && t > 0 && absl::FromUnixSeconds(t) < at) {
        at = absl::FromUnixSeconds(t);
      }
      if (observer_) observer_->OnPhoneSeen(at);
    }
    if (node.tag == "notification" && node.AttrOr("type") == "link_code_companion_reg") {
      OnPrimaryHello(node);
    } else if (node.tag == "message") {
      const absl::Time now = absl::Now();
      ++stats.inbound_messages;
      stats.last_inbound_unix_ms = absl::ToUnixMillis(now);
      if (observer_) observer_->OnInboundMessage(now);
    }
  }

  // Did the account's primary phone send this? Its sender (`participant` in groups, else
  // `from`) is our number or our LID at device 0 ("N@s.whatsapp.net", "N:0@…", "N.0:0@…").
  bool IsOwnPhone(const Node& node) const {
    const std::string* sender = node.Attr("participant");
    if (!sender) sender = node.Attr("from");
    if (!sender || !creds_.paired()) return false;
    std::string_view jid = *sender;
    const size_t at = jid.find('@');
    if (at == std::string_view::npos) return false;
    std::string_view user = jid.substr(0, at);
    const std::string_view server = jid.substr(at + 1);
    if (const size_t colon = user.find(':'); colon != std::string_view::npos) {
      if (user.substr(colon + 1) != "0") return false;
      user = user.substr(0, colon);
    }
    if (const size_t dot = user.find('.'); dot != std::string_view::npos) {
      user = user.substr(0, dot);  // an agent part
    }
    if (server == "s.whatsapp.net") return user == std::to_string(creds_.phone);
    if (server == "lid" && !creds_.lid.empty()) {
      std::string_view lid = creds_.lid;
      return user == lid.substr(0, lid.find_first_of(":@"));
    }
    return false;
  }

  Node Presence(const char* type) const {
    Node::Attrs attrs = {{"type", type}};
    if (!creds_.push_name.empty()) attrs.emplace_back("name", creds_.push_name);
    return MakeNode("presence", std::move(attrs));
  }

  void ScheduleKeepalive() {
    const int64_t lo = absl::ToInt64Milliseconds(options_.keepalive_interval_min);
    const int64_t hi = std::max(lo, absl::ToInt64Milliseconds(options_.keepalive_interval_max));
    keepalive_timer_.expires_after(
        std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(lo, hi)(rng_)));
    keepalive_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->finished_ || self->closing_) return;
      self->Ping(
          [self](absl::StatusOr<absl::Duration> rtt) {
            if (self->finished_) return;
            if (rtt.ok()) {
              self->OnPongReceived(*rtt);
            } else {
              ++self->stats.missed_pings;
              if (self->observer_) self->observer_->OnKeepaliveMissed();
              const absl::Duration silent = absl::Now() - self->last_pong_;
              self->log_->warn("keepalive ping unanswered ({} since the last answer)",
                               absl::FormatDuration(silent));
              if (silent >= self->options_.keepalive_max_silence) {
                self->Finish(
                    {CloseCause::kKeepaliveTimeout, 0,
                     absl::StrCat("no keepalive answer for ", absl::FormatDuration(silent))});
                return;
              }
            }
            self->ScheduleKeepalive();
          },
          self->options_.keepalive_response_timeout);
    });
  }

  void OnPongReceived(absl::Duration rtt) {
    last_pong_ = absl::Now();
    stats.missed_pings = 0;
    stats.last_pong_unix_ms = absl::ToUnixMillis(last_pong_);
    stats.keepalive_rtt_us = absl::ToInt64Microseconds(rtt);
    if (observer_) observer_->OnPong(rtt);
  }

  void Ping(std::function<void(absl::StatusOr<absl::Duration>)> done, absl::Duration timeout) {
    const absl::Time sent = absl::Now();
    SendIq(
        MakeNode("iq", {{"to", std::string(kServerJid)}, {"type", "get"}, {"xmlns", "w:p"}}),
        [sent, done = std::move(done)](absl::StatusOr<Node> reply) {
          if (!reply.ok()) {
            done(reply.status());
          } else {
            done(absl::Now() - sent);
          }
        },
        timeout);
  }

  void SendIq(Node iq, std::function<void(absl::StatusOr<Node>)> done,
              absl::Duration timeout = absl::Seconds(60)) {
    const std::string id = absl::StrCat(id_prefix_, ++next_id_);
    iq.attrs.insert(iq.attrs.begin(), {"id", id});
    auto timer = std::make_unique<asio::steady_timer>(executor_);
    timer->expires_after(ToChrono(timeout));
    timer->async_wait([self = shared_from_this(), id](beast::error_code ec) {
      if (ec) return;
      auto it = self->pending_.find(id);
      if (it == self->pending_.end()) return;
      auto cb = std::move(it->second.done);
      self->pending_.erase(it);
      cb(absl::DeadlineExceededError("no answer in time"));
    });
    pending_.emplace(id, PendingIq{std::move(done), std::move(timer)});
    Send(iq);
  }

  void Send(const Node& node) {
    if (finished_ || !channel_) return;
    if (log_->should_log(spdlog::level::trace)) log_->trace("send {}", NodeToLogXml(node));
    auto sealed = channel_->Seal(node);
    if (!sealed.ok()) {
      log_->error("cannot encode <{}>: {}", node.tag, sealed.status().message());
      return;
    }
    outbox_.push_back(*std::move(sealed));
    if (!writing_) StartWriter();
  }

  void StartWriter() {
    writing_ = true;
    asio::co_spawn(executor_, WriteLoop(shared_from_this()), asio::detached);
  }

  static awaitable<void> WriteLoop(std::shared_ptr<Impl> self) {
    try {
      while (!self->outbox_.empty() && !self->finished_) {
        Bytes next = std::move(self->outbox_.front());
        self->outbox_.pop_front();
        co_await self->transport_->Write(next);
      }
      if (self->close_after_write_ && !self->finished_) {
        self->Finish(*self->close_after_write_);
      } else if (self->closing_ && !self->finished_) {
        co_await self->transport_->Close();
        self->Finish({CloseCause::kClosedByUs, 0, "closed"});
      }
    } catch (const std::exception& e) {
      if (!self->finished_) {
        self->Finish({self->closing_ ? CloseCause::kClosedByUs : CloseCause::kSocketClosed, 0,
                      absl::StrCat("write failed: ", e.what())});
      }
    }
    self->writing_ = false;
  }

  void Finish(CloseInfo info) {
    if (finished_) return;
    finished_ = true;
    login_deadline_.cancel();
    keepalive_timer_.cancel();
    qr_timer_.cancel();
    close_timer_.cancel();
    if (transport_) transport_->Abort();
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : pending) {
      p.timer->cancel();
      p.done(absl::UnavailableError("connection closed"));
    }
    outbox_.clear();
    if (pending_logout_) {
      std::exchange(pending_logout_, std::nullopt)
          ->first(absl::UnavailableError(
              absl::StrCat("the connection ended before login: ", info.detail)));
    }
    log_->info("connection closed: {} ({})", CloseCauseName(info.cause), info.detail);
    if (auto observer = std::move(observer_)) observer->OnClosed(info);
  }

  struct PendingIq {
    std::function<void(absl::StatusOr<Node>)> done;
    std::unique_ptr<asio::steady_timer> timer;
  };

  asio::any_io_executor executor_;
  asio::ssl::context& tls_;
  ConnectionOptions options_;
  DeviceCredentials creds_;
  std::shared_ptr<ConnectionObserver> observer_;
  std::shared_ptr<spdlog::logger> log_;
  Url url_;
  std::unique_ptr<Transport> transport_;
  std::optional<NoiseChannel> channel_;
  asio::steady_timer login_deadline_;
  asio::steady_timer keepalive_timer_;
  asio::steady_timer qr_timer_;  // the current pairing QR code's expiry
  asio::steady_timer close_timer_;
  std::mt19937_64 rng_;
  std::string id_prefix_;
  uint64_t next_id_ = 0;
  absl::flat_hash_map<std::string, PendingIq> pending_;
  std::deque<Bytes> outbox_;
  absl::Time last_pong_;
  std::vector<std::string> qr_refs_;
  size_t next_qr_ = 0;
  std::optional<LinkCodeRequest> link_code_;  // pairing by code: the request made
  std::string link_code_ref_;                 // ... and the server's ref for it
  bool paired_ = false;
  std::optional<CloseInfo> close_after_write_;
  std::optional<std::pair<std::function<void(absl::Status)>, absl::Duration>> pending_logout_;
  int64_t dropped_frames_ = 0;
  bool writing_ = false;
  bool logged_in_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

std::shared_ptr<Connection> Connection::Start(asio::any_io_executor executor,
                                              asio::ssl::context& tls, ConnectionOptions options,
                                              DeviceCredentials creds,
                                              std::shared_ptr<ConnectionObserver> observer,
                                              std::shared_ptr<spdlog::logger> logger) {
  std::shared_ptr<Connection> conn(new Connection());
  conn->impl_ = std::make_shared<Impl>(executor, tls, std::move(options), std::move(creds),
                                       std::move(observer), std::move(logger));
  asio::post(executor, [impl = conn->impl_] { impl->Start(); });
  return conn;
}

Connection::~Connection() {
  // Dropping the last handle without Close() must not leave a socket behind.
  asio::post(impl_->Executor(), [impl = impl_] { impl->Abort(); });
}

void Connection::Close() {
  asio::post(impl_->Executor(), [impl = impl_] { impl->Close(); });
}

void Connection::Abort() {
  asio::post(impl_->Executor(), [impl = impl_] { impl->Abort(); });
}

void Connection::Probe(std::function<void(absl::StatusOr<absl::Duration>)> done,
                       absl::Duration timeout) {
  asio::post(impl_->Executor(), [impl = impl_, done = std::move(done), timeout]() mutable {
    impl->Probe(std::move(done), timeout);
  });
}

void Connection::Logout(std::function<void(absl::Status)> done, absl::Duration timeout) {
  asio::post(impl_->Executor(), [impl = impl_, done = std::move(done), timeout]() mutable {
    impl->Logout(std::move(done), timeout);
  });
}

const ConnectionStats& Connection::stats() const { return impl_->stats; }

}  // namespace wasentinel::wa
