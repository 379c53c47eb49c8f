// Baileys' `pre-key-<id>.json` files (useMultiFileAuthState writes them beside creds.json):
// the one-time pre-keys a device uploaded, which an imported session must keep.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "crypto.h"

namespace wasentinel::wa {

/// One of the `pre-key-<id>.json` files Baileys' `useMultiFileAuthState` writes beside
/// creds.json: a one-time pre-key the device uploaded, which senders may still use until it is
/// consumed, so an imported session must keep it. `{"private": Buffer, "public": Buffer}`.
struct BaileysPreKey {
  uint32_t id = 0;  ///< from the file name, 1..16777214
  KeyPair key;
};

/// Parses such a file. INVALID_ARGUMENT naming what is wrong: a name not `pre-key-<id>.json`,
/// an id out of range, a key pair that is not one (halves of 32 bytes, the public matching the
/// private).
absl::StatusOr<BaileysPreKey> ParseBaileysPreKeyFile(std::string_view file_name,
                                                     std::string_view json);

}  // namespace wasentinel::wa
