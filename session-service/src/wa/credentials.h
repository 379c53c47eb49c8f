// The credentials of a linked device that logging in needs, read from what Baileys'
// `useMultiFileAuthState` writes (creds.json).
//
// Source: shared/docs/wa-protocol.md §9. Binary values are BufferJSON objects
// {"type":"Buffer","data":"<base64>"} (or `data` as an array of byte values); to log in we need
// noiseKey (both halves) and me.id ("PHONE:DEVICE@s.whatsapp.net").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "crypto.h"

namespace wasentinel::wa {

struct DeviceCredentials {
  KeyPair noise_key;
  uint64_t phone = 0;     ///< E.164 digits of the account, from me.id
  uint32_t device = 0;    ///< the linked device's number, from me.id
  std::string lid;        ///< me.lid, if present
  std::string push_name;  ///< me.name, if present

  /// "PHONE:DEVICE@s.whatsapp.net".
  std::string Jid() const;

  /// Parses a Baileys creds.json. INVALID_ARGUMENT naming the missing or malformed field when it
  /// is not JSON, lacks noiseKey.private/public (32 bytes each, the public half matching the
  /// private), or lacks a paired me.id (a device that never completed pairing).
  static absl::StatusOr<DeviceCredentials> FromBaileysJson(std::string_view json);
};

/// Masks a phone number for logs and e-mails: all but the first 3 and last 2 digits become '*'
/// ("15551234567" → "155******67"); short numbers are masked whole.
std::string MaskPhone(std::string_view phone);

}  // namespace wasentinel::wa
