// The three-message WhatsApp Web handshake for both roles, and the server certificate chain.
//
// Source: whatsmeow handshake.go. Message 1 (ClientHello) carries the client ephemeral
// key; message 2 (ServerHello) the server ephemeral, its encrypted static key and the encrypted
// certificate chain; message 3 (ClientFinish) the client's encrypted noise key and encrypted
// ClientPayload. Each message here is the serialized HandshakeMessage protobuf, without the
// frame length prefix.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "crypto.h"
#include "noise.h"
#include "wa_wire.pb.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::wa {

/// WhatsApp's production root certificate key (whatsmeow `WACertPubKey`, Baileys
/// `WA_CERT_DETAILS.PUBLIC_KEY`): the default trust anchor of the client.
inline constexpr std::array<uint8_t, 32> kWhatsAppRootKey = {
    0x14, 0x23, 0x75, 0x57, 0x4d, 0x0a, 0x58, 0x71, 0x66, 0xaa, 0xe7, 0x1e, 0xbe, 0x51, 0x64, 0x37,
    0xc4, 0xa2, 0x8b, 0x73, 0xe3, 0x69, 0x5c, 0x6c, 0xe1, 0xf7, 0xf9, 0x54, 0x5d, 0xa8, 0xee, 0x6b};

/// The serial every intermediate names as its issuer (whatsmeow `WACertIssuerSerial`).
inline constexpr uint32_t kRootIssuerSerial = 0;

/// Builds a serialized CertChain: an intermediate {serial 1, issuer 0, key = intermediate.pub}
/// signed by `root`, and a leaf {serial 2, issuer 1, key = `server_static_pub`} signed by the
/// intermediate, both valid over [not_before, not_after] (Unix seconds). issuer_serial is
/// written explicitly, as Baileys ≥ 6.7.17 requires.
Bytes MakeCertChain(const KeyPair& root, const KeyPair& intermediate, ByteView server_static_pub,
                    uint64_t not_before, uint64_t not_after);

/// Verifies a serialized CertChain as whatsmeow does: both certificates present with 64-byte
/// signatures; the intermediate signed by `root_pub`, issued by serial 0, 32-byte key, valid at
/// `now_unix`; the leaf signed by the intermediate, issued by its serial, valid at `now_unix`,
/// and its key equal to `server_static` (constant-time). UNAUTHENTICATED with the failed check.
absl::Status VerifyCertChain(ByteView chain, ByteView root_pub, ByteView server_static,
                             int64_t now_unix);

/// The initiator (client) side.
class ClientHandshake {
 public:
  /// `noise_key` is the device's persistent static key (creds.noiseKey).
  explicit ClientHandshake(const KeyPair& noise_key);

  /// Message 1: HandshakeMessage{client_hello{ephemeral}}.
  Bytes Hello();

  /// Processes message 2 and builds message 3 carrying `payload`. The certificate chain is
  /// checked against `root_pub` at `now_unix`. INVALID_ARGUMENT for a malformed message,
  /// DATA_LOSS for a bad tag, UNAUTHENTICATED for a chain that does not verify.
  absl::StatusOr<Bytes> Finish(ByteView server_hello, const wire::ClientPayload& payload,
                               ByteView root_pub, int64_t now_unix);

  /// The transport ciphers; call after Finish succeeded.
  NoiseHandshake::Ciphers Split() const { return state_.Split(/*initiator=*/true); }

 private:
  NoiseHandshake state_;
  KeyPair noise_key_;
  KeyPair ephemeral_;
};

/// The responder (server) side, used by wa-sim.
class ServerHandshake {
 public:
  /// `static_key` is the server's Noise static key, `cert_chain` a serialized CertChain whose
  /// leaf names it. `header` is the client's 4-byte connection header (the prologue).
  ServerHandshake(const KeyPair& static_key, Bytes cert_chain, ByteView header = kConnectionHeader);

  /// Processes message 1 and builds message 2.
  absl::StatusOr<Bytes> Respond(ByteView client_hello);

  struct ClientIdentity {
    std::array<uint8_t, 32> static_pub{};  ///< the client's noise key
    wire::ClientPayload payload;
  };
  /// Processes message 3. INVALID_ARGUMENT / DATA_LOSS as the client side.
  absl::StatusOr<ClientIdentity> Complete(ByteView client_finish);

  NoiseHandshake::Ciphers Split() const { return state_.Split(/*initiator=*/false); }

 private:
  NoiseHandshake state_;
  KeyPair static_key_;
  KeyPair ephemeral_;
  Bytes cert_chain_;
  std::array<uint8_t, 32> client_ephemeral_{};
};

}  // namespace wasentinel::wa
