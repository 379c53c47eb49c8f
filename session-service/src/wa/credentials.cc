#include "credentials.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "baileys_prekeys.h"
#include "binary_node.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::wa {
namespace {

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("creds.json: ", what));
}

// BufferJSON: {"type":"Buffer","data":"<base64>"} or {"type":"Buffer","data":[1,2,...]}.
absl::StatusOr<Bytes> BufferJson(const nlohmann::json& j, absl::string_view field) {
  if (j.is_string()) {
    auto b = Base64Decode(j.get<std::string>());
    if (!b.ok()) return Bad(absl::StrCat(field, " is not base64"));
    return b;
  }
  if (!j.is_object() || !j.contains("data")) return Bad(absl::StrCat(field, " is not a Buffer"));
  const auto& data = j["data"];
  if (data.is_string()) {
    auto b = Base64Decode(data.get<std::string>());
    if (!b.ok()) return Bad(absl::StrCat(field, " is not base64"));
    return b;
  }
  if (data.is_array()) {
    Bytes out;
    for (const auto& v : data) {
      if (!v.is_number_unsigned() || v.get<unsigned>() > 255) {
        return Bad(absl::StrCat(field, " holds a non-byte value"));
      }
      out.push_back(static_cast<uint8_t>(v.get<unsigned>()));
    }
    return out;
  }
  return Bad(absl::StrCat(field, " is not a Buffer"));
}

nlohmann::json ToBufferJson(ByteView b) { return {{"type", "Buffer"}, {"data", Base64Encode(b)}}; }

// {"private": Buffer, "public": Buffer} under `field`; the public half must match.
absl::StatusOr<KeyPair> ReadKeyPair(const nlohmann::json& parent, absl::string_view field) {
  const std::string name(field);
  if (!parent.contains(name) || !parent[name].is_object()) {
    return Bad(absl::StrCat(field, " is missing"));
  }
  const auto& kp = parent[name];
  if (!kp.contains("private") || !kp.contains("public")) {
    return Bad(absl::StrCat(field, " is incomplete"));
  }
  WAS_ASSIGN_OR_RETURN(Bytes priv, BufferJson(kp["private"], absl::StrCat(field, ".private")));
  WAS_ASSIGN_OR_RETURN(Bytes pub, BufferJson(kp["public"], absl::StrCat(field, ".public")));
  if (pub.size() == 33 && pub[0] == 5) pub.erase(pub.begin());
  if (priv.size() != 32 || pub.size() != 32) {
    return Bad(absl::StrCat(field, " halves must be 32 bytes"));
  }
  WAS_ASSIGN_OR_RETURN(KeyPair out, KeyPair::FromPrivate(priv));
  if (!std::equal(pub.begin(), pub.end(), out.pub.begin())) {
    return Bad(absl::StrCat(field, ".public does not belong to ", field, ".private"));
  }
  return out;
}

}  // namespace

absl::StatusOr<BaileysPreKey> ParseBaileysPreKeyFile(std::string_view file_name,
                                                     std::string_view json) {
  constexpr std::string_view kPrefix = "pre-key-", kSuffix = ".json";
  uint32_t id = 0;
  if (!file_name.starts_with(kPrefix) || !file_name.ends_with(kSuffix) ||
      !absl::SimpleAtoi(
          Sv(file_name.substr(kPrefix.size(), file_name.size() - kPrefix.size() - kSuffix.size())),
          &id)) {
    return Bad(absl::StrCat("\"", Sv(file_name), "\" is not pre-key-<id>.json"));
  }
  if (id == 0 || id >= 0xFFFFFF) return Bad(absl::StrCat("pre-key id ", id, " is out of range"));
  auto parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Bad(absl::StrCat(Sv(file_name), " is not a JSON object"));
  }
  const std::string field = std::string(file_name);
  nlohmann::json holder = {{field, std::move(parsed)}};
  WAS_ASSIGN_OR_RETURN(KeyPair key, ReadKeyPair(holder, field));
  return BaileysPreKey{id, key};
}

std::string DeviceCredentials::Jid() const {
  return absl::StrCat(phone, ":", device, "@s.whatsapp.net");
}

DeviceCredentials DeviceCredentials::Generate() {
  DeviceCredentials c;
  c.noise_key = KeyPair::Generate();
  c.identity_key = KeyPair::Generate();
  c.signed_pre_key = KeyPair::Generate();
  c.signed_pre_key_id = 1;
  c.signed_pre_key_signature =
      CurveSign(c.identity_key.priv, SignalPublicKey(c.signed_pre_key.pub));
  uint16_t rid = 0;
  while (rid == 0) {
    RandomBytes(std::span(reinterpret_cast<uint8_t*>(&rid), sizeof rid));
    rid &= 0x3fff;  // Baileys: a 14-bit registration id
  }
  c.registration_id = rid;
  RandomBytes(c.adv_secret);
  return c;
}

