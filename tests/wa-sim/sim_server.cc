#include "sim_server.h"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "credentials.h"
#include "handshake.h"
#include "noise_channel.h"
#include "pairing.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::sim {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
using json = nlohmann::json;

using wa::MakeNode;
using wa::Node;

constexpr std::string_view kServer = "@s.whatsapp.net";

// "15551234567:12@s.whatsapp.net" or "15551234567:12" → "15551234567:12".
std::string DeviceKey(std::string_view jid) {
  std::string key(jid.substr(0, jid.find('@')));
  if (key.find(':') == std::string::npos) key += ":0";
  return key;
}

// The phone side of an account: its identity (account) key signs every linked device.
struct Account {
  wa::KeyPair key = wa::KeyPair::Generate();
  std::string lid_user;
  uint32_t next_device = 1;
  uint32_t next_key_index = 1;
};

// A <failure> the next logins of a device meet (POST /devices/{jid}/fail-login).
struct LoginFailure {
  int reason = 0;
  int code = 0;        // 402: the ban code
  int64_t expire = 0;  // 402: seconds until the ban ends (0: not sent)
  std::string message;
  int remaining = 1;  // logins still to fail
};

// A stanza waiting for the device's next login: sent while it was offline, or sent to an
// earlier connection that never acknowledged it. The server keeps it until acked.
struct OfflineStanza {
  Node stanza;
  Node::Attrs expect;  // the ack's attributes (sorted)
  uint64_t sent = 0;   // the order it was sent to a connection in
};

struct Device {
  std::deque<OfflineStanza> offline;
  std::array<uint8_t, 32> noise_pub{};
  std::string lid;
  std::string name;
  bool logged_out = false;
  int64_t logins = 0;
  std::optional<LoginFailure> fail_login;
};

class SimConn;

}  // namespace

class SimServer::State : public std::enable_shared_from_this<SimServer::State> {
 public:
  State(asio::io_context& io, SimOptions options, std::shared_ptr<spdlog::logger> log)
      : io_(io),
        options_(std::move(options)),
        log_(std::move(log)),
        ws_acceptor_(io),
        control_acceptor_(io),
        tls_acceptor_(io) {}

  absl::Status Init() {
    min_version = options_.min_version;
    web_version = options_.web_version       ? options_.web_version
                  : options_.min_version > 0 ? options_.min_version
                                             : wa::kDefaultWaVersion.tertiary;
    if (options_.root_private_key.empty()) {
      root_ = wa::KeyPair::Generate();
    } else {
      auto kp = wa::KeyPair::FromPrivate(options_.root_private_key);
      if (!kp.ok()) return kp.status();
      root_ = *kp;
    }
    static_key_ = wa::KeyPair::Generate();
    const uint64_t now = absl::ToUnixSeconds(absl::Now());
    cert_chain_ = wa::MakeCertChain(root_, wa::KeyPair::Generate(), static_key_.pub, now - 86400,
                                    now + 365 * 86400);
    const bool tls = !options_.tls_cert_file.empty() && !options_.tls_key_file.empty();
    if (tls) {
      tls_ctx_.emplace(asio::ssl::context::tls_server);
      beast::error_code ec;
      tls_ctx_->use_certificate_chain_file(options_.tls_cert_file, ec);
      if (!ec) tls_ctx_->use_private_key_file(options_.tls_key_file, asio::ssl::context::pem, ec);
      if (ec)
        return absl::InvalidArgumentError(absl::StrCat("TLS certificate or key: ", ec.message()));
    }
    std::vector<std::pair<tcp::acceptor*, uint16_t>> listeners = {
        {&ws_acceptor_, options_.ws_port}, {&control_acceptor_, options_.control_port}};
    if (tls) listeners.emplace_back(&tls_acceptor_, options_.tls_port);
    for (auto [acceptor, port] : listeners) {
      beast::error_code ec;
      tcp::endpoint ep(asio::ip::make_address(options_.host, ec), port);
      if (ec) return absl::InvalidArgumentError(absl::StrCat("bad host ", options_.host));
      acceptor->open(ep.protocol(), ec);
      if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) acceptor->bind(ep, ec);
      if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        return absl::UnavailableError(
            absl::StrCat("cannot listen on ", options_.host, ":", port, ": ", ec.message()));
      }
    }
    asio::co_spawn(io_, AcceptWs(shared_from_this()), asio::detached);
    asio::co_spawn(io_, AcceptControl(shared_from_this()), asio::detached);
    if (tls) asio::co_spawn(io_, AcceptTls(shared_from_this()), asio::detached);
    return absl::OkStatus();
  }

  void Stop() {
    beast::error_code ec;
    ws_acceptor_.close(ec);
    control_acceptor_.close(ec);
    tls_acceptor_.close(ec);
  }
  uint16_t tls_port() const {
    return tls_acceptor_.is_open() ? tls_acceptor_.local_endpoint().port() : 0;
  }

  uint16_t ws_port() const { return ws_acceptor_.local_endpoint().port(); }
  uint16_t control_port() const { return control_acceptor_.local_endpoint().port(); }
  const wa::KeyPair& root() const { return root_; }
  const wa::KeyPair& static_key() const { return static_key_; }
  const Bytes& cert_chain() const { return cert_chain_; }
  const SimOptions& options() const { return options_; }
  spdlog::logger& log() { return *log_; }

  // Accounts (by phone), devices and live connections, touched only on the io thread.
  std::map<std::string, Account> accounts;
  std::map<std::string, Device> devices;
  std::map<uint64_t, std::shared_ptr<SimConn>> conns;
  uint64_t next_conn_id = 1;
  struct Counters {
    int64_t accepted = 0, logins = 0, login_failures = 0, replaced = 0, handshake_failures = 0,
            pings_answered = 0, acks_received = 0, messages_sent = 0, registrations = 0,
            pairings = 0, pairings_rejected = 0, logouts = 0, refused = 0,
            presences_available = 0,  // <presence type="available"> from any client
        outdated_refused = 0,         // logins refused 405 under min_version
        version_page_reads = 0,
            offline_delivered = 0,  // stanzas delivered from a device's offline queue
        offline_batches = 0;        // <ib><offline_batch> requests received
  } counters;
  // The WhatsApp Web version policy (SimOptions::min_version, web_version; POST /version),
  // and the page's body when a test replaced it.
  uint32_t min_version = 0;
  uint32_t web_version = 0;
  std::optional<std::string> page_override;
  // POST /outage: while true every live connection has been reset and new ones are refused.
  bool outage = false;

  std::shared_ptr<SimConn> FindLive(const std::string& device_key);

 private:
  static awaitable<void> AcceptWs(std::shared_ptr<State> self);
  static awaitable<void> AcceptControl(std::shared_ptr<State> self);
  static awaitable<void> AcceptTls(std::shared_ptr<State> self);
  static awaitable<void> RelayTls(std::shared_ptr<State> self, tcp::socket socket);
  static awaitable<void> ServeControl(std::shared_ptr<State> self, tcp::socket socket);
  // POST /pair: plays the phone scanning a QR code; POST /pair-code: the person typing the
  // pairing code on the phone. Both answer once the companion answered pair-success.
  static awaitable<http::response<http::string_body>> Pair(
      std::shared_ptr<State> self, const http::request<http::string_body>& req);
  http::response<http::string_body> Route(const http::request<http::string_body>& req);

  asio::io_context& io_;
  SimOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  tcp::acceptor ws_acceptor_;
  tcp::acceptor control_acceptor_;
  tcp::acceptor tls_acceptor_;
  std::optional<asio::ssl::context> tls_ctx_;
  wa::KeyPair root_;
  wa::KeyPair static_key_;
  Bytes cert_chain_;
};

