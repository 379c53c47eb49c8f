#include "pairing.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/md5.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::wa {
namespace {

constexpr std::string_view kQrUrlPrefix = "https://wa.me/settings/linked_devices#";

// §3: the fields both payloads share.
wire::ClientPayload BasePayload(const ClientInfo& info) {
  wire::ClientPayload p;
  p.set_connect_type(wire::ClientPayload::WIFI_UNKNOWN);
  p.set_connect_reason(wire::ClientPayload::USER_ACTIVATED);
  auto* ua = p.mutable_user_agent();
  ua->set_platform(wire::ClientPayload::UserAgent::WEB);
  ua->mutable_app_version()->set_primary(info.version.primary);
  ua->mutable_app_version()->set_secondary(info.version.secondary);
  ua->mutable_app_version()->set_tertiary(info.version.tertiary);
  ua->set_mcc("000");
  ua->set_mnc("000");
  ua->set_os_version("0.1");
  ua->set_manufacturer("");
  ua->set_device("Desktop");
  ua->set_os_build_number("0.1");
  ua->set_release_channel(wire::ClientPayload::UserAgent::RELEASE);
  ua->set_locale_language_iso_639_1("en");
  ua->set_locale_country_iso_3166_1_alpha_2("US");
  p.mutable_web_info()->set_web_sub_platform(wire::ClientPayload::WebInfo::WEB_BROWSER);
  return p;
}

Bytes BigEndian(uint32_t v, int width) {
  Bytes out(width);
  for (int i = width - 1; i >= 0; --i, v >>= 8) out[i] = static_cast<uint8_t>(v);
  return out;
}

Bytes Concat(std::initializer_list<ByteView> parts) {
  Bytes out;
  for (ByteView p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes Serialize(const google::protobuf::MessageLite& m) {
  std::string s = m.SerializeAsString();
  return Bytes(s.begin(), s.end());
}

constexpr uint8_t kAccountSigPrefix[] = {6, 0};
constexpr uint8_t kDeviceSigPrefix[] = {6, 1};
constexpr uint8_t kHostedPrefix[] = {6, 5};

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("pair-success: ", Sv(what)));
}

}  // namespace

wire::ClientPayload LoginPayload(const DeviceCredentials& creds, const ClientInfo& info) {
  wire::ClientPayload p = BasePayload(info);
  p.set_username(creds.phone);
  p.set_device(creds.device);
  p.set_passive(true);
  p.set_pull(true);
  p.set_lc(1);
  p.set_lid_db_migrated(true);
  return p;
}

wire::ClientPayload RegistrationPayload(const DeviceCredentials& creds, const ClientInfo& info) {
  wire::ClientPayload p = BasePayload(info);
  p.set_passive(false);
  p.set_pull(false);
  wire::DeviceProps props;
  props.set_os(info.os);
  props.mutable_version()->set_primary(info.version.primary);
  props.mutable_version()->set_secondary(info.version.secondary);
  props.mutable_version()->set_tertiary(info.version.tertiary);
  props.set_platform_type(wire::DeviceProps::DESKTOP);
  props.set_require_full_sync(false);
  props.mutable_history_sync_config()->set_storage_quota_mb(10240);

  const std::string version = info.version.ToString();
  uint8_t md5[MD5_DIGEST_LENGTH];
  unsigned md5_len = 0;
  EVP_Digest(version.data(), version.size(), md5, &md5_len, EVP_md5(), nullptr);

  auto* reg = p.mutable_device_pairing_data();
  auto set = [](std::string* field, ByteView b) { field->assign(b.begin(), b.end()); };
  set(reg->mutable_e_regid(), BigEndian(creds.registration_id, 4));
  set(reg->mutable_e_keytype(), Bytes{0x05});
  set(reg->mutable_e_ident(), creds.identity_key.pub);
  set(reg->mutable_e_skey_id(), BigEndian(creds.signed_pre_key_id, 3));
  set(reg->mutable_e_skey_val(), creds.signed_pre_key.pub);
  set(reg->mutable_e_skey_sig(), creds.signed_pre_key_signature);
  set(reg->mutable_build_hash(), ByteView(md5, md5_len));
  set(reg->mutable_device_props(), Serialize(props));
  return p;
}

