// The transport and the life of a connection: WebSocket, Noise handshake, frames, writes,
// keepalive, close; and Connection's methods, which post to it. What the server says is answered
// in connection_stanzas.cc.
#include "connection.h"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <deque>
#include <random>

#include "absl/strings/str_cat.h"
#include "connection_impl.h"
#include "noise_channel.h"
#include "tls_socket.h"
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
using connection_internal::ToChrono;
using connection_internal::Transport;

int64_t NowUnixMs() { return absl::ToUnixMillis(absl::Now()); }

constexpr size_t kWriteBufferBytes = 512;
constexpr int64_t kKeepaliveGridMs = 100;

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

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
    if constexpr (std::is_same_v<Stream, websocket::stream<TlsSocket>>) {
      co_await ws_.next_layer().Handshake(url.host);
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
    // One WebSocket frame per message, as WhatsApp Web's own client and whatsmeow send them
    // (Beast would split a message larger than its write buffer into fragments). The buffer a
    // client masks its frames in is kept by the stream for its lifetime: 512 bytes instead of
    // Beast's 4096 fit a keepalive ping with room, and a larger message goes out in several
    // writes of the same frame.
    ws_.auto_fragment(false);
    ws_.write_buffer_bytes(kWriteBufferBytes);
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
using TlsWs = websocket::stream<TlsSocket>;

}  // namespace

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

Connection::Impl::Impl(asio::any_io_executor executor, asio::ssl::context& tls,
                       ConnectionOptions options, DeviceCredentials creds,
                       std::shared_ptr<ConnectionObserver> observer,
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

void Connection::Impl::Start() {
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

void Connection::Impl::Close() {
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

void Connection::Impl::Probe(std::function<void(absl::StatusOr<absl::Duration>)> done,
                             absl::Duration timeout) {
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

void Connection::Impl::Query(Node iq, std::function<void(absl::StatusOr<Node>)> done,
                             absl::Duration timeout) {
  if (!logged_in_ || finished_ || closing_) {
    done(absl::UnavailableError("the session is not logged in"));
    return;
  }
  SendIq(std::move(iq), std::move(done), timeout);
}

void Connection::Impl::Logout(std::function<void(absl::Status)> done, absl::Duration timeout) {
  if (finished_ || closing_) {
    done(absl::UnavailableError("the connection is closed"));
    return;
  }
  if (!logged_in_) {
    pending_logout_ = {std::move(done), timeout};  // sent once logged in
    return;
  }
  SendIq(
      MakeNode("iq", {{"to", std::string(kServerJid)}, {"type", "set"}, {"xmlns", "md"}},
               std::vector<Node>{MakeNode("remove-companion-device",
                                          {{"jid", creds_.Jid()}, {"reason", "user_initiated"}})}),
      [done = std::move(done)](absl::StatusOr<Node> reply) { done(reply.status()); }, timeout);
}

awaitable<void> Connection::Impl::Run(std::shared_ptr<Impl> self) {
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
      // The buffer is given back between messages (1.5 KB per idle session; the next message
      // allocates its own): the minutes of idle keepalives between them need none, and a
      // large message (the server's first stanzas after login can be kilobytes) leaves none
      // behind.
      buffer.shrink_to_fit();
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

void Connection::Impl::ScheduleKeepalive() {
  const int64_t lo = absl::ToInt64Milliseconds(options_.keepalive_interval_min);
  const int64_t hi = std::max(lo, absl::ToInt64Milliseconds(options_.keepalive_interval_max));
  // The deadline is rounded up to the keepalive grid, as an absolute time, so the timers of
  // many sessions expire at the same instant: their pings then go out, and their answers come
  // back, in batches that wake the connection thread once per grid step instead of once per
  // ping. 100 ms is nothing against whatsmeow's 20–30 s random interval; a very short interval
  // (tests) gets a grid of a tenth of it, so it is not stretched.
  const int64_t grid_ms = std::clamp<int64_t>(lo / 10, 1, kKeepaliveGridMs);
  const int64_t due_ms = SteadyMillis() + std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  const int64_t slot_ms = (due_ms + grid_ms - 1) / grid_ms * grid_ms;
  keepalive_timer_.expires_at(
      std::chrono::steady_clock::time_point(std::chrono::milliseconds(slot_ms)));
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

void Connection::Impl::OnPongReceived(absl::Duration rtt) {
  last_pong_ = absl::Now();
  stats.missed_pings = 0;
  stats.last_pong_unix_ms = absl::ToUnixMillis(last_pong_);
  stats.keepalive_rtt_us = absl::ToInt64Microseconds(rtt);
  if (observer_) observer_->OnPong(rtt);
}

void Connection::Impl::Ping(std::function<void(absl::StatusOr<absl::Duration>)> done,
                            absl::Duration timeout) {
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

void Connection::Impl::SendIq(Node iq, std::function<void(absl::StatusOr<Node>)> done,
                              absl::Duration timeout) {
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

void Connection::Impl::Send(const Node& node) {
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

void Connection::Impl::StartWriter() {
  writing_ = true;
  asio::co_spawn(executor_, WriteLoop(shared_from_this()), asio::detached);
}

awaitable<void> Connection::Impl::WriteLoop(std::shared_ptr<Impl> self) {
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

void Connection::Impl::Finish(CloseInfo info) {
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

void Connection::Query(Node iq, std::function<void(absl::StatusOr<Node>)> done,
                       absl::Duration timeout) {
  asio::post(impl_->Executor(),
             [impl = impl_, iq = std::move(iq), done = std::move(done), timeout]() mutable {
               impl->Query(std::move(iq), std::move(done), timeout);
             });
}

const ConnectionStats& Connection::stats() const { return impl_->stats; }

}  // namespace wasentinel::wa