namespace {

// One client connection: WebSocket, Noise responder, then the stanza loop.
class SimConn : public std::enable_shared_from_this<SimConn> {
 public:
  SimConn(std::shared_ptr<SimServer::State> server, tcp::socket socket, uint64_t id)
      : server_(std::move(server)),
        ws_(std::move(socket)),
        id_(id),
        remote_(ws_.next_layer().socket().remote_endpoint().address().to_string() + ":" +
                std::to_string(ws_.next_layer().socket().remote_endpoint().port())),
        connected_at_(absl::Now()) {}

  static awaitable<void> Run(std::shared_ptr<SimConn> self) {
    auto& log = self->server_->log();
    try {
      self->ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
      self->ws_.binary(true);
      co_await self->ws_.async_accept(use_awaitable);
      beast::flat_buffer buffer;
      // The first message starts with the 4-byte header, then the ClientHello frame.
      Bytes pending;
      while (pending.size() < 4) {
        size_t n = co_await self->ws_.async_read(buffer, use_awaitable);
        auto data = static_cast<const uint8_t*>(buffer.data().data());
        pending.insert(pending.end(), data, data + n);
        buffer.consume(n);
      }
      if (pending[0] != 'W' || pending[1] != 'A' || pending[2] != 6) {
        throw std::runtime_error(pending[0] == 'E' && pending[1] == 'D'
                                     ? "routing-info intro (ED) is not supported"
                                     : "bad connection header");
      }
      if (pending[3] != wa::kConnectionHeader[3]) {
        throw std::runtime_error(
            absl::StrCat("dictionary version ", pending[3], " is not supported (only 3)"));
      }
      wa::ServerHandshake hs(self->server_->static_key(), self->server_->cert_chain(),
                             ByteView(pending.data(), 4));
      wa::FrameReader reader;
      reader.Feed(ByteView(pending).subspan(4));
      auto next_frame = [&]() -> awaitable<Bytes> {
        for (;;) {
          auto f = reader.Next();
          if (!f.ok()) throw std::runtime_error(std::string(f.status().message()));
          if (f->has_value()) co_return std::move(**f);
          size_t n = co_await self->ws_.async_read(buffer, use_awaitable);
          reader.Feed(ByteView(static_cast<const uint8_t*>(buffer.data().data()), n));
          buffer.consume(n);
        }
      };
      Bytes hello = co_await next_frame();
      auto reply = hs.Respond(hello);
      if (!reply.ok()) throw std::runtime_error(std::string(reply.status().message()));
      Bytes out;
      (void)wa::AppendFrame(out, *reply);
      co_await self->ws_.async_write(asio::buffer(out), use_awaitable);
      Bytes finish = co_await next_frame();
      auto identity = hs.Complete(finish);
      if (!identity.ok()) throw std::runtime_error(std::string(identity.status().message()));
      self->channel_.emplace(hs.Split());
      self->handshake_done_ = true;
      if (auto delay = self->server_->options().post_handshake_delay; delay.count() > 0) {
        asio::steady_timer pause(self->ws_.get_executor(), delay);
        co_await pause.async_wait(use_awaitable);
      }
      self->OnClientPayload(*identity);

      while (!self->closed_) {
        size_t n = co_await self->ws_.async_read(buffer, use_awaitable);
        self->channel_->Feed(ByteView(static_cast<const uint8_t*>(buffer.data().data()), n));
        buffer.consume(n);
        for (;;) {
          auto node = self->channel_->Next();
          if (!node.ok()) {
            if (node.status().code() == absl::StatusCode::kResourceExhausted) {
              throw std::runtime_error(std::string(node.status().message()));
            }
            log.warn("conn {}: unreadable frame: {}", self->id_, node.status().message());
            continue;
          }
          if (!node->has_value()) break;
          self->Handle(**node);
        }
      }
    } catch (const std::exception& e) {
      if (!self->handshake_done_) ++self->server_->counters.handshake_failures;
      log.debug("conn {} ({}) ended: {}", self->id_, self->jid_, e.what());
    }
    self->Gone();
  }

  void Handle(const Node& node) {
    if (blackholed_) return;
    if (node.tag == "iq") {
      OnIq(node);
    } else if (node.tag == "ack" || node.tag == "receipt") {
      ++acks_;
      ++server_->counters.acks_received;
      if (node.tag == "ack") OnAck(node);
    } else if (node.tag == "ib") {
      if (const Node* batch = node.Child("offline_batch")) {
        ++server_->counters.offline_batches;
        offline_batch_requested_ = true;
        DeliverOffline();
      }
    } else if (node.tag == "presence") {
      presence_ = node.AttrOr("type", "available");
      presences_.push_back(presence_);
      if (presence_ == "available") ++server_->counters.presences_available;
    }
  }

  void OnIq(const Node& iq) {
    const std::string id = iq.AttrOr("id");
    const std::string xmlns = iq.AttrOr("xmlns");
    const std::string type = iq.AttrOr("type");
    Node::Attrs attrs = {{"from", std::string(kServer)}, {"type", "result"}, {"id", id}};
    if ((type == "result" || type == "error") && pairing_ && id == pairing_->iq_id) {
      OnPairAnswer(iq);
      return;
    }
    if (const Node* reg = iq.Child("link_code_companion_reg");
        reg && xmlns == "md" && type == "set") {
      const std::string stage = reg->AttrOr("stage");
      if (stage == "companion_hello") return OnCompanionHello(*reg, std::move(attrs));
      if (stage == "companion_finish") return OnCompanionFinish(iq, std::move(attrs));
    }
    if (xmlns == "md" && type == "set" && iq.Child("remove-companion-device")) {
      // Logout: the device is removed; the server ends the stream as for any removed device.
      ++server_->counters.logouts;
      Send(MakeNode("iq", attrs));
      server_->log().info("conn {}: {} logged itself out", id_, jid_);
      SendStreamError(401);
      return;
    }
    if (xmlns == "w:p") {
      ++pings_;
      ++server_->counters.pings_answered;
      Send(MakeNode("iq", attrs));
    } else if (xmlns == "encrypt" && type == "get" && iq.Child("count")) {
      Send(MakeNode("iq", attrs,
                    std::vector<Node>{MakeNode(
                        "count", {{"value", std::to_string(server_->options().prekey_count)}})}));
    } else if (type == "get" || type == "set") {
      // passive/active, prekey upload, usync, props, ...: acknowledged with an empty result.
      Send(MakeNode("iq", attrs));
    }
  }