absl::StatusOr<std::vector<std::string>> PairDeviceRefs(const Node& iq) {
  const Node* pd = iq.Child("pair-device");
  if (!pd) return absl::InvalidArgumentError("not a pair-device iq");
  std::vector<std::string> refs;
  for (const Node& c : pd->Children()) {
    if (c.tag != "ref") continue;
    ByteView b = c.ContentBytes();
    if (!b.empty()) refs.emplace_back(b.begin(), b.end());
  }
  if (refs.empty()) return absl::InvalidArgumentError("pair-device carries no refs");
  return refs;
}

std::string QrCodeText(std::string_view ref, const DeviceCredentials& creds) {
  return absl::StrCat(Sv(ref), ",", Base64Encode(creds.noise_key.pub), ",",
                      Base64Encode(creds.identity_key.pub), ",", Base64Encode(creds.adv_secret));
}

absl::StatusOr<ScannedQr> ParseQrCode(std::string_view text) {
  if (absl::StartsWith(Sv(text), Sv(kQrUrlPrefix))) text.remove_prefix(kQrUrlPrefix.size());
  std::vector<std::string> parts = absl::StrSplit(Sv(text), ',');
  if (parts.size() < 4 || parts.size() > 5 || parts[0].empty()) {
    return absl::InvalidArgumentError(
        "a QR code is \"ref,noise key,identity key,adv secret[,client type]\"");
  }
  ScannedQr qr;
  qr.ref = parts[0];
  const std::pair<std::string_view, std::array<uint8_t, 32>*> fields[] = {
      {"noise key", &qr.noise_pub},
      {"identity key", &qr.identity_pub},
      {"adv secret", &qr.adv_secret}};
  for (size_t i = 0; i < 3; ++i) {
    auto b = Base64Decode(parts[i + 1]);
    if (!b.ok() || b->size() != 32) {
      return absl::InvalidArgumentError(
          absl::StrCat("the QR code's ", Sv(fields[i].first), " is not 32 bytes of base64"));
    }
    std::copy(b->begin(), b->end(), fields[i].second->begin());
  }
  return qr;
}

absl::StatusOr<PairingAnswer> AnswerPairSuccess(const Node& iq, const DeviceCredentials& creds) {
  const Node* ps = iq.Child("pair-success");
  if (!ps) return Malformed("no <pair-success>");
  const Node* identity_node = ps->Child("device-identity");
  const Node* device_node = ps->Child("device");
  if (!identity_node || !device_node) return Malformed("no <device-identity> or <device>");

  PairingAnswer out;
  out.device.jid = device_node->AttrOr("jid");
  out.device.lid = device_node->AttrOr("lid");
  if (const Node* platform = ps->Child("platform")) out.device.platform = platform->AttrOr("name");
  if (const Node* biz = ps->Child("biz")) out.device.business_name = biz->AttrOr("name");
  auto jid = Jid::Parse(out.device.jid);
  uint64_t phone = 0;
  if (!jid.ok() || jid->server != "s.whatsapp.net" || jid->device <= 0 ||
      !absl::SimpleAtoi(jid->user, &phone) || phone == 0) {
    return Malformed(absl::StrCat("the device JID \"", out.device.jid, "\" is not PHONE:DEVICE"));
  }

  wire::ADVSignedDeviceIdentityHMAC container;
  ByteView raw = identity_node->ContentBytes();
  if (!container.ParseFromArray(raw.data(), static_cast<int>(raw.size())) ||
      !container.has_details() || !container.has_hmac()) {
    return Malformed("the device identity is not an ADVSignedDeviceIdentityHMAC");
  }
  const bool hosted = container.account_type() == wire::HOSTED;
  const ByteView details = AsBytes(container.details());
  const auto mac = HmacSha256(
      creds.adv_secret, hosted ? Concat({ByteView(kHostedPrefix), details}) : Concat({details}));
  if (container.hmac().size() != mac.size() ||
      CRYPTO_memcmp(container.hmac().data(), mac.data(), mac.size()) != 0) {
    return absl::UnauthenticatedError("hmac-mismatch");
  }

  wire::ADVSignedDeviceIdentity account;
  if (!account.ParseFromString(container.details()) || !account.has_details() ||
      account.account_signature_key().size() != 32 || account.account_signature().size() != 64) {
    return Malformed("the signed device identity is incomplete");
  }
  wire::ADVDeviceIdentity device_identity;
  if (!device_identity.ParseFromString(account.details())) {
    return Malformed("the device identity details do not parse");
  }
  const ByteView device_details = AsBytes(account.details());
  const ByteView account_key = AsBytes(account.account_signature_key());
  // whatsmeow checks this signature; Baileys 6.x means to (its check is ineffective, §8).
  if (!CurveVerify(account_key,
                   Concat({ByteView(kAccountSigPrefix), device_details, creds.identity_key.pub}),
                   AsBytes(account.account_signature()))) {
    return absl::UnauthenticatedError("signature-mismatch");
  }
  const auto device_signature = CurveSign(
      creds.identity_key.priv,
      Concat({ByteView(kDeviceSigPrefix), device_details, creds.identity_key.pub, account_key}));

  out.device.key_index = device_identity.key_index();
  out.creds = creds;
  out.creds.phone = phone;
  out.creds.device = static_cast<uint32_t>(jid->device);
  out.creds.lid = out.device.lid;
  out.creds.platform = out.device.platform;
  if (!out.device.business_name.empty()) out.creds.push_name = out.device.business_name;
  out.creds.account = AccountIdentity{Bytes(device_details.begin(), device_details.end()),
                                      Bytes(account_key.begin(), account_key.end()),
                                      ToBytes(account.account_signature()),
                                      Bytes(device_signature.begin(), device_signature.end())};

  // The answer carries the identity without the account key (§8 step 8).
  wire::ADVSignedDeviceIdentity answer;
  answer.set_details(account.details());
  answer.set_account_signature(account.account_signature());
  answer.set_device_signature(std::string(device_signature.begin(), device_signature.end()));
  out.reply = MakeNode(
      "iq", {{"to", std::string(kServerJid)}, {"type", "result"}, {"id", iq.AttrOr("id")}},
      std::vector<Node>{MakeNode(
          "pair-device-sign", {},
          std::vector<Node>{MakeNode("device-identity",
                                     {{"key-index", std::to_string(device_identity.key_index())}},
                                     Serialize(answer))})});
  return out;
}