absl::StatusOr<DeviceCredentials> DeviceCredentials::FromBaileysJson(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad("not a JSON object");
  DeviceCredentials creds;
  WAS_ASSIGN_OR_RETURN(creds.noise_key, ReadKeyPair(j, "noiseKey"));
  if (j.contains("signedIdentityKey")) {
    WAS_ASSIGN_OR_RETURN(creds.identity_key, ReadKeyPair(j, "signedIdentityKey"));
  }
  if (j.contains("signedPreKey") && j["signedPreKey"].is_object()) {
    const auto& spk = j["signedPreKey"];
    WAS_ASSIGN_OR_RETURN(creds.signed_pre_key, ReadKeyPair(spk, "keyPair"));
    if (spk.contains("signature")) {
      WAS_ASSIGN_OR_RETURN(Bytes sig, BufferJson(spk["signature"], "signedPreKey.signature"));
      if (sig.size() != 64) return Bad("signedPreKey.signature must be 64 bytes");
      std::copy(sig.begin(), sig.end(), creds.signed_pre_key_signature.begin());
    }
    if (spk.contains("keyId") && spk["keyId"].is_number_unsigned())
      creds.signed_pre_key_id = spk["keyId"].get<uint32_t>();
  }
  if (j.contains("registrationId") && j["registrationId"].is_number_unsigned())
    creds.registration_id = j["registrationId"].get<uint32_t>();
  if (j.contains("advSecretKey")) {
    WAS_ASSIGN_OR_RETURN(Bytes adv, BufferJson(j["advSecretKey"], "advSecretKey"));
    if (adv.size() != 32) return Bad("advSecretKey must be 32 bytes");
    std::copy(adv.begin(), adv.end(), creds.adv_secret.begin());
  }
  if (j.contains("platform") && j["platform"].is_string()) creds.platform = j["platform"];
  if (j.contains("account") && j["account"].is_object()) {
    const auto& a = j["account"];
    AccountIdentity acc;
    for (auto [field, out] : {std::pair{"details", &acc.details},
                              {"accountSignatureKey", &acc.account_signature_key},
                              {"accountSignature", &acc.account_signature},
                              {"deviceSignature", &acc.device_signature}}) {
      if (!a.contains(field)) continue;
      WAS_ASSIGN_OR_RETURN(*out, BufferJson(a[field], absl::StrCat("account.", field)));
    }
    creds.account = std::move(acc);
  }

  if (!j.contains("me") || !j["me"].is_object() || !j["me"].contains("id") ||
      !j["me"]["id"].is_string()) {
    return Bad("me.id is missing: the device is not paired");
  }
  const auto& me = j["me"];
  auto jid = wa::Jid::Parse(me["id"].get<std::string>());
  if (!jid.ok() || jid->server != "s.whatsapp.net" || jid->user.empty()) {
    return Bad("me.id is not a phone-number JID");
  }
  auto [ptr, ec] =
      std::from_chars(jid->user.data(), jid->user.data() + jid->user.size(), creds.phone);
  if (ec != std::errc() || ptr != jid->user.data() + jid->user.size() || creds.phone == 0) {
    return Bad("me.id does not start with a phone number");
  }
  creds.device = jid->device < 0 ? 0 : static_cast<uint32_t>(jid->device);
  if (me.contains("lid") && me["lid"].is_string()) creds.lid = me["lid"].get<std::string>();
  if (me.contains("name") && me["name"].is_string())
    creds.push_name = me["name"].get<std::string>();
  return creds;
}

std::string DeviceCredentials::ToBaileysJson() const {
  using nlohmann::json;
  auto key_pair = [](const KeyPair& kp) {
    return json{{"private", ToBufferJson(kp.priv)}, {"public", ToBufferJson(kp.pub)}};
  };
  json j = {
      {"noiseKey", key_pair(noise_key)},
      {"pairingEphemeralKeyPair", key_pair(KeyPair::Generate())},
      {"signedIdentityKey", key_pair(identity_key)},
      {"signedPreKey",
       {{"keyPair", key_pair(signed_pre_key)},
        {"signature", ToBufferJson(signed_pre_key_signature)},
        {"keyId", signed_pre_key_id}}},
      {"registrationId", registration_id},
      {"advSecretKey", Base64Encode(adv_secret)},
      {"processedHistoryMessages", json::array()},
      {"nextPreKeyId", 1},
      {"firstUnuploadedPreKeyId", 1},
      {"accountSyncCounter", 0},
      {"accountSettings", {{"unarchiveChats", false}}},
      {"registered", false},
  };
  if (paired()) {
    json me = {{"id", Jid()}};
    if (!lid.empty()) me["lid"] = lid;
    if (!push_name.empty()) me["name"] = push_name;
    j["me"] = std::move(me);
  }
  if (!platform.empty()) j["platform"] = platform;
  if (account) {
    // protobufjs' toJSON runs first for `account`: plain base64 strings (§9).
    j["account"] = {{"details", Base64Encode(account->details)},
                    {"accountSignatureKey", Base64Encode(account->account_signature_key)},
                    {"accountSignature", Base64Encode(account->account_signature)},
                    {"deviceSignature", Base64Encode(account->device_signature)}};
    if (paired()) {
      j["signalIdentities"] = json::array(
          {{{"identifier", {{"name", Jid()}, {"deviceId", 0}}},
            {"identifierKey", ToBufferJson(SignalPublicKey(account->account_signature_key))}}});
    }
  }
  return j.dump();
}

}  // namespace wasentinel::wa
