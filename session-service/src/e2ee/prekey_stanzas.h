// The stanzas that carry Signal keys between a linked device and WhatsApp's server: the pre-key
// upload (`<iq xmlns="encrypt" type="set">`), the bundle request for other devices
// (`<iq xmlns="encrypt" type="get"><key><user jid/>…`) and its answer. Both directions, so
// wa-sim's server side uses the same code as the client.
//
// Shapes (whatsmeow prekeys.go, Baileys Utils/signal.ts): a registration id is 4 bytes big
// endian, a key id 3 bytes big endian, keys 32 bytes, a signature 64; `<type>` is the key type
// byte 0x05. A user in the answer may carry `<error code text>` instead of keys, and its keys
// may sit directly in `<user>` or inside a `<keys>` child.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "binary_node.h"
#include "signal.h"

namespace wasentinel::signal {

/// WhatsApp's counts: the first upload and top-ups (whatsmeow: 812, then 50), and the server
/// count under which a device uploads more.
inline constexpr uint32_t kInitialPreKeyUpload = 812;
inline constexpr uint32_t kPreKeyTopUp = 50;
inline constexpr uint32_t kMinServerPreKeys = 5;

/// What a device uploads: its identity, signed pre-key and a batch of one-time pre-keys (the
/// private halves are not read).
struct PreKeyUpload {
  uint32_t registration_id = 0;
  Bytes identity_pub;
  SignedPreKey signed_pre_key;
  std::vector<PreKey> pre_keys;
};

/// The upload iq (no id: the connection assigns one).
wa::Node PreKeyUploadIq(const PreKeyUpload& upload);
/// Reads an upload iq (wa-sim). INVALID_ARGUMENT naming the part that is missing or of the
/// wrong size, or for more than 2000 pre-keys.
absl::StatusOr<PreKeyUpload> ParsePreKeyUploadIq(const wa::Node& iq);

/// The bundle request for `jids` ("user:device@s.whatsapp.net"); the caller sends at most 500
/// per request (the server's and ParseBundleRequestIq's limit).
wa::Node BundleRequestIq(const std::vector<std::string>& jids);
/// The JIDs a bundle request asks for (wa-sim). INVALID_ARGUMENT for a malformed request.
absl::StatusOr<std::vector<std::string>> ParseBundleRequestIq(const wa::Node& iq);

/// One device's answer: its bundle, or the server's error for it.
struct DeviceBundle {
  std::string jid;
  absl::StatusOr<PreKeyBundle> bundle = absl::UnknownError("unset");
};
/// The answer iq (wa-sim): a `<user>` per device, an `<error>` for those that failed.
wa::Node BundleResultIq(const std::string& id, const std::vector<DeviceBundle>& devices);
/// Reads the answer: one entry per `<user>` (a malformed user is an error entry, not a failure
/// of the whole). INVALID_ARGUMENT when there is no `<list>`.
absl::StatusOr<std::vector<DeviceBundle>> ParseBundleResultIq(const wa::Node& iq);

/// The `<keys>` a device adds to its retry receipts from the second on (whatsmeow retry.go
/// sendRetryReceipt): key type, identity, a fresh one-time pre-key, the signed pre-key and the
/// account's signed device identity, so the sender can start a new session at once.
wa::Node RetryReceiptKeys(ByteView identity_pub, const PreKey& one_time,
                          const SignedPreKey& signed_key, ByteView device_identity);

/// The bundle a retry receipt carries from its second retry on (whatsmeow retry.go
/// sendRetryReceipt): `<registration>` and `<keys>` (identity, one-time `key`, `skey`) of the
/// device that asks, `device`. INVALID_ARGUMENT naming what is missing.
absl::StatusOr<PreKeyBundle> ParseRetryReceiptKeys(const wa::Node& receipt, int32_t device);

}  // namespace wasentinel::signal
