// The ClientPayload a device sends at the end of the handshake, and QR pairing of a new linked
// device, both sides: the companion (us) and the phone (played by wa-sim).
//
// Source: whatsmeow store/clientpayload.go (login and registration payloads) and pair.go:
//   1. the server sends <iq type=set xmlns=md><pair-device><ref/>×k</pair-device></iq>;
//   2. the companion shows each ref as a QR code "ref,noise,identity,adv" (base64, padded);
//   3. the phone scans it and the server sends <iq><pair-success> with the device identity
//      (ADVSignedDeviceIdentityHMAC), the device JID, the phone's platform;
//   4. the companion checks the HMAC (adv secret) and the account signature, signs the identity
//      with its identity key and answers <pair-device-sign>;
//   5. the server sends stream error 515 and the companion logs in with its new JID.
//
// The second way in, the phone-number pairing code (§8 "Phone-number pairing code"): instead of
// showing QR codes, the companion asks the server for a code for the phone number
// (companion_hello), the person types the 8-character code on the phone, the phone answers with
// its ephemeral key wrapped under that code (primary_hello notification), the companion sends
// its key bundle (companion_finish) and both derive a fresh adv secret; the pair-success of
// steps 3–5 follows, its HMAC keyed by that secret.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "binary_node.h"
#include "credentials.h"
#include "version.h"
#include "wa_wire.pb.h"

namespace wasentinel::wa {

/// What the companion says about itself (UserAgent, DeviceProps).
struct ClientInfo {
  WaVersion version = kDefaultWaVersion;  ///< the WhatsApp Web version announced
  std::string os = "WA Sentinel";         ///< shown on the phone's linked-devices list
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

// ---- the phone-number pairing code ----

/// The code alphabet (base32 without 0, I, O, U): 8 characters carry 5 random bytes.
inline constexpr std::string_view kLinkCodeAlphabet = "123456789ABCDEFGHJKLMNPQRSTVWXYZ";
/// PBKDF2 iterations that turn the code into the key wrapping an ephemeral key (2 << 16).
inline constexpr int kLinkCodeIterations = 2 << 16;

/// A fresh 8-character code from 5 random bytes.
std::string NewLinkCode();
/// "ABCD-EFGH", the form shown to people (the phone accepts it with or without the dash).
std::string FormatLinkCode(std::string_view code);
/// salt(32) ‖ iv(16) ‖ AES-256-CTR(PBKDF2-SHA256(code, salt, 131072, 32), key): 80 bytes.
Bytes WrapWithLinkCode(std::string_view code, const std::array<uint8_t, 32>& key);
/// Opens WrapWithLinkCode's output. INVALID_ARGUMENT unless it is 80 bytes. A wrong code
/// gives a wrong key, which only the later key bundle exposes.
absl::StatusOr<std::array<uint8_t, 32>> UnwrapWithLinkCode(std::string_view code, ByteView wrapped);

/// The companion's request for a code (stage companion_hello).
struct LinkCodeRequest {
  std::string code;   ///< the 8 characters, to show once the server accepted the request
  KeyPair ephemeral;  ///< keep for the phone's answer
  Node iq;            ///< <iq xmlns=md type=set><link_code_companion_reg stage=companion_hello>
};
/// `phone`: the account's E.164 digits. `platform_display`: "Browser (OS)", which the real
/// server validates (whatsmeow: it answers 400 to an unknown one).
LinkCodeRequest CompanionHello(std::string_view phone, const DeviceCredentials& creds,
                               std::string_view platform_display);
/// The ref in the server's answer to companion_hello. INVALID_ARGUMENT when it has none.
absl::StatusOr<std::string> LinkCodeRef(const Node& result_iq);

/// The companion's answer to the phone's primary_hello: the companion_finish iq, and the new
/// adv secret that replaces the random one (the pair-success HMAC is keyed by it).
struct CompanionFinish {
  std::array<uint8_t, 32> adv_secret{};
  Node iq;
};
/// `notification`: <notification type=link_code_companion_reg><link_code_companion_reg> with
/// link_code_pairing_ref, primary_identity_pub, link_code_pairing_wrapped_primary_ephemeral_pub.
/// INVALID_ARGUMENT for a malformed notification or one for another ref.
absl::StatusOr<CompanionFinish> AnswerPrimaryHello(const Node& notification,
                                                   const LinkCodeRequest& request,
                                                   std::string_view ref, std::string_view phone,
                                                   const DeviceCredentials& creds);

// ---- the phone's side (wa-sim) ----

/// The phone's side of a code: after the person typed `code`, it unwraps the companion's
/// ephemeral key, makes its own and sends primary_hello; companion_finish then yields the
/// companion's identity and the adv secret both sides derived.
struct PhoneLinkCode {
  KeyPair ephemeral;                              ///< the phone's
  std::array<uint8_t, 32> companion_ephemeral{};  ///< as unwrapped with the typed code
  Node notification;                              ///< primary_hello, to send to the companion
};
/// INVALID_ARGUMENT when `wrapped_companion_ephemeral` is malformed.
absl::StatusOr<PhoneLinkCode> PhonePrimaryHello(std::string_view code,
                                                ByteView wrapped_companion_ephemeral,
                                                std::string_view ref,
                                                const KeyPair& primary_identity,
                                                std::string notification_id);
/// Opens the companion_finish key bundle: UNAUTHENTICATED when it does not open (the code typed
/// was not the code shown) or names other identities; INVALID_ARGUMENT when malformed. The
/// answer is what a QR scan would have read: the companion identity and the adv secret.
absl::StatusOr<ScannedQr> PhoneOpenCompanionFinish(const Node& finish_iq,
                                                   const PhoneLinkCode& hello,
                                                   const KeyPair& primary_identity);

/// The `<device-identity>` a sender adds beside pre-key messages (whatsmeow send.go
/// makeDeviceIdentityNode): the account's ADVSignedDeviceIdentity as pairing stored it, with
/// the account signature key.
Bytes SignedDeviceIdentity(const AccountIdentity& account);

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
