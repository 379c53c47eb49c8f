// wa-sim's server: the keys and the listeners, the TLS front, and each client connection's
// WebSocket, Noise handshake, writes and end. What a connection answers is in sim_stanzas.cc,
// the control API in sim_control_api.cc; sim_internal.h has what they share.
#include "sim_server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "handshake.h"
#include "noise_channel.h"
#include "sim_internal.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::sim {
namespace {

using namespace sim_internal;  // the aliases and types the parts of wa-sim share

}  // namespace

absl::Status SimServer::State::Init() {
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
  auto signal_ctx = signal::Context::Create();
  if (!signal_ctx.ok()) return signal_ctx.status();
  signal_context = *std::move(signal_ctx);
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
  asio::co_spawn(io_, AcceptClients(shared_from_this(), ws_acceptor_, nullptr), asio::detached);
  asio::co_spawn(io_, AcceptControl(shared_from_this()), asio::detached);
  if (tls) {
    asio::co_spawn(io_, AcceptClients(shared_from_this(), tls_acceptor_, &*tls_ctx_),
                   asio::detached);
  }
  return absl::OkStatus();
}

void SimServer::State::Stop() {
  beast::error_code ec;
  ws_acceptor_.close(ec);
  control_acceptor_.close(ec);
  tls_acceptor_.close(ec);
}

std::shared_ptr<SimConn> SimServer::State::FindLive(const std::string& device_key) {
  for (auto& [id, c] : conns) {
    if (c->jid() == device_key && c->logged_in()) return c;
  }
  return nullptr;
}

// Accepts WebSocket clients on `acceptor`: ws://, or wss:// with `tls`.
awaitable<void> SimServer::State::AcceptClients(std::shared_ptr<State> self,
                                                tcp::acceptor& acceptor, asio::ssl::context* tls) {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) continue;
    Admit(self, std::move(socket), tls);
  }
}