Node PairErrorReply(const Node& iq, const absl::Status& why) {
  const bool auth = why.code() == absl::StatusCode::kUnauthenticated;
  return MakeNode("iq",
                  {{"to", std::string(kServerJid)}, {"type", "error"}, {"id", iq.AttrOr("id")}},
                  std::vector<Node>{MakeNode(
                      "error", {{"code", auth ? "401" : "500"},
                                {"text", auth ? std::string(why.message()) : "internal-error"}})});
}

std::string NewLinkCode() {
  std::array<uint8_t, 5> raw{};
  RandomBytes(raw);
  uint64_t bits = 0;
  for (uint8_t b : raw) bits = bits << 8 | b;
  std::string code(8, ' ');
  for (int i = 7; i >= 0; --i, bits >>= 5) code[i] = kLinkCodeAlphabet[bits & 31];
  return code;
}

std::string FormatLinkCode(std::string_view code) {
  if (code.size() != 8) return std::string(code);
  return absl::StrCat(Sv(code.substr(0, 4)), "-", Sv(code.substr(4)));
}

Bytes WrapWithLinkCode(std::string_view code, const std::array<uint8_t, 32>& key) {
  Bytes salt(32), iv(16);
  RandomBytes(salt);
  RandomBytes(iv);
  const Bytes wrapping = Pbkdf2Sha256(code, salt, kLinkCodeIterations, 32);
  return Concat({salt, iv, AesCtr(wrapping, iv, key)});
}

absl::StatusOr<std::array<uint8_t, 32>> UnwrapWithLinkCode(std::string_view code,
                                                           ByteView wrapped) {
  if (wrapped.size() != 80) {
    return absl::InvalidArgumentError(
        absl::StrCat("a wrapped ephemeral key is 80 bytes, not ", wrapped.size()));
  }
  const ByteView salt = wrapped.subspan(0, 32), iv = wrapped.subspan(32, 16);
  const Bytes key =
      AesCtr(Pbkdf2Sha256(code, salt, kLinkCodeIterations, 32), iv, wrapped.subspan(48, 32));
  std::array<uint8_t, 32> out{};
  std::copy(key.begin(), key.end(), out.begin());
  return out;
}

