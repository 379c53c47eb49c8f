// The ClientPayload a device sends at the end of the handshake, and QR pairing of a new linked
// device, both sides: the companion (us) and the phone (played by wa-sim).
//
// Source: shared/docs/wa-protocol.md §3 (login and registration payloads) and §8 (pairing):
//   1. the server sends <iq type=set xmlns=md><pair-device><ref/>×k</pair-device></iq>;
//   2. the companion shows each ref as a QR code "ref,noise,identity,adv" (base64, padded);
//   3. the phone scans it and the server sends <iq><pair-success> with the device identity
//      (ADVSignedDeviceIdentityHMAC), the device JID, the phone's platform;
//   4. the companion checks the HMAC (adv secret) and the account signature, signs the identity
//      with its identity key and answers <pair-device-sign>;
//   5. the server sends stream error 515 and the companion logs in with its new JID.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "binary_node.h"
#include "credentials.h"
#include "wa_wire.pb.h"

namespace wasentinel::wa {

/// What the companion says about itself (UserAgent, DeviceProps).
struct ClientInfo {
  uint32_t app_version_tertiary = 1023223821;  ///< WhatsApp Web 2.3000.N
  std::string os = "WA Sentinel";              ///< shown on the phone's linked-devices list
};

/// §3 login payload of a paired device (whatsmeow's choices: passive, pull, lc=1).
wire::ClientPayload LoginPayload(const DeviceCredentials& creds, const ClientInfo& info);

/// §3 registration payload of an unpaired device: passive=false, pull=false, and
/// devicePairingData (registration id, identity key, signed prekey, build hash, DeviceProps).
wire::ClientPayload RegistrationPayload(const DeviceCredentials& creds, const ClientInfo& info);

/// The refs of a <pair-device> iq, in order. INVALID_ARGUMENT if it carries none.
absl::StatusOr<std::vector<std::string>> PairDeviceRefs(const Node& iq);

/// §8 step 2: the QR text for `ref` — "ref,b64(noise pub),b64(identity pub),b64(adv secret)",
/// the bare form WhatsApp Web companions show. QR texts are credentials: never log them.
std::string QrCodeText(std::string_view ref, const DeviceCredentials& creds);

/// A scanned QR code, as the phone reads it.
struct ScannedQr {
  std::string ref;
  std::array<uint8_t, 32> noise_pub{};
  std::array<uint8_t, 32> identity_pub{};
  std::array<uint8_t, 32> adv_secret{};
};
/// Parses the bare form or the "https://wa.me/settings/linked_devices#…,<client type>" form.
/// INVALID_ARGUMENT when a field is missing or not 32 bytes of base64.
absl::StatusOr<ScannedQr> ParseQrCode(std::string_view text);

/// The outcome of a <pair-success> the companion accepted.
struct PairedDevice {
  std::string jid;            ///< "PHONE:DEVICE@s.whatsapp.net"
  std::string lid;            ///< "LID:DEVICE@lid", when given
  std::string platform;       ///< the phone's platform
  std::string business_name;  ///< <biz name>, when given
  uint32_t key_index = 0;
};

/// §8 steps 6–8 on the companion: checks the HMAC under creds.adv_secret and the account
/// signature, signs the device identity, and answers the <pair-device-sign> reply with the
/// credentials completed (me.id, lid, account, platform). UNAUTHENTICATED ("hmac-mismatch",
/// "signature-mismatch") when the identity does not verify; INVALID_ARGUMENT for a malformed
/// stanza. On failure, `PairErrorReply` is the answer to send.
struct PairingAnswer {
  PairedDevice device;
  DeviceCredentials creds;  ///< paired
  Node reply;               ///< <iq type=result><pair-device-sign>…
};
absl::StatusOr<PairingAnswer> AnswerPairSuccess(const Node& iq, const DeviceCredentials& creds);

/// <iq type=error id=…><error code=401|500 text=…/></iq>, as whatsmeow answers a bad identity.
Node PairErrorReply(const Node& iq, const absl::Status& why);

// ---- the phone's side (wa-sim) ----

/// What the phone signs for a new companion (§8 step 5): an ADVSignedDeviceIdentityHMAC whose
/// account signature is by `account_key` over 06 00 ‖ details ‖ companion identity, and whose
/// HMAC is keyed by the adv secret read from the QR code.
struct PhoneIdentityOptions {
  uint32_t key_index = 1;
  uint64_t timestamp = 0;  ///< Unix seconds
  uint32_t raw_id = 0;
  bool corrupt_hmac = false;       ///< for tests of the companion's checks
  bool corrupt_signature = false;  ///< idem
};
Bytes PhoneSignDeviceIdentity(const KeyPair& account_key, const ScannedQr& qr,
                              const PhoneIdentityOptions& options);

/// Checks the companion's <pair-device-sign> answer: its device signature over
/// 06 01 ‖ details ‖ companion identity ‖ account key. UNAUTHENTICATED when it does not verify;
/// INVALID_ARGUMENT when the answer is malformed.
absl::Status VerifyPairDeviceSign(const Node& reply_iq, ByteView companion_identity_pub,
                                  ByteView account_pub);

}  // namespace wasentinel::wa