  void OnClientPayload(const wa::ServerHandshake::ClientIdentity& id) {
    auto& log = server_->log();
    if (const uint32_t announced = id.payload.user_agent().app_version().tertiary();
        announced < server_->min_version) {
      ++server_->counters.outdated_refused;
      log.info("conn {}: refused 2.3000.{} as outdated (minimum 2.3000.{})", id_, announced,
               server_->min_version);
      SendAndClose(MakeNode("failure", {{"reason", "405"}, {"location", "sim"}}));
      return;
    }
    if (id.payload.has_device_pairing_data()) {
      StartRegistration(id);
      return;
    }
    jid_ = absl::StrCat(id.payload.username(), ":", id.payload.device());
    auto it = server_->devices.find(jid_);
    if (it == server_->devices.end() || it->second.logged_out ||
        it->second.noise_pub != id.static_pub) {
      ++server_->counters.login_failures;
      log.info("conn {}: login of {} refused ({})", id_, jid_,
               it == server_->devices.end() ? "unknown device"
               : it->second.logged_out      ? "logged out"
                                            : "noise key mismatch");
      SendAndClose(MakeNode("failure", {{"reason", "401"}, {"location", "sim"}}));
      return;
    }
    if (auto& f = it->second.fail_login) {
      ++server_->counters.login_failures;
      Node::Attrs attrs = {{"reason", std::to_string(f->reason)}, {"location", "sim"}};
      if (f->reason == 402) {
        attrs.emplace_back("code", std::to_string(f->code));
        if (f->expire > 0) attrs.emplace_back("expire", std::to_string(f->expire));
      }
      if (!f->message.empty()) attrs.emplace_back("message", f->message);
      // As at WhatsApp: a device logged out by the failure stays logged out.
      if (f->reason == 401 || f->reason == 403 || f->reason == 406) it->second.logged_out = true;
      log.info("conn {}: login of {} fails with {} as asked", id_, jid_, f->reason);
      if (--f->remaining <= 0) f.reset();
      SendAndClose(MakeNode("failure", std::move(attrs)));
      return;
    }
    // One live connection per device: the newer login replaces the older one.
    if (auto old = server_->FindLive(jid_); old && old.get() != this) {
      ++server_->counters.replaced;
      old->Requeue();  // what it left unacked comes with this login
      old->SendAndClose(MakeNode("stream:error", {},
                                 std::vector<Node>{MakeNode("conflict", {{"type", "replaced"}})}));
    }
    logged_in_ = true;
    ++it->second.logins;
    ++server_->counters.logins;
    Node::Attrs attrs = {{"t", std::to_string(absl::ToUnixSeconds(absl::Now()))},
                         {"props", "1"},
                         {"abprops", "1"},
                         {"location", "sim"}};
    if (!it->second.lid.empty()) attrs.emplace_back("lid", it->second.lid);
    Send(MakeNode("success", std::move(attrs)));
    OfferOffline();
    log.info("conn {}: {} logged in from {}", id_, jid_, remote_);
  }

  // §8 step 1: a new companion gets its refs; it shows them as QR codes until one is scanned.
  void StartRegistration(const wa::ServerHandshake::ClientIdentity& id) {
    const auto& reg = id.payload.device_pairing_data();
    if (reg.e_ident().size() != 32) {
      SendAndClose(MakeNode("failure", {{"reason", "400"}, {"location", "sim"}}));
      return;
    }
    registering_ = true;
    noise_pub_ = id.static_pub;
    std::copy(reg.e_ident().begin(), reg.e_ident().end(), identity_pub_.begin());
    ++server_->counters.registrations;
    std::vector<Node> refs;
    for (int i = 0; i < server_->options().pairing_refs; ++i) {
      Bytes r(18);
      wa::RandomBytes(r);
      refs_.push_back(absl::StrCat("2@", Base64Encode(r)));
      refs.push_back(MakeNode("ref", {}, ToBytes(refs_.back())));
    }
    Send(MakeNode(
        "iq", {{"from", std::string(kServer)}, {"type", "set"}, {"id", NextId()}, {"xmlns", "md"}},
        std::vector<Node>{MakeNode("pair-device", {}, std::move(refs))}));
    server_->log().info("conn {}: registration; {} refs sent", id_, refs_.size());
  }

 public:
  struct PairOutcome {
    int http_status = 200;
    json body;
  };
  using PairDone = std::function<void(PairOutcome)>;

  bool Shows(const wa::ScannedQr& qr) const {
    return registering_ && !pairing_ && !closed_ && qr.noise_pub == noise_pub_ &&
           qr.identity_pub == identity_pub_ &&
           std::find(refs_.begin(), refs_.end(), qr.ref) != refs_.end();
  }

  // Waits for the code of `phone`: the companion asked for one and nobody typed it yet.
  bool AwaitsCode(const std::string& phone) const {
    return registering_ && !pairing_ && !closed_ && code_request_ &&
           code_request_->phone == phone && !code_request_->hello;
  }

  // The person typed `code` on the phone of `phone` (§8 phone-number pairing code): the phone
  // sends primary_hello; the companion's companion_finish completes the pairing through
  // pair-success, and `done` hears the outcome.
  absl::Status EnterCode(const std::string& code, const std::string& phone, const json& opts,
                         PairDone done) {
    auto& account = server_->accounts[phone];
    WAS_ASSIGN_OR_RETURN(auto hello,
                         wa::PhonePrimaryHello(code, code_request_->wrapped_ephemeral,
                                               code_request_->ref, account.key, NextId()));
    Send(hello.notification);
    code_request_->hello = std::move(hello);
    code_request_->opts = opts;
    code_request_->done = std::move(done);
    return absl::OkStatus();
  }

  // §8 steps 4–5: the phone signs the companion's identity; the server sends pair-success.
  void SendPairSuccess(const wa::ScannedQr& qr, const std::string& phone, const json& opts,
                       PairDone done) {
    auto& account = server_->accounts[phone];
    if (account.lid_user.empty()) {
      Bytes r(6);
      wa::RandomBytes(r);
      uint64_t lid = 0;
      for (uint8_t b : r) lid = lid * 256 + b;
      account.lid_user = std::to_string(100000000000000ULL + lid % 900000000000000ULL);
    }
    wa::PhoneIdentityOptions po;
    po.key_index = account.next_key_index++;
    po.timestamp = absl::ToUnixSeconds(absl::Now());
    wa::RandomBytes(std::span(reinterpret_cast<uint8_t*>(&po.raw_id), sizeof po.raw_id));
    const std::string corrupt = opts.value("corrupt", std::string());
    po.corrupt_hmac = corrupt == "hmac";
    po.corrupt_signature = corrupt == "signature";
    const uint32_t device = account.next_device++;
    PendingPair p;
    p.iq_id = NextId();
    p.phone = phone;
    p.device_key = absl::StrCat(phone, ":", device);
    p.lid = absl::StrCat(account.lid_user, ":", device, "@lid");
    p.name = opts.value("name", std::string());
    p.account_pub = account.key.pub;
    p.done = std::move(done);
    std::vector<Node> children = {
        MakeNode("device-identity", {}, wa::PhoneSignDeviceIdentity(account.key, qr, po)),
        MakeNode("device",
                 {{"jid", absl::StrCat(p.device_key, "@s.whatsapp.net")}, {"lid", p.lid}}),
        MakeNode("platform", {{"name", opts.value("platform", std::string("android"))}})};
    if (opts.contains("business_name") && opts["business_name"].is_string()) {
      children.push_back(MakeNode("biz", {{"name", opts["business_name"].get<std::string>()}}));
    }
    Send(MakeNode("iq",
                  {{"from", std::string(kServer)},
                   {"type", "set"},
                   {"id", p.iq_id},
                   {"t", std::to_string(po.timestamp)}},
                  std::vector<Node>{MakeNode("pair-success", {}, std::move(children))}));
    pairing_ = std::move(p);
  }