namespace {

constexpr std::string_view kLinkCodeReg = "link_code_companion_reg";
constexpr char kBundleInfo[] = "link_code_pairing_key_bundle_encryption_key";
constexpr char kAdvSecretInfo[] = "adv_secret";

ByteView Info(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// The bytes of child `tag` of `parent`, exactly `size` long unless size is 0.
absl::StatusOr<ByteView> ChildBytes(const Node& parent, std::string_view tag, size_t size = 0) {
  const Node* child = parent.Child(tag);
  if (!child) return absl::InvalidArgumentError(absl::StrCat("no <", Sv(tag), ">"));
  ByteView b = child->ContentBytes();
  if (b.empty() || (size && b.size() != size)) {
    return absl::InvalidArgumentError(absl::StrCat("<", Sv(tag), "> is ", b.size(), " bytes"));
  }
  return b;
}

std::array<uint8_t, 32> Array32(ByteView b) {
  std::array<uint8_t, 32> out{};
  std::copy(b.begin(), b.end(), out.begin());
  return out;
}

// HKDF(ephemeral ‖ identity ‖ random, no salt, "adv_secret"): both sides' adv secret.
std::array<uint8_t, 32> LinkCodeAdvSecret(ByteView ephemeral_shared, ByteView identity_shared,
                                          ByteView random) {
  return Array32(
      Hkdf(Concat({ephemeral_shared, identity_shared, random}), {}, Info(kAdvSecretInfo), 32));
}

}  // namespace

LinkCodeRequest CompanionHello(std::string_view phone, const DeviceCredentials& creds,
                               std::string_view platform_display) {
  LinkCodeRequest r;
  r.code = NewLinkCode();
  r.ephemeral = KeyPair::Generate();
  std::vector<Node> children = {
      MakeNode("link_code_pairing_wrapped_companion_ephemeral_pub", {},
               WrapWithLinkCode(r.code, r.ephemeral.pub)),
      MakeNode("companion_server_auth_key_pub", {},
               Bytes(creds.noise_key.pub.begin(), creds.noise_key.pub.end())),
      MakeNode("companion_platform_id", {}, std::string("1")),  // Chrome
      MakeNode("companion_platform_display", {}, std::string(platform_display)),
      MakeNode("link_code_pairing_nonce", {}, Bytes{0})};
  r.iq = MakeNode("iq", {{"to", std::string(kServerJid)}, {"type", "set"}, {"xmlns", "md"}},
                  std::vector<Node>{MakeNode(std::string(kLinkCodeReg),
                                             {{"jid", absl::StrCat(Sv(phone), Sv(kServerJid))},
                                              {"stage", "companion_hello"},
                                              {"should_show_push_notification", "true"}},
                                             std::move(children))});
  return r;
}

absl::StatusOr<std::string> LinkCodeRef(const Node& result_iq) {
  const Node* reg = result_iq.Child(kLinkCodeReg);
  if (!reg) return absl::InvalidArgumentError("no <link_code_companion_reg> in the answer");
  WAS_ASSIGN_OR_RETURN(ByteView ref, ChildBytes(*reg, "link_code_pairing_ref"));
  return std::string(ref.begin(), ref.end());
}

absl::StatusOr<CompanionFinish> AnswerPrimaryHello(const Node& notification,
                                                   const LinkCodeRequest& request,
                                                   std::string_view ref, std::string_view phone,
                                                   const DeviceCredentials& creds) {
  const Node* reg = notification.Child(kLinkCodeReg);
  if (!reg) return absl::InvalidArgumentError("no <link_code_companion_reg> in the notification");
  WAS_ASSIGN_OR_RETURN(ByteView their_ref, ChildBytes(*reg, "link_code_pairing_ref"));
  if (std::string_view(reinterpret_cast<const char*>(their_ref.data()), their_ref.size()) != ref) {
    return absl::InvalidArgumentError("the notification is for another pairing ref");
  }
  WAS_ASSIGN_OR_RETURN(ByteView primary_identity, ChildBytes(*reg, "primary_identity_pub", 32));
  WAS_ASSIGN_OR_RETURN(ByteView wrapped,
                       ChildBytes(*reg, "link_code_pairing_wrapped_primary_ephemeral_pub", 80));
  WAS_ASSIGN_OR_RETURN(auto primary_ephemeral, UnwrapWithLinkCode(request.code, wrapped));
  WAS_ASSIGN_OR_RETURN(auto ephemeral_shared,
                       SharedSecret(request.ephemeral.priv, primary_ephemeral));
  WAS_ASSIGN_OR_RETURN(auto identity_shared,
                       SharedSecret(creds.identity_key.priv, primary_identity));
  Bytes random(32), salt(32), iv(12);
  RandomBytes(random);
  RandomBytes(salt);
  RandomBytes(iv);
  const Bytes bundle_key = Hkdf(ephemeral_shared, salt, Info(kBundleInfo), 32);
  const Bytes bundle =
      AesGcmEncrypt(bundle_key, iv, {}, Concat({creds.identity_key.pub, primary_identity, random}));
  CompanionFinish out;
  out.adv_secret = LinkCodeAdvSecret(ephemeral_shared, identity_shared, random);
  out.iq = MakeNode(
      "iq", {{"to", std::string(kServerJid)}, {"type", "set"}, {"xmlns", "md"}},
      std::vector<Node>{MakeNode(
          std::string(kLinkCodeReg),
          {{"jid", absl::StrCat(Sv(phone), Sv(kServerJid))}, {"stage", "companion_finish"}},
          std::vector<Node>{
              MakeNode("link_code_pairing_wrapped_key_bundle", {}, Concat({salt, iv, bundle})),
              MakeNode("companion_identity_public", {},
                       Bytes(creds.identity_key.pub.begin(), creds.identity_key.pub.end())),
              MakeNode("link_code_pairing_ref", {}, Bytes(their_ref.begin(), their_ref.end()))})});
  return out;
}

absl::StatusOr<PhoneLinkCode> PhonePrimaryHello(std::string_view code,
                                                ByteView wrapped_companion_ephemeral,
                                                std::string_view ref,
                                                const KeyPair& primary_identity,
                                                std::string notification_id) {
  PhoneLinkCode out;
  WAS_ASSIGN_OR_RETURN(out.companion_ephemeral,
                       UnwrapWithLinkCode(code, wrapped_companion_ephemeral));
  out.ephemeral = KeyPair::Generate();
  out.notification =
      MakeNode("notification",
               {{"from", std::string(kServerJid.substr(1))},
                {"type", std::string(kLinkCodeReg)},
                {"id", std::move(notification_id)},
                {"t", std::to_string(absl::ToUnixSeconds(absl::Now()))}},
               std::vector<Node>{MakeNode(
                   std::string(kLinkCodeReg), {{"stage", "primary_hello"}},
                   std::vector<Node>{
                       MakeNode("link_code_pairing_ref", {}, Bytes(ref.begin(), ref.end())),
                       MakeNode("primary_identity_pub", {},
                                Bytes(primary_identity.pub.begin(), primary_identity.pub.end())),
                       MakeNode("link_code_pairing_wrapped_primary_ephemeral_pub", {},
                                WrapWithLinkCode(code, out.ephemeral.pub))})});
  return out;
}

absl::StatusOr<ScannedQr> PhoneOpenCompanionFinish(const Node& finish_iq,
                                                   const PhoneLinkCode& hello,
                                                   const KeyPair& primary_identity) {
  const Node* reg = finish_iq.Child(kLinkCodeReg);
  if (!reg || reg->AttrOr("stage") != "companion_finish") {
    return absl::InvalidArgumentError("no <link_code_companion_reg stage=companion_finish>");
  }
  WAS_ASSIGN_OR_RETURN(ByteView wrapped, ChildBytes(*reg, "link_code_pairing_wrapped_key_bundle"));
  WAS_ASSIGN_OR_RETURN(ByteView companion_identity,
                       ChildBytes(*reg, "companion_identity_public", 32));
  WAS_ASSIGN_OR_RETURN(ByteView ref, ChildBytes(*reg, "link_code_pairing_ref"));
  // salt(32) ‖ iv(12) ‖ AES-GCM(companion identity ‖ primary identity ‖ random(32)) + tag(16)
  if (wrapped.size() != 32 + 12 + 96 + 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("the key bundle is ", wrapped.size(), " bytes, not 156"));
  }
  WAS_ASSIGN_OR_RETURN(auto ephemeral_shared,
                       SharedSecret(hello.ephemeral.priv, hello.companion_ephemeral));
  const Bytes bundle_key = Hkdf(ephemeral_shared, wrapped.subspan(0, 32), Info(kBundleInfo), 32);
  auto bundle = AesGcmDecrypt(bundle_key, wrapped.subspan(32, 12), {}, wrapped.subspan(44));
  if (!bundle.ok()) {
    return absl::UnauthenticatedError(
        "the key bundle does not open: the code typed is not the code the companion shows");
  }
  const ByteView b(*bundle);
  if (!std::equal(companion_identity.begin(), companion_identity.end(), b.begin()) ||
      !std::equal(primary_identity.pub.begin(), primary_identity.pub.end(), b.begin() + 32)) {
    return absl::UnauthenticatedError("the key bundle names other identities");
  }
  WAS_ASSIGN_OR_RETURN(auto identity_shared,
                       SharedSecret(primary_identity.priv, companion_identity));
  ScannedQr out;
  out.ref.assign(ref.begin(), ref.end());
  out.identity_pub = Array32(companion_identity);
  out.adv_secret = LinkCodeAdvSecret(ephemeral_shared, identity_shared, b.subspan(64, 32));
  return out;
}