void SimServer::State::Admit(const std::shared_ptr<State>& self, tcp::socket socket,
                             asio::ssl::context* tls) {
  beast::error_code ec;
  if (self->outage) {
    // WhatsApp unreachable: the connection is reset before a byte is read.
    socket.set_option(asio::socket_base::linger(true, 0), ec);
    socket.close(ec);
    ++self->counters.refused;
    return;
  }
  socket.set_option(tcp::no_delay(true), ec);
  ++self->counters.accepted;
  const uint64_t id = self->next_conn_id++;
  auto conn = std::make_shared<SimConn>(self, std::move(socket), id, tls);
  self->conns.emplace(id, conn);
  asio::co_spawn(self->io_, SimConn::Run(conn), asio::detached);
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

namespace sim_internal {

namespace {

std::variant<SimConn::PlainWs, SimConn::TlsWs> WebSocketOn(tcp::socket socket,
                                                           asio::ssl::context* tls) {
  if (tls) {
    return std::variant<SimConn::PlainWs, SimConn::TlsWs>(std::in_place_type<SimConn::TlsWs>,
                                                          std::move(socket), *tls);
  }
  return std::variant<SimConn::PlainWs, SimConn::TlsWs>(std::in_place_type<SimConn::PlainWs>,
                                                        std::move(socket));
}

std::string RemoteOf(const tcp::socket& socket) {
  beast::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return "?";
  return remote.address().to_string() + ":" + std::to_string(remote.port());
}

}  // namespace

SimConn::SimConn(std::shared_ptr<SimServer::State> server, tcp::socket socket, uint64_t id,
                 asio::ssl::context* tls)
    : server_(std::move(server)),
      remote_(RemoteOf(socket)),
      ws_(WebSocketOn(std::move(socket), tls)),
      id_(id),
      connected_at_(absl::Now()) {}

tcp::socket& SimConn::Socket() {
  return std::visit([](auto& ws) -> tcp::socket& { return beast::get_lowest_layer(ws).socket(); },
                    ws_);
}

awaitable<size_t> SimConn::Read(beast::flat_buffer& buffer) {
  return std::visit([&](auto& ws) { return ws.async_read(buffer, use_awaitable); }, ws_);
}

// Not a coroutine lambda: its captures would die with it, before the write runs. The
// initiation copies `data` (a pointer and a size) into the operation.
awaitable<size_t> SimConn::Write(asio::const_buffer data) {
  return std::visit([data](auto& ws) { return ws.async_write(data, use_awaitable); }, ws_);
}

awaitable<void> SimConn::Run(std::shared_ptr<SimConn> self) {
  auto& log = self->server_->log();
  try {
    if (auto* tls = std::get_if<TlsWs>(&self->ws_)) {
      beast::get_lowest_layer(*tls).expires_after(std::chrono::seconds(10));
      co_await tls->next_layer().async_handshake(asio::ssl::stream_base::server, use_awaitable);
      beast::get_lowest_layer(*tls).expires_never();
    }
    co_await std::visit(
        [](auto& ws) {
          ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
          ws.binary(true);
          return ws.async_accept(use_awaitable);
        },
        self->ws_);
    beast::flat_buffer buffer;
    // The first message starts with the 4-byte header, then the ClientHello frame.
    Bytes pending;
    while (pending.size() < 4) {
      size_t n = co_await self->Read(buffer);
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
        size_t n = co_await self->Read(buffer);
        reader.Feed(ByteView(static_cast<const uint8_t*>(buffer.data().data()), n));
        buffer.consume(n);
      }
    };
    Bytes hello = co_await next_frame();
    auto reply = hs.Respond(hello);
    if (!reply.ok()) throw std::runtime_error(std::string(reply.status().message()));
    Bytes out;
    (void)wa::AppendFrame(out, *reply);
    co_await self->Write(asio::buffer(out));
    Bytes finish = co_await next_frame();
    auto identity = hs.Complete(finish);
    if (!identity.ok()) throw std::runtime_error(std::string(identity.status().message()));
    self->channel_.emplace(hs.Split());
    self->handshake_done_ = true;
    if (auto delay = self->server_->options().post_handshake_delay; delay.count() > 0) {
      asio::steady_timer pause(self->server_->io(), delay);
      co_await pause.async_wait(use_awaitable);
    }
    self->OnClientPayload(*identity);

    while (!self->closed_) {
      size_t n = co_await self->Read(buffer);
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

void SimConn::Send(const Node& node) {
  if (closed_ || !channel_) return;
  auto sealed = channel_->Seal(node);
  if (!sealed.ok()) return;
  outbox_.push_back(*std::move(sealed));
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(server_->io(), WriteLoop(shared_from_this()), asio::detached);
  }
}

void SimConn::SendAndClose(const Node& node) {
  Send(node);
  close_after_write_ = true;
  if (!writing_) Drop(/*rst=*/false);
}

awaitable<void> SimConn::WriteLoop(std::shared_ptr<SimConn> self) {
  try {
    while (!self->outbox_.empty() && !self->closed_) {
      Bytes b = std::move(self->outbox_.front());
      self->outbox_.pop_front();
      co_await self->Write(asio::buffer(b));
    }
  } catch (const std::exception&) {
  }
  self->writing_ = false;
  if (self->close_after_write_) self->Drop(/*rst=*/false);
}

// Ends the connection: a clean WebSocket close, or a TCP reset (SO_LINGER 0).
void SimConn::Drop(bool rst) {
  if (closed_) return;
  if (!rst && writing_) {
    close_after_write_ = true;  // a close may not overlap a write; the writer closes after
    return;
  }
  closed_ = true;
  auto& sock = Socket();
  beast::error_code ec;
  if (rst) {
    sock.set_option(asio::socket_base::linger(true, 0), ec);
    sock.close(ec);
    return;
  }
  std::visit(
      [self = shared_from_this()](auto& ws) {
        ws.async_close(websocket::close_code::normal, [self](beast::error_code) {
          beast::error_code ignored;
          self->Socket().close(ignored);
        });
      },
      ws_);
}

void SimConn::Gone() {
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

}  // namespace sim_internal

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