 private:
  // §8 phone-number pairing code, companion_hello: the server keeps the request for the phone
  // and answers the ref the phone's answer will carry.
  void OnCompanionHello(const Node& reg, Node::Attrs attrs) {
    const std::string jid = reg.AttrOr("jid");
    const std::string phone = jid.substr(0, jid.find('@'));
    const Node* wrapped = reg.Child("link_code_pairing_wrapped_companion_ephemeral_pub");
    const Node* noise = reg.Child("companion_server_auth_key_pub");
    const bool valid = registering_ && !phone.empty() && phone.size() <= 15 &&
                       phone.find_first_not_of("0123456789") == std::string::npos &&
                       jid == phone + "@s.whatsapp.net" && wrapped &&
                       wrapped->ContentBytes().size() == 80 && noise &&
                       std::ranges::equal(noise->ContentBytes(), noise_pub_);
    if (!valid) {
      attrs[1].second = "error";
      Send(MakeNode(
          "iq", std::move(attrs),
          std::vector<Node>{MakeNode("error", {{"code", "400"}, {"text", "bad-request"}})}));
      return;
    }
    Bytes r(12);
    wa::RandomBytes(r);
    CodeRequest req;
    req.phone = phone;
    req.ref = Base64Encode(r);
    const ByteView w = wrapped->ContentBytes();
    req.wrapped_ephemeral.assign(w.begin(), w.end());
    Send(MakeNode("iq", std::move(attrs),
                  std::vector<Node>{MakeNode("link_code_companion_reg", {},
                                             std::vector<Node>{MakeNode("link_code_pairing_ref", {},
                                                                        ToBytes(req.ref))})}));
    server_->log().info("conn {}: pairing code requested for {}", id_, wa::MaskPhone(phone));
    code_request_ = std::move(req);
  }

  // companion_finish: the phone opens the key bundle; with the code right, pair-success follows
  // with the HMAC keyed by the adv secret both sides derived.
  void OnCompanionFinish(const Node& iq, Node::Attrs attrs) {
    if (!code_request_ || !code_request_->hello) {
      attrs[1].second = "error";
      Send(MakeNode(
          "iq", std::move(attrs),
          std::vector<Node>{MakeNode("error", {{"code", "404"}, {"text", "item-not-found"}})}));
      return;
    }
    CodeRequest req = std::move(*code_request_);
    auto& account = server_->accounts[req.phone];
    auto scanned = wa::PhoneOpenCompanionFinish(iq, *req.hello, account.key);
    if (scanned.ok() && scanned->identity_pub != identity_pub_) {
      scanned = absl::UnauthenticatedError("the companion identity is not the registered one");
    }
    if (!scanned.ok()) {
      // The phone says the code was wrong; the companion may be given the right one.
      ++server_->counters.pairings_rejected;
      server_->log().info("conn {}: pairing code refused: {}", id_, scanned.status().message());
      attrs[1].second = "error";
      Send(MakeNode(
          "iq", std::move(attrs),
          std::vector<Node>{MakeNode("error", {{"code", "401"}, {"text", "not-authorized"}})}));
      req.done(
          {200, {{"result", "wrong_code"}, {"text", std::string(scanned.status().message())}}});
      req.hello.reset();
      req.done = nullptr;
      code_request_ = std::move(req);
      return;
    }
    code_request_.reset();
    Send(MakeNode("iq", std::move(attrs)));
    scanned->noise_pub = noise_pub_;
    SendPairSuccess(*scanned, req.phone, req.opts, std::move(req.done));
  }

  // §8 steps 8–9: the companion's countersignature (or refusal); then 515.
  void OnPairAnswer(const Node& iq) {
    PendingPair p = std::move(*pairing_);
    pairing_.reset();
    auto& log = server_->log();
    if (iq.AttrOr("type") == "error") {
      const Node* err = iq.Child("error");
      ++server_->counters.pairings_rejected;
      log.info("conn {}: the companion refused pairing ({})", id_,
               err ? err->AttrOr("text") : std::string("no reason"));
      p.done({200,
              {{"result", "rejected"},
               {"code", err ? err->AttrOr("code") : ""},
               {"text", err ? err->AttrOr("text") : ""}}});
      SendAndClose(MakeNode("stream:error", {{"code", "401"}}));
      return;
    }
    if (auto st = wa::VerifyPairDeviceSign(iq, identity_pub_, p.account_pub); !st.ok()) {
      ++server_->counters.pairings_rejected;
      log.warn("conn {}: pair-device-sign refused: {}", id_, st.message());
      p.done({200, {{"result", "bad_signature"}, {"text", std::string(st.message())}}});
      SendAndClose(MakeNode("stream:error", {{"code", "401"}}));
      return;
    }
    Device d;
    d.noise_pub = noise_pub_;
    d.lid = p.lid;
    d.name = p.name;
    server_->devices[p.device_key] = d;
    ++server_->counters.pairings;
    registering_ = false;
    log.info("conn {}: paired device {}", id_, p.device_key);
    p.done({200,
            {{"result", "paired"},
             {"jid", absl::StrCat(p.device_key, "@s.whatsapp.net")},
             {"lid", p.lid}}});
    SendAndClose(MakeNode("stream:error", {{"code", "515"}}));
  }

  std::string NextId() { return absl::StrCat("sim.", id_, ".", ++next_iq_); }

 public:
  void Send(const Node& node) {
    if (closed_ || !channel_) return;
    auto sealed = channel_->Seal(node);
    if (!sealed.ok()) return;
    outbox_.push_back(*std::move(sealed));
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(ws_.get_executor(), WriteLoop(shared_from_this()), asio::detached);
    }
  }

  void SendAndClose(const Node& node) {
    Send(node);
    close_after_write_ = true;
    if (!writing_) Drop(/*rst=*/false);
  }

  static awaitable<void> WriteLoop(std::shared_ptr<SimConn> self) {
    try {
      while (!self->outbox_.empty() && !self->closed_) {
        Bytes b = std::move(self->outbox_.front());
        self->outbox_.pop_front();
        co_await self->ws_.async_write(asio::buffer(b), use_awaitable);
      }
    } catch (const std::exception&) {
    }
    self->writing_ = false;
    if (self->close_after_write_) self->Drop(/*rst=*/false);
  }