Bytes PhoneSignDeviceIdentity(const KeyPair& account_key, const ScannedQr& qr,
                              const PhoneIdentityOptions& options) {
  wire::ADVDeviceIdentity device;
  device.set_raw_id(options.raw_id);
  device.set_timestamp(options.timestamp);
  device.set_key_index(options.key_index);
  const Bytes details = Serialize(device);
  auto signature =
      CurveSign(account_key.priv, Concat({ByteView(kAccountSigPrefix), details, qr.identity_pub}));
  if (options.corrupt_signature) signature[5] ^= 0x40;
  wire::ADVSignedDeviceIdentity signed_identity;
  signed_identity.set_details(std::string(details.begin(), details.end()));
  signed_identity.set_account_signature_key(
      std::string(account_key.pub.begin(), account_key.pub.end()));
  signed_identity.set_account_signature(std::string(signature.begin(), signature.end()));
  const Bytes signed_bytes = Serialize(signed_identity);
  auto mac = HmacSha256(qr.adv_secret, signed_bytes);
  if (options.corrupt_hmac) mac[0] ^= 0x01;
  wire::ADVSignedDeviceIdentityHMAC container;
  container.set_details(std::string(signed_bytes.begin(), signed_bytes.end()));
  container.set_hmac(std::string(mac.begin(), mac.end()));
  return Serialize(container);
}

