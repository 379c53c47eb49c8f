// The Noise_XX_25519_AESGCM_SHA256 handshake and transport ciphers of the WhatsApp Web
// connection, and the length-prefixed frame codec they travel in.
//
// Source: whatsmeow socket/ (framing, connection header, Noise XX handshake).
// Both roles are here: the client (session-service) and the server (tests/wa-sim).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <optional>

#include "absl/status/statusor.h"
#include "crypto.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::wa {

/// The 4-byte connection header and Noise prologue: "WA", magic 6, dictionary version 3.
inline constexpr std::array<uint8_t, 4> kConnectionHeader = {'W', 'A', 6, 3};
/// Frames carry at most 2^24 - 1 bytes (3-byte big-endian length).
inline constexpr size_t kMaxFrameSize = (1u << 24) - 1;

/// One direction of the transport phase: AES-256-GCM, empty AAD, IV = 8 zero bytes ‖ counter
/// (uint32 BE), the counter starting at 0 and growing by one per frame.
class NoiseCipher {
 public:
  NoiseCipher() = default;
  explicit NoiseCipher(ByteView key);
  Bytes Encrypt(ByteView plaintext);
  /// DATA_LOSS when the tag does not verify. The counter advances either way, as whatsmeow does,
  /// so one bad frame does not desynchronise the rest.
  absl::StatusOr<Bytes> Decrypt(ByteView ciphertext);
  uint32_t counter() const { return counter_; }

 private:
  std::array<uint8_t, 32> key_{};
  uint32_t counter_ = 0;
};

/// The symmetric state of the handshake (h, ck, k, n). Shared by both roles.
class NoiseHandshake {
 public:
  /// Starts with protocol name "Noise_XX_25519_AESGCM_SHA256\0\0\0\0" as h and ck, then mixes
  /// in the prologue (`header`).
  explicit NoiseHandshake(ByteView header = kConnectionHeader);

  void MixHash(ByteView data);
  /// HKDF(salt = ck, ikm) → ck ‖ k; resets the nonce.
  void MixKey(ByteView ikm);
  /// MixKey(X25519(priv, pub)); INVALID_ARGUMENT for a malformed public key.
  absl::Status MixSharedSecret(const std::array<uint8_t, 32>& priv, ByteView pub);
  Bytes EncryptAndHash(ByteView plaintext);
  /// DATA_LOSS when the tag does not verify.
  absl::StatusOr<Bytes> DecryptAndHash(ByteView ciphertext);

  struct Ciphers {
    NoiseCipher write;
    NoiseCipher read;
  };
  /// Splits into transport ciphers. The initiator writes with the first half and reads with the
  /// second; the responder the other way round.
  Ciphers Split(bool initiator) const;

 private:
  std::array<uint8_t, 32> h_{};
  std::array<uint8_t, 32> ck_{};
  std::array<uint8_t, 32> k_{};
  uint32_t n_ = 0;
};

/// Splits a byte stream into frames (3-byte big-endian length + payload). Bytes may arrive in
/// any chunking: several frames in one WebSocket message, or one frame over several.
class FrameReader {
 public:
  explicit FrameReader(size_t max_frame = kMaxFrameSize) : max_frame_(max_frame) {}
  /// Appends received bytes.
  void Feed(ByteView data);
  /// The next complete frame's payload, or nullopt while it is incomplete. RESOURCE_EXHAUSTED
  /// when a frame announces more than the maximum (the stream cannot be resynchronised).
  absl::StatusOr<std::optional<Bytes>> Next();
  size_t buffered() const { return buffer_.size() - pos_; }

 private:
  size_t max_frame_;
  Bytes buffer_;
  size_t pos_ = 0;
};

/// Appends a frame (length prefix + payload) to `out`. INVALID_ARGUMENT above kMaxFrameSize.
absl::Status AppendFrame(Bytes& out, ByteView payload);

}  // namespace wasentinel::wa