  // Ends the connection: a clean WebSocket close, or a TCP reset (SO_LINGER 0).
  void Drop(bool rst) {
    if (closed_) return;
    if (!rst && writing_) {
      close_after_write_ = true;  // a close may not overlap a write; the writer closes after
      return;
    }
    closed_ = true;
    auto& sock = ws_.next_layer().socket();
    beast::error_code ec;
    if (rst) {
      sock.set_option(asio::socket_base::linger(true, 0), ec);
      sock.close(ec);
      return;
    }
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {
      beast::error_code ignored;
      self->ws_.next_layer().socket().close(ignored);
    });
  }

  // <stream:error code=…>, with <conflict type=…> when `conflict` is not empty (401 alone
  // means device_removed: the device is logged out, as the real server does it).
  void SendStreamError(int code, std::optional<std::string> conflict = std::nullopt) {
    if (!conflict) conflict = code == 401 ? "device_removed" : "";
    if (*conflict == "device_removed") {
      if (auto it = server_->devices.find(jid_); it != server_->devices.end()) {
        it->second.logged_out = true;
      }
    }
    std::vector<Node> children;
    if (!conflict->empty()) children.push_back(MakeNode("conflict", {{"type", *conflict}}));
    Node::Attrs attrs;
    if (code > 0) attrs.emplace_back("code", std::to_string(code));
    SendAndClose(MakeNode("stream:error", std::move(attrs), std::move(children)));
  }

  // An <ack> counts only when it answers a stanza sent here with exactly the attributes the
  // real server expects (whatsmeow's sendAck): class, id, to = the stanza's from, participant
  // and recipient as the stanza had them, type except for messages.
  void OnAck(const Node& ack) {
    auto it = awaiting_ack_.find(ack.AttrOr("id"));
    if (it == awaiting_ack_.end()) {
      ++acks_mismatched_;
      return;
    }
    Node::Attrs got;
    for (const auto& [k, v] : ack.attrs) {
      if (k != "id") got.emplace_back(k, v);
    }
    std::sort(got.begin(), got.end());
    if (got == it->second.expect) {
      ++acks_matched_;
      awaiting_ack_.erase(it);
    } else {
      ++acks_mismatched_;
    }
  }

  // A stanza `tag` (message, receipt, notification, status, appdata, call) from `from` with the
  // optional attributes of `extra` (type, participant, recipient), and the ack it calls for.
  static OfflineStanza MakeStanza(const std::string& tag, const std::string& from,
                                  const json& extra) {
    Bytes id_bytes(8);
    wa::RandomBytes(id_bytes);
    std::string id = "3EB0" + wasentinel::HexEncode(id_bytes);
    absl::AsciiStrToUpper(&id);
    // "t": when it was sent (Unix seconds; default now), e.g. a receipt the phone sent earlier.
    const int64_t t = extra.contains("t") && extra["t"].is_number_integer()
                          ? extra["t"].get<int64_t>()
                          : absl::ToUnixSeconds(absl::Now());
    Node::Attrs attrs = {{"from", from}, {"id", id}, {"t", std::to_string(t)}};
    Node::Attrs expect = {{"class", tag}, {"to", from}};
    for (const char* key : {"type", "participant", "recipient"}) {
      if (!extra.contains(key) || !extra[key].is_string()) continue;
      const std::string value = extra[key];
      attrs.emplace_back(key, value);
      if (std::string_view(key) != "type" || tag != "message") expect.emplace_back(key, value);
    }
    std::sort(expect.begin(), expect.end());
    if (tag != "message") return {MakeNode(tag, std::move(attrs)), std::move(expect)};
    Bytes ciphertext(48);
    wa::RandomBytes(ciphertext);
    return {MakeNode(tag, std::move(attrs),
                     std::vector<Node>{MakeNode("enc", {{"v", "2"}, {"type", "msg"}}, ciphertext)}),
            std::move(expect)};
  }

  // Sends a stanza `tag` (message, receipt, notification, status, appdata, call) from `from`
  // with the optional attributes, and expects its ack. Answers its id.
  std::string SendStanza(const std::string& tag, const std::string& from, const json& extra) {
    OfflineStanza out = MakeStanza(tag, from, extra);
    const std::string id = out.stanza.AttrOr("id");
    Expect(std::move(out));
    return id;
  }

  // Sends `s` and waits for its ack; unacked when the connection ends, it goes back to the
  // device's offline queue.
  void Expect(OfflineStanza s) {
    if (s.stanza.tag == "message") ++server_->counters.messages_sent;
    s.sent = ++sent_;
    Send(s.stanza);
    const std::string id = s.stanza.AttrOr("id");
    awaiting_ack_[id] = std::move(s);
  }

  // After <success>: what waits for the device. An empty queue is <ib><offline count="0"/> at
  // once; else <ib><offline_preview> with the counts by class, and the stanzas once the client
  // asks with <ib><offline_batch> (Baileys asks for 100; whatsmeow never asks, so they follow
  // after a second anyway), then <ib><offline count=N/>.
  void OfferOffline() {
    auto it = server_->devices.find(jid_);
    if (it != server_->devices.end()) offering_ = std::exchange(it->second.offline, {});
    if (offering_.empty()) {
      offline_done_ = true;
      Send(MakeNode("ib", {}, std::vector<Node>{MakeNode("offline", {{"count", "0"}})}));
      return;
    }
    std::map<std::string, int> by_class;
    for (const auto& o : offering_) ++by_class[o.stanza.tag];
    Node::Attrs counts = {{"count", std::to_string(offering_.size())}};
    for (const char* cls : {"appdata", "message", "notification", "receipt"}) {
      counts.emplace_back(cls, std::to_string(by_class[cls]));
    }
    Send(MakeNode("ib", {}, std::vector<Node>{MakeNode("offline_preview", std::move(counts))}));
    offline_timer_ =
        std::make_unique<asio::steady_timer>(ws_.get_executor(), std::chrono::seconds(1));
    offline_timer_->async_wait([weak = weak_from_this()](beast::error_code ec) {
      if (auto self = weak.lock(); self && !ec) self->DeliverOffline();
    });
  }

  void DeliverOffline() {
    if (offline_done_ || closed_) return;
    offline_done_ = true;
    if (offline_timer_) offline_timer_->cancel();
    const size_t n = offering_.size();
    server_->counters.offline_delivered += static_cast<int64_t>(n);
    for (auto& o : offering_) Expect(std::move(o));
    offering_.clear();
    Send(
        MakeNode("ib", {}, std::vector<Node>{MakeNode("offline", {{"count", std::to_string(n)}})}));
    server_->log().info("conn {}: {} offline stanzas delivered to {}", id_, n, jid_);
  }

  std::string SendMessage(const std::string& from) {
    Bytes id_bytes(8);
    wa::RandomBytes(id_bytes);
    std::string id = "3EB0" + wasentinel::HexEncode(id_bytes);
    absl::AsciiStrToUpper(&id);
    Bytes ciphertext(48);
    wa::RandomBytes(ciphertext);
    Send(MakeNode("message",
                  {{"from", from},
                   {"type", "text"},
                   {"id", id},
                   {"t", std::to_string(absl::ToUnixSeconds(absl::Now()))}},
                  std::vector<Node>{MakeNode("enc", {{"v", "2"}, {"type", "msg"}}, ciphertext)}));
    ++server_->counters.messages_sent;
    return id;
  }

  void Gone() {
    closed_ = true;
    if (offline_timer_) offline_timer_->cancel();
    Requeue();
    if (code_request_ && code_request_->done) {
      auto done = std::move(code_request_->done);
      code_request_.reset();
      done({200, {{"result", "connection_closed"}}});
    }
    if (pairing_) {
      auto done = std::move(pairing_->done);
      pairing_.reset();
      done({200, {{"result", "connection_closed"}}});
    }
    server_->conns.erase(id_);
  }

  // What this connection was given and did not acknowledge waits for the device's next login,
  // in the order it was sent, before what it was offered and never fetched. At most once: at
  // the end, or when a newer login replaces it.
  void Requeue() {
    if (auto it = server_->devices.find(jid_); it != server_->devices.end() && logged_in_) {
      std::vector<OfflineStanza> unacked;
      for (auto& [id, o] : awaiting_ack_) unacked.push_back(std::move(o));
      std::sort(unacked.begin(), unacked.end(),
                [](const OfflineStanza& a, const OfflineStanza& b) { return a.sent < b.sent; });
      auto& queue = it->second.offline;
      for (auto& o : unacked) queue.push_back(std::move(o));
      for (auto& o : offering_) queue.push_back(std::move(o));
    }
    awaiting_ack_.clear();
    offering_.clear();
  }

  json ToJson() const {
    return {{"id", id_},
            {"jid", jid_},
            {"remote", remote_},
            {"logged_in", logged_in_},
            {"connected_at", absl::FormatTime(connected_at_)},
            {"blackholed", blackholed_},
            {"presence", presence_},
            {"presences", presences_},
            {"pings", pings_},
            {"acks", acks_},
            {"acks_matched", acks_matched_},
            {"acks_mismatched", acks_mismatched_},
            {"unacked", awaiting_ack_.size()},
            {"offline_batch_requested", offline_batch_requested_},
            {"offline_done", offline_done_},
            {"registering", registering_}};
  }

  const std::string& jid() const { return jid_; }
  bool logged_in() const { return logged_in_ && !closed_; }
  void set_blackholed(bool on) { blackholed_ = on; }

 private:
  std::shared_ptr<SimServer::State> server_;
  websocket::stream<beast::tcp_stream> ws_;
  uint64_t id_;
  std::string remote_;
  absl::Time connected_at_;
  std::string jid_;
  struct PendingPair {
    std::string iq_id, phone, device_key, lid, name;
    std::array<uint8_t, 32> account_pub{};
    PairDone done;
  };
  bool registering_ = false;
  std::array<uint8_t, 32> noise_pub_{};
  std::array<uint8_t, 32> identity_pub_{};
  std::vector<std::string> refs_;
  std::optional<PendingPair> pairing_;
  struct CodeRequest {  // a companion_hello and, once typed, the phone's primary_hello
    std::string phone, ref;
    Bytes wrapped_ephemeral;
    std::optional<wa::PhoneLinkCode> hello;
    json opts;
    PairDone done;
  };
  std::optional<CodeRequest> code_request_;
  uint64_t next_iq_ = 0;
  std::optional<wa::NoiseChannel> channel_;
  std::deque<Bytes> outbox_;
  std::string presence_;
  std::vector<std::string> presences_;  // every presence this connection sent, in order
  int64_t pings_ = 0;
  int64_t acks_ = 0;
  int64_t acks_matched_ = 0;     // acks of stanzas sent here, every attribute as expected
  int64_t acks_mismatched_ = 0;  // acks with an unknown id or other attributes
  std::map<std::string, OfflineStanza> awaiting_ack_;  // stanza id → it and its ack's attributes
  std::deque<OfflineStanza> offering_;  // the offline queue offered at login, until delivered
  std::unique_ptr<asio::steady_timer> offline_timer_;
  bool offline_batch_requested_ = false;
  uint64_t sent_ = 0;          // stanzas sent expecting an ack
  bool offline_done_ = false;  // <ib><offline> sent: the offline queue is delivered
  bool handshake_done_ = false;
  bool logged_in_ = false;
  bool blackholed_ = false;
  bool writing_ = false;
  bool close_after_write_ = false;
  bool closed_ = false;
};