absl::Status VerifyPairDeviceSign(const Node& reply_iq, ByteView companion_identity_pub,
                                  ByteView account_pub) {
  const Node* sign = reply_iq.Child("pair-device-sign");
  const Node* identity = sign ? sign->Child("device-identity") : nullptr;
  if (!identity) return absl::InvalidArgumentError("no <pair-device-sign><device-identity>");
  wire::ADVSignedDeviceIdentity answer;
  ByteView raw = identity->ContentBytes();
  if (!answer.ParseFromArray(raw.data(), static_cast<int>(raw.size())) || !answer.has_details() ||
      answer.device_signature().size() != 64) {
    return absl::InvalidArgumentError("the answered device identity is incomplete");
  }
  if (!CurveVerify(companion_identity_pub,
                   Concat({ByteView(kDeviceSigPrefix), AsBytes(answer.details()),
                           companion_identity_pub, account_pub}),
                   AsBytes(answer.device_signature()))) {
    return absl::UnauthenticatedError("the device signature does not verify");
  }
  return absl::OkStatus();
}

Bytes SignedDeviceIdentity(const AccountIdentity& account) {
  wire::ADVSignedDeviceIdentity identity;
  identity.set_details(std::string(account.details.begin(), account.details.end()));
  identity.set_account_signature_key(
      std::string(account.account_signature_key.begin(), account.account_signature_key.end()));
  identity.set_account_signature(
      std::string(account.account_signature.begin(), account.account_signature.end()));
  identity.set_device_signature(
      std::string(account.device_signature.begin(), account.device_signature.end()));
  return Serialize(identity);
}

}  // namespace wasentinel::wa
