// wa-sim: a protocol-faithful WhatsApp Web server for tests, demos and load.
//
// It speaks the real connection layer (transport, Noise, login, pairing, keepalive, stream
// errors, acks, as whatsmeow and Baileys implement them) on ws:// over loopback: Noise responder
// with its own certificate chain (intermediate signed by a test root key, leaf naming the server's
// static key), login of registered devices, the answers Baileys and whatsmeow wait for after
// <success>, keepalive answers, and acks. A control API (HTTP/JSON) injects faults: drop (close or
// RST), blackhole, stream errors, conflict/replaced, inbound messages.
//
// Like the real service, a second login of the same device replaces the first connection with
// <stream:error><conflict type="replaced"/></stream:error>.
//
// Threading: everything runs on the io_context it is given, which must be run by one thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "crypto.h"

namespace spdlog {
class logger;
}

namespace wasentinel::sim {

struct SimOptions {
  std::string host = "127.0.0.1";
  uint16_t ws_port = 7080;       ///< 0: any free port
  uint16_t control_port = 7081;  ///< 0: any free port
  /// The root key's private half; empty: a fresh random key each start.
  Bytes root_private_key;
  /// Answered to `<iq xmlns="encrypt" type="get"><count/></iq>` instead of the device's real
  /// count of unused one-time pre-keys (-1, the default). A load run sets it above 5 so that
  /// clients do not upload pre-keys at every login.
  int prekey_count = -1;
  /// The simulated phones answer a message from another account with a delivery receipt to
  /// its author's device, as phones do (off by default: the interop tests follow a linked
  /// device's own receipts).
  bool phone_receipts = false;
  /// Pause between the client's ClientFinish and the first node sent. Baileys 6.7.x switches to
  /// its transport keys in an un-awaited async step (whatsmeow, item 5), so a <success>
  /// sent at once can reach it still holding the handshake key.
  std::chrono::milliseconds post_handshake_delay{50};
  /// With both set, a wss:// listener on `tls_port` also takes clients, terminating TLS (PEM
  /// files) on each connection's own socket, so clients' TLS path is exercised as against the
  /// real service. A TLS handshake that fails counts in `handshake_failures` with the Noise
  /// ones.
  std::string tls_cert_file;
  std::string tls_key_file;
  uint16_t tls_port = 7443;  ///< 0: any free port
  /// Refs sent to a registering (pairing) client, each shown as one QR code (WhatsApp: 6).
  int pairing_refs = 6;
  /// Logins announcing an older WhatsApp Web version than 2.3000.`min_version` are refused with
  /// <failure reason="405">, as the real server refuses outdated clients (0: none refused).
  uint32_t min_version = 0;
  /// The version the WhatsApp Web page (GET / on the control port) names, as
  /// "client_revision" (0: min_version, or the compiled default when that is 0 too).
  uint32_t web_version = 0;
};

class SimServer {
 public:
  static absl::StatusOr<std::unique_ptr<SimServer>> Create(boost::asio::io_context& io,
                                                           SimOptions options,
                                                           std::shared_ptr<spdlog::logger> logger);
  ~SimServer();

  uint16_t ws_port() const;
  uint16_t control_port() const;
  /// The wss:// port, or 0 without TLS.
  uint16_t tls_port() const;
  /// The test root public key that signs the certificate chain (clients trust it).
  const std::array<uint8_t, 32>& root_public_key() const;

  class State;

 private:
  SimServer() = default;
  std::shared_ptr<State> state_;
};

}  // namespace wasentinel::sim