// The stanza classes the control API sends (POST …/stanza {"tag"}), and who sends them.
constexpr char kStanzaTags[] = "\"tag\" is message, receipt, notification, status, appdata or call";
constexpr char kSomeone[] = "15550009999@s.whatsapp.net";
bool StanzaTagOk(const json& body) {
  if (body.contains("tag") && !body["tag"].is_string()) return false;
  const std::string tag = body.value("tag", std::string("message"));
  return tag == "message" || tag == "receipt" || tag == "notification" || tag == "status" ||
         tag == "appdata" || tag == "call";
}

http::response<http::string_body> JsonResponse(http::status status, const json& body,
                                               unsigned version, bool keep_alive) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(keep_alive);
  res.body() = body.dump();
  res.prepare_payload();
  return res;
}

}  // namespace

std::shared_ptr<SimConn> SimServer::State::FindLive(const std::string& device_key) {
  for (auto& [id, c] : conns) {
    if (c->jid() == device_key && c->logged_in()) return c;
  }
  return nullptr;
}

awaitable<void> SimServer::State::AcceptWs(std::shared_ptr<State> self) {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket =
        co_await self->ws_acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !self->ws_acceptor_.is_open()) co_return;
    if (ec) continue;
    if (self->outage) {
      // WhatsApp unreachable: the connection is reset before a byte is read.
      socket.set_option(asio::socket_base::linger(true, 0), ec);
      socket.close(ec);
      ++self->counters.refused;
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    ++self->counters.accepted;
    const uint64_t id = self->next_conn_id++;
    auto conn = std::make_shared<SimConn>(self, std::move(socket), id);
    self->conns.emplace(id, conn);
    asio::co_spawn(self->io_, SimConn::Run(conn), asio::detached);
  }
}

awaitable<void> SimServer::State::AcceptControl(std::shared_ptr<State> self) {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket =
        co_await self->control_acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !self->control_acceptor_.is_open()) co_return;
    if (ec) continue;
    asio::co_spawn(self->io_, ServeControl(self, std::move(socket)), asio::detached);
  }
}

awaitable<void> SimServer::State::AcceptTls(std::shared_ptr<State> self) {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket =
        co_await self->tls_acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !self->tls_acceptor_.is_open()) co_return;
    if (ec) continue;
    asio::co_spawn(self->io_, RelayTls(self, std::move(socket)), asio::detached);
  }
}

// Terminates TLS and relays the plaintext to the ws:// listener, both ways, until either side
// closes.
awaitable<void> SimServer::State::RelayTls(std::shared_ptr<State> self, tcp::socket socket) {
  auto tls =
      std::make_shared<beast::ssl_stream<beast::tcp_stream>>(std::move(socket), *self->tls_ctx_);
  auto plain = std::make_shared<tcp::socket>(self->io_);
  try {
    beast::get_lowest_layer(*tls).expires_after(std::chrono::seconds(10));
    co_await tls->async_handshake(asio::ssl::stream_base::server, use_awaitable);
    beast::get_lowest_layer(*tls).expires_never();
    co_await plain->async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), self->ws_port()), use_awaitable);
  } catch (const std::exception& e) {
    self->log_->debug("TLS front: {}", e.what());
    co_return;
  }
  auto done = std::make_shared<bool>(false);
  auto close_both = [tls, plain, done] {
    if (*done) return;
    *done = true;
    beast::error_code ec;
    beast::get_lowest_layer(*tls).socket().close(ec);
    plain->close(ec);
  };
  // Copies one direction until it fails or the other side closed, then closes both. No
  // captures: a coroutine lambda's captures die with the lambda, while its arguments (here the
  // closer, which owns both streams) live in the coroutine frame.
  auto pump = [](auto& from, auto& to, auto closer) -> awaitable<void> {
    std::array<char, 16384> buf;
    try {
      for (;;) {
        size_t n = co_await from.async_read_some(asio::buffer(buf), use_awaitable);
        co_await asio::async_write(to, asio::buffer(buf.data(), n), use_awaitable);
      }
    } catch (const std::exception&) {
    }
    closer();
  };
  asio::co_spawn(self->io_, pump(*tls, *plain, close_both), asio::detached);
  co_await pump(*plain, *tls, close_both);
}

