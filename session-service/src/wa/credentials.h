// The credentials of a linked device, in the shape Baileys' `useMultiFileAuthState` writes
// (creds.json), so a session can be imported from Baileys and exported back to it.
//
// Source: Baileys useMultiFileAuthState (creds.json). Binary values are BufferJSON objects
// {"type":"Buffer","data":"<base64>"} (or `data` as an array of byte values); `account` holds
// plain base64 strings; advSecretKey is a base64 string. Logging in needs noiseKey (both halves)
// and me.id ("PHONE:DEVICE@s.whatsapp.net"); pairing a new device (§8) needs the identity key,
// the signed prekey, the registration id and the adv secret as well.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "crypto.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::wa {

/// The signed device identity that pairing produced (creds.account; see pairing.h, step 5):
/// serialized ADVDeviceIdentity details, the phone's account key and signature, our signature.
struct AccountIdentity {
  Bytes details;
  Bytes account_signature_key;
  Bytes account_signature;
  Bytes device_signature;
};

struct DeviceCredentials {
  KeyPair noise_key;
  /// Signal identity key (creds.signedIdentityKey).
  KeyPair identity_key;
  /// Signed prekey (creds.signedPreKey): key pair, id, and the identity key's signature over
  /// 0x05 ‖ public key.
  KeyPair signed_pre_key;
  uint32_t signed_pre_key_id = 1;
  std::array<uint8_t, 64> signed_pre_key_signature{};
  uint32_t registration_id = 0;
  /// Shared with the phone through the QR code; keys the HMAC of the device identity.
  std::array<uint8_t, 32> adv_secret{};

  // Known once paired:
  uint64_t phone = 0;     ///< E.164 digits of the account, from me.id; 0 = not paired
  uint32_t device = 0;    ///< the linked device's number, from me.id
  std::string lid;        ///< me.lid, if present
  std::string push_name;  ///< me.name, if present
  std::string platform;   ///< the phone's platform ("android", "smbi", ...)
  std::optional<AccountIdentity> account;

  bool paired() const { return phone != 0; }

  /// "PHONE:DEVICE@s.whatsapp.net".
  std::string Jid() const;

  /// Fresh credentials of a device that is not paired yet (Baileys `initAuthCreds`): random
  /// noise, identity and signed prekey keys, a 14-bit registration id, a random adv secret.
  static DeviceCredentials Generate();

  /// Parses a Baileys creds.json. INVALID_ARGUMENT naming the missing or malformed field when it
  /// is not JSON, lacks noiseKey.private/public (32 bytes each, the public half matching the
  /// private), or lacks a paired me.id (a device that never completed pairing). The other
  /// fields are read when present.
  static absl::StatusOr<DeviceCredentials> FromBaileysJson(std::string_view json);

  /// Writes the credentials as a Baileys creds.json that `useMultiFileAuthState` can load.
  std::string ToBaileysJson() const;
};

/// wasentinel::MaskPhone (common/logging.h), for the protocol code's logs.
using ::wasentinel::MaskPhone;

}  // namespace wasentinel::wa
