// Sealing credentials at rest with libsodium's crypto_secretbox (XSalsa20-Poly1305), under
// named keys so they can be rotated: every sealed value records the id of the key that sealed
// it; new values are sealed with the current (first) key.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel {

class Sealer {
 public:
  struct Key {
    std::string id;
    std::array<uint8_t, 32> key{};
  };

  /// Parses a key list "ID:KEY[,ID:KEY...]" or a single "KEY" (id "k1"); KEY is 64 hex digits
  /// or the base64 of 32 bytes. The first key is the current one. INVALID_ARGUMENT, without
  /// echoing any key material, for anything else.
  static absl::StatusOr<Sealer> FromConfig(std::string_view config);
  /// INVALID_ARGUMENT for an empty list or duplicate ids.
  static absl::StatusOr<Sealer> Create(std::vector<Key> keys);

  struct Sealed {
    std::string key_id;
    Bytes blob;  ///< 24-byte nonce ‖ ciphertext ‖ 16-byte MAC
  };
  Sealed Seal(ByteView plaintext) const;

  /// FAILED_PRECONDITION when `key_id` is not configured; DATA_LOSS when the blob does not open
  /// under that key (wrong key material or tampering).
  absl::StatusOr<Bytes> Open(std::string_view key_id, ByteView blob) const;

  const std::string& current_key_id() const { return keys_.front().id; }

 private:
  explicit Sealer(std::vector<Key> keys) : keys_(std::move(keys)) {}
  std::vector<Key> keys_;
};

}  // namespace wasentinel
