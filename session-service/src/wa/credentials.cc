#include "credentials.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
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

}  // namespace

std::string DeviceCredentials::Jid() const {
  return absl::StrCat(phone, ":", device, "@s.whatsapp.net");
}

absl::StatusOr<DeviceCredentials> DeviceCredentials::FromBaileysJson(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad("not a JSON object");
  if (!j.contains("noiseKey") || !j["noiseKey"].is_object()) return Bad("noiseKey is missing");
  const auto& nk = j["noiseKey"];
  if (!nk.contains("private") || !nk.contains("public")) return Bad("noiseKey is incomplete");
  WAS_ASSIGN_OR_RETURN(Bytes priv, BufferJson(nk["private"], "noiseKey.private"));
  WAS_ASSIGN_OR_RETURN(Bytes pub, BufferJson(nk["public"], "noiseKey.public"));
  if (priv.size() != 32 || pub.size() != 32) return Bad("noiseKey halves must be 32 bytes");
  DeviceCredentials creds;
  WAS_ASSIGN_OR_RETURN(creds.noise_key, KeyPair::FromPrivate(priv));
  if (!std::equal(pub.begin(), pub.end(), creds.noise_key.pub.begin())) {
    return Bad("noiseKey.public does not belong to noiseKey.private");
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
  if (ec != std::errc() || ptr != jid->user.data() + jid->user.size()) {
    return Bad("me.id does not start with a phone number");
  }
  creds.device = jid->device < 0 ? 0 : static_cast<uint32_t>(jid->device);
  if (me.contains("lid") && me["lid"].is_string()) creds.lid = me["lid"].get<std::string>();
  if (me.contains("name") && me["name"].is_string())
    creds.push_name = me["name"].get<std::string>();
  return creds;
}

std::string MaskPhone(std::string_view phone) {
  std::string out(phone);
  if (out.size() <= 5) return std::string(out.size(), '*');
  for (size_t i = 3; i + 2 < out.size(); ++i) out[i] = '*';
  return out;
}

}  // namespace wasentinel::wa