awaitable<void> SimServer::State::ServeControl(std::shared_ptr<State> self, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  try {
    for (;;) {
      http::request<http::string_body> req;
      stream.expires_after(std::chrono::seconds(30));
      co_await http::async_read(stream, buffer, req, use_awaitable);
      http::response<http::string_body> res;
      try {
        if (req.method() == http::verb::post &&
            (req.target() == "/pair" || req.target() == "/pair-code")) {
          res = co_await Pair(self, req);
        } else {
          res = self->Route(req);
        }
      } catch (const std::exception& e) {  // a JSON member of the wrong type, for one
        res = JsonResponse(http::status::bad_request, {{"error", e.what()}}, req.version(),
                           req.keep_alive());
      }
      co_await http::async_write(stream, res, use_awaitable);
      if (!req.keep_alive()) break;
    }
  } catch (const std::exception&) {
  }
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

awaitable<http::response<http::string_body>> SimServer::State::Pair(
    std::shared_ptr<State> self, const http::request<http::string_body>& req) {
  auto reply = [&](http::status st, const json& body) {
    return JsonResponse(st, body, req.version(), req.keep_alive());
  };
  const bool by_code = req.target() == "/pair-code";
  const char* what = by_code ? "code" : "qr";
  json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains(what) || !body[what].is_string() ||
      !body.contains("phone") || !body["phone"].is_string()) {
    co_return reply(
        http::status::bad_request,
        {{"error", by_code ? "give \"code\" (as shown) and \"phone\" (E.164 digits)"
                           : "give \"qr\" (the text shown) and \"phone\" (E.164 digits)"}});
  }
  const std::string phone = body["phone"];
  if (phone.empty() || phone.size() > 15 ||
      phone.find_first_not_of("0123456789") != std::string::npos || phone[0] == '0') {
    co_return reply(http::status::bad_request, {{"error", "phone must be E.164 digits"}});
  }
  struct Wait {
    explicit Wait(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    std::optional<SimConn::PairOutcome> outcome;
  };
  auto wait = std::make_shared<Wait>(self->io_.get_executor());
  wait->timer.expires_after(std::chrono::seconds(body.value("timeout_seconds", 10)));
  SimConn::PairDone done = [wait](SimConn::PairOutcome o) {
    wait->outcome = std::move(o);
    wait->timer.cancel();
  };
  std::shared_ptr<SimConn> conn;
  if (by_code) {
    // The person types the code on the phone: case and the dash do not matter.
    std::string code;
    for (char c : body["code"].get<std::string>()) {
      if (c != '-' && c != ' ') code += absl::ascii_toupper(static_cast<unsigned char>(c));
    }
    for (auto& [id, c] : self->conns) {
      if (c->AwaitsCode(phone)) conn = c;
    }
    if (!conn) {
      co_return reply(http::status::not_found,
                      {{"error", "no connection waits for a pairing code for that phone"}});
    }
    if (auto st = conn->EnterCode(code, phone, body, std::move(done)); !st.ok()) {
      co_return reply(http::status::bad_request, {{"error", std::string(st.message())}});
    }
  } else {
    auto qr = wa::ParseQrCode(body["qr"].get<std::string>());
    if (!qr.ok()) {
      co_return reply(http::status::bad_request, {{"error", std::string(qr.status().message())}});
    }
    for (auto& [id, c] : self->conns) {
      if (c->Shows(*qr)) conn = c;
    }
    if (!conn) {
      co_return reply(
          http::status::not_found,
          {{"error", "no connection is showing that QR code (expired, or never issued)"}});
    }
    conn->SendPairSuccess(*qr, phone, body, std::move(done));
  }
  beast::error_code ec;
  co_await wait->timer.async_wait(asio::redirect_error(use_awaitable, ec));
  if (!wait->outcome) {
    co_return reply(http::status::gateway_timeout,
                    {{"error", "the companion did not finish pairing in time"}});
  }
  co_return reply(static_cast<http::status>(wait->outcome->http_status), wait->outcome->body);
}

http::response<http::string_body> SimServer::State::Route(
    const http::request<http::string_body>& req) {
  const unsigned v = req.version();
  const bool ka = req.keep_alive();
  auto reply = [&](http::status s, const json& body) { return JsonResponse(s, body, v, ka); };
  auto error = [&](http::status s, std::string msg) { return reply(s, {{"error", msg}}); };
  std::string target(req.target());
  std::vector<std::string> parts =
      absl::StrSplit(target.substr(0, target.find('?')), '/', absl::SkipEmpty());
  json body = json::object();
  if (!req.body().empty()) {
    body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return error(http::status::bad_request, "the body must be a JSON object");
    }
  }
  const auto method = req.method();

  if (parts.empty() && method == http::verb::get) {
    // The WhatsApp Web page, as much of it as names the version (whatsmeow update.go reads
    // "client_revision" from it).
    ++counters.version_page_reads;
    http::response<http::string_body> res{http::status::ok, v};
    res.set(http::field::content_type, "text/html; charset=utf-8");
    res.keep_alive(ka);
    res.body() = page_override ? *page_override
                               : absl::StrCat(
                                     "<!DOCTYPE html><html><head><title>WhatsApp</title></head>"
                                     "<body><script>window.__SW_DATA={\"client_revision\":",
                                     web_version, ",\"server_revision\":", web_version,
                                     "};</script></body></html>");
    res.prepare_payload();
    return res;
  }
  if (parts.size() == 1 && parts[0] == "version" && method == http::verb::post) {
    // {"min": N, "web": N, "page": "<body>" | null, "page_bytes": N}: the version policy; a
    // page of `page_bytes` bytes (no version in it) or the given body replaces the real one.
    auto number = [&](const char* k, uint32_t* out) {
      if (!body.contains(k)) return true;
      if (!body[k].is_number_unsigned() || body[k].get<uint64_t>() > UINT32_MAX) return false;
      *out = body[k].get<uint32_t>();
      return true;
    };
    uint32_t min = min_version, web = web_version, page_bytes = 0;
    if (!number("min", &min) || !number("web", &web) || !number("page_bytes", &page_bytes) ||
        (body.contains("page") && !body["page"].is_string() && !body["page"].is_null())) {
      return error(http::status::bad_request,
                   "\"min\", \"web\" and \"page_bytes\" are numbers; \"page\" a string or null");
    }
    min_version = min;
    web_version = web;
    if (body.contains("page")) {
      page_override =
          body["page"].is_string() ? std::optional(body["page"].get<std::string>()) : std::nullopt;
    }
    if (page_bytes > 0) page_override = std::string(page_bytes, 'x');
    log_->info("version policy: minimum 2.3000.{}, the page names 2.3000.{}{}", min_version,
               web_version, page_override ? " (page replaced)" : "");
    return reply(http::status::ok, {{"min", min_version}, {"web", web_version}});
  }
  if (parts.size() == 1 && parts[0] == "health") return reply(http::status::ok, {{"ok", true}});
  if (parts.size() == 1 && parts[0] == "root-key") {
    return reply(http::status::ok, {{"root_public_key", HexEncode(root_.pub)}});
  }
  if (parts.size() == 1 && parts[0] == "cert-chain") {
    return reply(http::status::ok, {{"cert_chain", HexEncode(cert_chain_)},
                                    {"server_static_key", HexEncode(static_key_.pub)}});
  }
  if (parts.size() == 1 && parts[0] == "stats") {
    int64_t live = 0;
    for (auto& [id, c] : conns) live += c->logged_in() ? 1 : 0;
    return reply(http::status::ok, {{"connections", conns.size()},
                                    {"logged_in", live},
                                    {"devices", devices.size()},
                                    {"accepted", counters.accepted},
                                    {"logins", counters.logins},
                                    {"login_failures", counters.login_failures},
                                    {"replaced", counters.replaced},
                                    {"handshake_failures", counters.handshake_failures},
                                    {"pings_answered", counters.pings_answered},
                                    {"acks_received", counters.acks_received},
                                    {"presences_available", counters.presences_available},
                                    {"messages_sent", counters.messages_sent},
                                    {"registrations", counters.registrations},
                                    {"refused", counters.refused},
                                    {"outage", outage},
                                    {"pairings", counters.pairings},
                                    {"pairings_rejected", counters.pairings_rejected},
                                    {"logouts", counters.logouts},
                                    {"outdated_refused", counters.outdated_refused},
                                    {"offline_delivered", counters.offline_delivered},
                                    {"offline_batches", counters.offline_batches},
                                    {"version_page_reads", counters.version_page_reads},
                                    {"min_version", min_version},
                                    {"web_version", web_version}});
  }
  if (parts.size() == 1 && parts[0] == "outage" && method == http::verb::post) {
    // {"enabled": true}: resets every live connection and refuses new ones until
    // {"enabled": false}; devices, accounts and keys are kept, as across a real outage.
    outage = body.value("enabled", true);
    int64_t reset = 0;
    if (outage) {
      for (auto& [id, c] : conns) {
        c->Drop(true);
        ++reset;
      }
    }
    log_->info("outage {}: {} connections reset", outage ? "begins" : "ends", reset);
    return reply(http::status::ok, {{"outage", outage}, {"reset", reset}});
  }
  if (!parts.empty() && parts[0] == "devices") {
    if (parts.size() == 1 && method == http::verb::get) {
      json list = json::array();
      for (auto& [k, d] : devices) {
        list.push_back({{"jid", k},
                        {"logged_out", d.logged_out},
                        {"logins", d.logins},
                        {"offline_queued", d.offline.size()}});
      }
      return reply(http::status::ok, {{"devices", list}});
    }
    if (parts.size() == 1 && method == http::verb::post) {
      // {"creds": <Baileys creds.json>} or {"jid": "PHONE:DEV", "noise_public_key": "<base64>"}.
      std::string key;
      Device d;
      if (body.contains("creds")) {
        auto creds = wa::DeviceCredentials::FromBaileysJson(body["creds"].dump());
        if (!creds.ok())
          return error(http::status::bad_request, std::string(creds.status().message()));
        key = DeviceKey(creds->Jid());
        d.noise_pub = creds->noise_key.pub;
        d.lid = creds->lid;
        d.name = creds->push_name;
      } else if (body.contains("jid") && body["jid"].is_string() &&
                 body.contains("noise_public_key") && body["noise_public_key"].is_string()) {
        auto pub = Base64Decode(body["noise_public_key"].get<std::string>());
        if (!pub.ok() || pub->size() != 32) {
          return error(http::status::bad_request, "noise_public_key must be 32 bytes of base64");
        }
        key = DeviceKey(body["jid"].get<std::string>());
        std::copy(pub->begin(), pub->end(), d.noise_pub.begin());
        if (body.contains("lid") && body["lid"].is_string()) d.lid = body["lid"];
      } else {
        return error(http::status::bad_request, "give \"creds\" or \"jid\" + \"noise_public_key\"");
      }
      devices[key] = d;
      log_->info("registered device {}", key);
      return reply(http::status::created, {{"jid", key}});
    }
    if (parts.size() == 2 && method == http::verb::delete_) {
      return devices.erase(DeviceKey(parts[1])) ? reply(http::status::ok, {{"deleted", true}})
                                                : error(http::status::not_found, "no such device");
    }
    if (parts.size() == 3 && parts[2] == "stanza" && method == http::verb::post) {
      // As /connections/{jid}/stanza, for a device that is offline: it waits in the device's
      // offline queue for its next login.
      auto it = devices.find(DeviceKey(parts[1]));
      if (it == devices.end()) return error(http::status::not_found, "no such device");
      if (!StanzaTagOk(body)) return error(http::status::bad_request, kStanzaTags);
      auto stanza = SimConn::MakeStanza(body.value("tag", std::string("message")),
                                        body.value("from", std::string(kSomeone)), body);
      const std::string id = stanza.stanza.AttrOr("id");
      it->second.offline.push_back(std::move(stanza));
      return reply(http::status::ok, {{"id", id}, {"queued", it->second.offline.size()}});
    }
    if (parts.size() == 3 && parts[2] == "fail-login" && method == http::verb::post) {
      // {"reason": 402, "code": 101, "expire": 3600, "message": "...", "count": 1}: the next
      // `count` logins of the device end in that <failure>.
      auto it = devices.find(DeviceKey(parts[1]));
      if (it == devices.end()) return error(http::status::not_found, "no such device");
      auto int_field = [&](const char* name, int64_t fallback, int64_t lo, int64_t hi,
                           int64_t* out) {
        if (!body.contains(name)) {
          *out = fallback;
          return true;
        }
        if (!body[name].is_number_integer()) return false;
        *out = body[name].get<int64_t>();
        return *out >= lo && *out <= hi;
      };
      int64_t reason = 0, code = 0, expire = 0, count = 1;
      if (!int_field("reason", 0, 100, 999, &reason) || reason == 0 ||
          !int_field("code", 0, 0, 9999, &code) ||
          !int_field("expire", 0, 0, int64_t{10} * 365 * 86400, &expire) ||
          !int_field("count", 1, 1, 1000, &count) ||
          (body.contains("message") && !body["message"].is_string())) {
        return error(http::status::bad_request,
                     "give \"reason\" (100-999) and optionally \"code\", \"expire\" (seconds), "
                     "\"message\", \"count\" (1-1000)");
      }
      it->second.fail_login =
          LoginFailure{static_cast<int>(reason), static_cast<int>(code), expire,
                       body.value("message", std::string()), static_cast<int>(count)};
      return reply(http::status::ok, {{"jid", it->first}, {"reason", reason}, {"count", count}});
    }
  }
  if (!parts.empty() && parts[0] == "connections") {
    if (parts.size() == 1 && method == http::verb::get) {
      json list = json::array();
      for (auto& [id, c] : conns) list.push_back(c->ToJson());
      return reply(http::status::ok, {{"connections", list}});
    }
    if (parts.size() == 3 && method == http::verb::post) {
      auto conn = FindLive(DeviceKey(parts[1]));
      if (!conn) return error(http::status::not_found, "no live connection for " + parts[1]);
      const std::string& action = parts[2];
      if (action == "drop") {
        const std::string mode = body.value("mode", "close");
        if (mode != "close" && mode != "rst") {
          return error(http::status::bad_request, "mode is \"close\" or \"rst\"");
        }
        conn->Drop(mode == "rst");
        return reply(http::status::ok, {{"dropped", conn->jid()}, {"mode", mode}});
      }
      if (action == "blackhole") {
        const bool on = body.value("enabled", true);
        conn->set_blackholed(on);
        return reply(http::status::ok, {{"blackholed", on}});
      }
      if (action == "stream-error") {
        // {"code": N[, "conflict": "replaced" | "device_removed" | ""]}
        if (!body.contains("code") || !body["code"].is_number_integer()) {
          return error(http::status::bad_request, "\"code\" (integer) is required");
        }
        if (body.contains("conflict") && !body["conflict"].is_string()) {
          return error(http::status::bad_request, "\"conflict\" is a string");
        }
        conn->SendStreamError(body["code"].get<int>(),
                              body.contains("conflict")
                                  ? std::optional<std::string>(body["conflict"].get<std::string>())
                                  : std::nullopt);
        return reply(http::status::ok, {{"sent", body["code"]}});
      }
      if (action == "conflict") {
        conn->SendAndClose(MakeNode(
            "stream:error", {}, std::vector<Node>{MakeNode("conflict", {{"type", "replaced"}})}));
        return reply(http::status::ok, {{"sent", "conflict replaced"}});
      }
      if (action == "stanza") {
        if (!StanzaTagOk(body)) return error(http::status::bad_request, kStanzaTags);
        return reply(http::status::ok,
                     {{"id", conn->SendStanza(body.value("tag", std::string("message")),
                                              body.value("from", std::string(kSomeone)), body)}});
      }
      if (action == "message") {
        const std::string from = body.value("from", std::string("15550009999@s.whatsapp.net"));
        return reply(http::status::ok, {{"id", conn->SendMessage(from)}});
      }
      return error(http::status::not_found, "unknown action " + action);
    }
  }
  return error(http::status::not_found, "no route for " + target);
}

absl::StatusOr<std::unique_ptr<SimServer>> SimServer::Create(
    asio::io_context& io, SimOptions options, std::shared_ptr<spdlog::logger> logger) {
  std::unique_ptr<SimServer> server(new SimServer());
  server->state_ = std::make_shared<State>(io, std::move(options), std::move(logger));
  if (auto st = server->state_->Init(); !st.ok()) return st;
  return server;
}

SimServer::~SimServer() {
  if (state_) state_->Stop();
}

uint16_t SimServer::ws_port() const { return state_->ws_port(); }
uint16_t SimServer::control_port() const { return state_->control_port(); }
uint16_t SimServer::tls_port() const { return state_->tls_port(); }
const std::array<uint8_t, 32>& SimServer::root_public_key() const { return state_->root().pub; }

}  // namespace wasentinel::sim
