// One WhatsApp Web connection of a linked device: WebSocket (TLS or, on loopback, plain), Noise
// handshake, login with stored credentials, keepalive, presence, stream errors, and minimal
// acknowledgement of inbound stanzas.
//
// Source: whatsmeow, which meets the real server every day: socket/ (transport, Noise
// handshake), handshake.go and store/clientpayload.go (login payload), keepalive.go (defaults),
// connectionevents.go (disconnect reasons), receipt.go sendAck (acks). README "Session states"
// lists what each end of a connection leads to.
//
// Threading: a connection lives on one executor (an io_context run by one thread, or a strand).
// Its public methods may be called from any thread; they post to that executor. The observer is
// always called on it.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "credentials.h"
#include "handshake.h"
#include "pairing.h"

namespace spdlog {
class logger;
}

namespace wasentinel::wa {

struct ConnectionOptions {
  /// WebSocket URL: wss:// (TLS, verified against the system trust store) or ws:// (loopback
  /// tests and wa-sim).
  std::string url = "wss://web.whatsapp.com/ws/chat";
  std::string origin = "https://web.whatsapp.com";
  /// The trust anchor of the Noise certificate chain (default: WhatsApp's real root key).
  std::array<uint8_t, 32> root_key = kWhatsAppRootKey;
  /// TCP + TLS + WebSocket + Noise handshake, until <success>/<failure>.
  absl::Duration connect_timeout = absl::Seconds(20);
  /// Pings go out at a random interval in [min, max] (whatsmeow: 20–30 s)...
  absl::Duration keepalive_interval_min = absl::Seconds(20);
  absl::Duration keepalive_interval_max = absl::Seconds(30);
  /// ...each waits this long for its answer (whatsmeow: 10 s)...
  absl::Duration keepalive_response_timeout = absl::Seconds(10);
  /// ...and the connection is given up when no ping was answered for this long (whatsmeow's
  /// KeepAliveMaxFailTime: 3 min).
  absl::Duration keepalive_max_silence = absl::Minutes(3);
  /// What the client says about itself: WhatsApp Web version, OS name for the phone's list.
  ClientInfo client;
  /// Pairing (credentials not paired yet): the first QR code is shown this long, each later
  /// one `qr_next_timeout` (Baileys, whatsmeow: 60 s, then 20 s); after the last ref the
  /// connection ends with kPairingTimeout.
  absl::Duration qr_first_timeout = absl::Seconds(60);
  absl::Duration qr_next_timeout = absl::Seconds(20);
  /// Pairing by phone-number code instead of QR codes (as whatsmeow does it): the account's E.164
  /// digits. The code is valid while the refs last (the QR timeouts above, about 160 s).
  std::string pairing_phone;
  /// "Browser (OS)" as the phone lists the device; the real server accepts only common
  /// browsers and systems (whatsmeow: 400 otherwise).
  std::string pairing_platform_display = "Chrome (Linux)";
  /// The presence sent once after login. false (the default): `unavailable`, so that the
  /// account's phone keeps showing notifications; a linked device that says `available` makes
  /// the phone go quiet (Baileys' `markOnlineOnConnect: false` and mautrix-whatsapp do the
  /// same). true only on purpose (`--presence=available`). Probes never send a presence.
  bool presence_available = false;
};

/// Why a connection ended. What WhatsApp says maps as whatsmeow maps it (connectionevents.go
/// handleConnectFailure and handleStreamError, types/events/events.go ConnectFailureReason);
/// README "Session states" › "What WhatsApp says" is the table.
enum class CloseCause {
  kClosedByUs,        ///< Close() or Abort()
  kConnectFailed,     ///< DNS, TCP, TLS or WebSocket upgrade failed, or timed out
  kHandshakeFailed,   ///< Noise handshake or certificate verification failed
  kSocketClosed,      ///< the server closed the socket or sent <xmlstreamend/>
  kKeepaliveTimeout,  ///< no ping answered within keepalive_max_silence
  kRestartRequired,   ///< <stream:error code="515"/>
  kLoggedOut,         ///< <failure reason=401|403|406>, stream error 401 + device_removed
  kReplaced,          ///< <stream:error><conflict type="replaced"/></stream:error>
  kTemporaryBan,      ///< <failure reason=402 code=… expire=…>
  kClientOutdated,    ///< <failure reason=405>
  kServerError,       ///< <failure reason=500|503>, any other stream error: retried
  kLoginRefused,      ///< any other <failure reason> (400, 409, 413, 414, 415, 418, 501, …)
  kProtocolError,     ///< undecodable or undecryptable input from the server
  kPairingTimeout,    ///< every QR ref expired unscanned
  kPairingRejected,   ///< <pair-success> did not verify (HMAC or account signature)
};

std::string_view CloseCauseName(CloseCause cause);

/// What a temporary ban's code means (whatsmeow types/events/events.go TempBanReason).
std::string_view TemporaryBanText(int code);

struct CloseInfo {
  CloseCause cause = CloseCause::kSocketClosed;
  int code = 0;        ///< stream-error / failure code when the server gave one
  std::string detail;  ///< human-readable, for last_error
  int ban_code = 0;    ///< kTemporaryBan: <failure code=…>
  /// kTemporaryBan: <failure expire=…> (seconds); absent when the server gave none (or 0).
  std::optional<absl::Duration> ban_expires_in;
};

/// The outcome of a `<failure>` (reason, code, expire, message attributes) or a
/// `<stream:error>` (code attribute, <conflict type>) node.
CloseInfo FailureInfo(const Node& failure);
CloseInfo StreamErrorInfo(const Node& stream_error);

struct LoginInfo {
  absl::Time server_time;  ///< <success t=...>
  std::string lid;         ///< <success lid=...>
};

/// Callbacks of one connection, on its executor. OnClosed is called exactly once, last.
///
/// With credentials that are not paired, the connection registers instead of logging in:
/// OnQrCode for each ref as it is due, then OnPaired once the phone scanned one and the
/// identity verified (the server follows with 515, i.e. OnClosed kRestartRequired, and the
/// owner logs in with the paired credentials).
class ConnectionObserver {
 public:
  virtual ~ConnectionObserver() = default;
  virtual void OnLoggedIn(const LoginInfo& info) = 0;
  virtual void OnClosed(const CloseInfo& info) = 0;
  /// QR code `index` of `total` (1-based) to show, valid for `valid_for`. The text is a
  /// credential: never log it.
  virtual void OnQrCode(const std::string& text, absl::Duration valid_for, int index, int total) {}
  /// Pairing by code: the server accepted the request; `code` ("ABCD-EFGH") is to be typed on
  /// the phone within `valid_for`. Once per connection.
  virtual void OnPairingCode(const std::string& code, absl::Duration valid_for) {}
  /// Pairing succeeded: `creds` are the paired credentials to store.
  virtual void OnPaired(const PairedDevice& device, const DeviceCredentials& creds) {}
  virtual void OnPong(absl::Duration round_trip) {}
  virtual void OnKeepaliveMissed() {}
  virtual void OnInboundMessage(absl::Time at) {}
  /// The account's phone (our number, or our LID, at device 0) sent a receipt, message or
  /// notification, dated `at` (the stanza's `t`, or now): the phone is alive. Source:
  /// mautrix-whatsapp's phone ping (receipts from own device 0), whatsmeow's IsFromMe.
  virtual void OnPhoneSeen(absl::Time at) {}
  /// How many of this device's one-time pre-keys the server holds: answered to the count query
  /// after login, and sent by the server when they run low (docs/wa-protocol.md §11).
  virtual void OnPreKeyCount(int64_t count) {}
  /// An end-to-end encrypted <message> (one with <enc>). True: the observer took it and sends
  /// its receipt or ack itself (ConnectionHandle::Send) once the message is safe; false: the
  /// connection acks it at once, undecrypted.
  virtual bool OnEncryptedMessage(const Node& message) { return false; }
  /// A stanza about what this device sent, after the connection acked it as it acks every
  /// stanza: a <receipt> (delivered, read, retry), the server's <ack class="message"> of a
  /// message, or a <notification type="devices"> (a contact's device list changed).
  virtual void OnMessageStanza(const Node& stanza) {}
  /// A contact changed its identity (reinstalled WhatsApp): <notification type="encrypt"
  /// from="USER@s.whatsapp.net"><identity/>. `user`: the user part of the JID.
  virtual void OnIdentityChanged(const std::string& user) {}
};

/// Figures of a live connection, readable from any thread.
struct ConnectionStats {
  std::atomic<int64_t> last_pong_unix_ms{0};
  std::atomic<int64_t> keepalive_rtt_us{-1};
  std::atomic<int64_t> missed_pings{0};  ///< since the last answered ping
  std::atomic<int64_t> inbound_messages{0};
  std::atomic<int64_t> last_inbound_unix_ms{0};
  std::atomic<int64_t> prekey_count{-1};
};

/// What the session core holds of a live connection: the seam its tests fake (Connection in
/// production). The methods are called on the connection thread; stats() from any thread.
class ConnectionHandle {
 public:
  virtual ~ConnectionHandle() = default;
  /// Sends presence unavailable (when logged in) and closes the WebSocket cleanly; OnClosed
  /// follows with kClosedByUs. Idempotent.
  virtual void Close() = 0;
  /// Closes the socket at once, without a goodbye (lost lease, drain deadline). Idempotent.
  virtual void Abort() = 0;
  /// Sends a ping now; `done` gets its round trip or why it failed (UNAVAILABLE when not
  /// logged in, DEADLINE_EXCEEDED without an answer in time).
  virtual void Probe(std::function<void(absl::StatusOr<absl::Duration>)> done,
                     absl::Duration timeout) = 0;
  /// Removes this linked device at WhatsApp (<iq xmlns=md><remove-companion-device
  /// reason=user_initiated/>, as Baileys' and whatsmeow's logout do), once logged in; `done`
  /// gets the server's answer (UNAVAILABLE if the connection ends first, DEADLINE_EXCEEDED
  /// after `timeout` without an answer). The connection stays open: close it afterwards.
  virtual void Logout(std::function<void(absl::Status)> done, absl::Duration timeout) = 0;
  /// Sends `iq` (its id assigned here) once logged in; `done` gets the server's result, or
  /// FAILED_PRECONDITION with its <error>, UNAVAILABLE when not logged in or the connection
  /// ends first, DEADLINE_EXCEEDED after `timeout`. The base answers UNIMPLEMENTED.
  virtual void Query(Node iq, std::function<void(absl::StatusOr<Node>)> done,
                     absl::Duration timeout) {
    done(absl::UnimplementedError("this connection sends no queries"));
  }
  /// Sends `node` (a receipt, an ack) if the connection is logged in; dropped otherwise.
  virtual void Send(Node node) {}
  virtual const ConnectionStats& stats() const = 0;
};

/// A WhatsApp Web connection: WebSocket, Noise handshake, login or pairing, keepalive
/// (docs/wa-protocol.md). Runs on the executor given to Start.
class Connection final : public ConnectionHandle, public std::enable_shared_from_this<Connection> {
 public:
  /// Starts connecting at once. `tls` is used for wss:// URLs and must outlive the connection.
  static std::shared_ptr<Connection> Start(boost::asio::any_io_executor executor,
                                           boost::asio::ssl::context& tls,
                                           ConnectionOptions options, DeviceCredentials creds,
                                           std::shared_ptr<ConnectionObserver> observer,
                                           std::shared_ptr<spdlog::logger> logger);
  ~Connection() override;

  void Close() override;
  void Abort() override;
  void Probe(std::function<void(absl::StatusOr<absl::Duration>)> done,
             absl::Duration timeout) override;
  void Logout(std::function<void(absl::Status)> done, absl::Duration timeout) override;
  void Query(Node iq, std::function<void(absl::StatusOr<Node>)> done,
             absl::Duration timeout) override;
  void Send(Node node) override;
  const ConnectionStats& stats() const override;

  class Impl;

 private:
  Connection() = default;
  std::shared_ptr<Impl> impl_;
};

}  // namespace wasentinel::wa
