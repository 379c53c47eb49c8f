#include "usync.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "crypto.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::wa {

Node DeviceListQuery(const std::vector<std::string>& users, const std::string& sid) {
  std::vector<Node> list;
  list.reserve(users.size());
  for (const auto& u : users) list.push_back(MakeNode("user", {{"jid", u + "@s.whatsapp.net"}}));
  return MakeNode(
      "iq", {{"xmlns", "usync"}, {"type", "get"}, {"to", "s.whatsapp.net"}},
      std::vector<Node>{MakeNode(
          "usync",
          {{"sid", sid},
           {"mode", "query"},
           {"last", "true"},
           {"index", "0"},
           {"context", "message"}},
          std::vector<Node>{
              MakeNode("query", {}, std::vector<Node>{MakeNode("devices", {{"version", "2"}})}),
              MakeNode("list", {}, std::move(list))})});
}

absl::StatusOr<std::map<std::string, std::vector<uint32_t>>> ParseDeviceLists(const Node& iq) {
  const Node* usync = iq.Child("usync");
  const Node* list = usync ? usync->Child("list") : nullptr;
  if (!list) return absl::InvalidArgumentError("a device list answer without <usync><list>");
  std::map<std::string, std::vector<uint32_t>> out;
  for (const Node& user : list->Children()) {
    if (user.tag != "user") continue;
    const std::string jid = user.AttrOr("jid");
    const std::string name = jid.substr(0, jid.find_first_of(":@"));
    const Node* devices = user.Child("devices");
    const Node* device_list = devices ? devices->Child("device-list") : nullptr;
    if (name.empty() || !device_list) continue;
    std::vector<uint32_t> ids;
    for (const Node& d : device_list->Children()) {
      uint32_t id = 0;
      if (d.tag != "device" || !absl::SimpleAtoi(d.AttrOr("id"), &id) || id > 0xFFFF) continue;
      if (d.AttrOr("is_hosted") == "true") continue;  // a hosted (business API) device: not ours
      ids.push_back(id);
    }
    out[name] = std::move(ids);
  }
  return out;
}

std::string ParticipantHash(const std::vector<std::pair<std::string, uint32_t>>& devices) {
  std::vector<std::string> forms;
  forms.reserve(devices.size());
  for (const auto& [user, device] : devices) {
    forms.push_back(absl::StrCat(user, ".0:", device, "@s.whatsapp.net"));
  }
  std::sort(forms.begin(), forms.end());
  std::string all;
  for (const auto& f : forms) all += f;
  const auto digest = Sha256({ByteView(reinterpret_cast<const uint8_t*>(all.data()), all.size())});
  std::string b64 = Base64Encode(ByteView(digest.data(), 6));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return "2:" + b64;
}

}  // namespace wasentinel::wa
