// The inside of a Connection (connection.h), private to src/wa: Connection::Impl, its members and
// its methods. connection.cc defines the transport and the connection's life (WebSocket, Noise
// handshake, frames, writes, keepalive, close); connection_stanzas.cc what the server says and
// how it is answered (login success and failure, stream errors, <ib>, iqs, pairing, acks).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "connection.h"
#include "noise_channel.h"
#include "url.h"

namespace wasentinel::wa {
namespace connection_internal {

inline std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// The WebSocket below the Noise layer, plain or over TLS.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual boost::asio::awaitable<void> Connect(const Url& url, const std::string& origin,
                                               absl::Duration timeout) = 0;
  virtual boost::asio::awaitable<size_t> Read(boost::beast::flat_buffer& buffer) = 0;
  virtual boost::asio::awaitable<void> Write(ByteView data) = 0;
  virtual boost::asio::awaitable<void> Close() = 0;
  virtual void Abort() = 0;
};

}  // namespace connection_internal

class Connection::Impl : public std::enable_shared_from_this<Connection::Impl> {
 public:
  Impl(boost::asio::any_io_executor executor, boost::asio::ssl::context& tls,
       ConnectionOptions options, DeviceCredentials creds,
       std::shared_ptr<ConnectionObserver> observer, std::shared_ptr<spdlog::logger> logger);

  // connection.cc: what Connection's methods post to the executor.
  void Start();
  void Close();
  void Abort() { Finish({CloseCause::kClosedByUs, 0, "aborted"}); }
  const boost::asio::any_io_executor& Executor() const { return executor_; }
  void Probe(std::function<void(absl::StatusOr<absl::Duration>)> done, absl::Duration timeout);
  void Query(Node iq, std::function<void(absl::StatusOr<Node>)> done, absl::Duration timeout);
  void SendIfLoggedIn(const Node& node);
  void Logout(std::function<void(absl::Status)> done, absl::Duration timeout);

  ConnectionStats stats;

 private:
  // connection.cc: connect, handshake, then read frames until the end.
  static boost::asio::awaitable<void> Run(std::shared_ptr<Impl> self);

  // connection_stanzas.cc: what the server sends.
  void Handle(const Node& node);
  void OnIb(const Node& node);
  void OnSuccess(const Node& node);
  void OnIq(const Node& node);
  void OnPairDevice(const Node& iq);
  void RequestLinkCode();
  void OnPrimaryHello(const Node& notification);
  void ShowNextQr();
  void OnPairSuccess(const Node& iq);
  void OnStanza(const Node& node);
  bool IsOwnPhone(const Node& node) const;
  Node Presence(const char* type) const;

  // connection.cc: keepalive, sending, the end.
  void ScheduleKeepalive();
  void OnPongReceived(absl::Duration rtt);
  void Ping(std::function<void(absl::StatusOr<absl::Duration>)> done, absl::Duration timeout);
  void SendIq(Node iq, std::function<void(absl::StatusOr<Node>)> done,
              absl::Duration timeout = absl::Seconds(60));
  void Send(const Node& node);
  void StartWriter();
  static boost::asio::awaitable<void> WriteLoop(std::shared_ptr<Impl> self);
  void Finish(CloseInfo info);

  struct PendingIq {
    std::function<void(absl::StatusOr<Node>)> done;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };

  boost::asio::any_io_executor executor_;
  boost::asio::ssl::context& tls_;
  ConnectionOptions options_;
  DeviceCredentials creds_;
  std::shared_ptr<ConnectionObserver> observer_;
  std::shared_ptr<spdlog::logger> log_;
  Url url_;
  std::unique_ptr<connection_internal::Transport> transport_;
  std::optional<NoiseChannel> channel_;
  boost::asio::steady_timer login_deadline_;
  boost::asio::steady_timer keepalive_timer_;
  boost::asio::steady_timer qr_timer_;  // the current pairing QR code's expiry
  boost::asio::steady_timer close_timer_;
  // Keepalive jitter and the id prefix only: a 4-byte engine (a Mersenne Twister's 2.5 KB of
  // state was a sixteenth of an idle session).
  std::minstd_rand rng_;
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

}  // namespace wasentinel::wa
