// Cryptographic building blocks of the WhatsApp Web connection, on libsodium (X25519, Ed25519
// group arithmetic) and OpenSSL (SHA-256, HKDF, HMAC, PBKDF2, AES-256-GCM and -CTR).
//
// Source: whatsmeow socket/ and util/keys (Noise primitives) and pair.go (libsignal's
// Curve25519 signatures, XEdDSA-style, with the Edwards sign bit carried in bit 7 of sig[63]).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::wa {

/// A 32-byte X25519 key pair. `priv` is the raw scalar (clamped when generated here).
struct KeyPair {
  std::array<uint8_t, 32> priv{};
  std::array<uint8_t, 32> pub{};

  /// A fresh random key pair.
  static KeyPair Generate();
  /// The pair for a stored private key (the public half is recomputed). INVALID_ARGUMENT if
  /// `priv` is not 32 bytes.
  static absl::StatusOr<KeyPair> FromPrivate(ByteView priv);
};

/// X25519(priv, pub). INVALID_ARGUMENT for a 32-byte `pub` of small order (all-zero result).
absl::StatusOr<std::array<uint8_t, 32>> SharedSecret(const std::array<uint8_t, 32>& priv,
                                                     ByteView pub);

/// SHA-256 of the concatenation of `parts`.
std::array<uint8_t, 32> Sha256(std::initializer_list<ByteView> parts);

/// HMAC-SHA256(key, message).
std::array<uint8_t, 32> HmacSha256(ByteView key, ByteView message);

/// HKDF-SHA256 (RFC 5869): `length` bytes from `ikm` with `salt` and `info`.
Bytes Hkdf(ByteView ikm, ByteView salt, ByteView info, size_t length);

/// PBKDF2-HMAC-SHA256 (RFC 8018): `length` bytes from `password` and `salt`.
Bytes Pbkdf2Sha256(std::string_view password, ByteView salt, int iterations, size_t length);

/// AES-256-CTR with a 16-byte IV (the initial counter block): encrypts and decrypts alike.
Bytes AesCtr(ByteView key, ByteView iv, ByteView data);

/// AES-256-GCM with a 12-byte IV and a 16-byte tag appended to the ciphertext.
Bytes AesGcmEncrypt(ByteView key, ByteView iv, ByteView aad, ByteView plaintext);
/// Opens AesGcmEncrypt's output. DATA_LOSS when the tag does not verify.
absl::StatusOr<Bytes> AesGcmDecrypt(ByteView key, ByteView iv, ByteView aad, ByteView sealed);

/// A libsignal Curve25519 signature (64 bytes) of `message` by the X25519 private key `priv`,
/// compatible with curve25519-js `sign` and libsignal's `calculateSignature`.
std::array<uint8_t, 64> CurveSign(const std::array<uint8_t, 32>& priv, ByteView message);

/// Verifies a libsignal Curve25519 signature under the X25519 public key `pub` (32 bytes, or 33
/// with a leading 0x05). False for any malformed input.
bool CurveVerify(ByteView pub, ByteView message, ByteView signature);

/// The libsignal form of a public key: 0x05 ‖ the 32-byte X25519 key (33 bytes).
Bytes SignalPublicKey(ByteView pub);

/// Fills `out` with random bytes.
void RandomBytes(std::span<uint8_t> out);

}  // namespace wasentinel::wa
