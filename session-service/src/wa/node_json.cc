#include "node_json.h"

#include "absl/strings/str_cat.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::wa {
namespace {

absl::StatusOr<Node> FromJson(const nlohmann::ordered_json& j, const std::string& path) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  if (!j.is_object()) return bad("a node must be an object");
  auto tag = j.find("tag");
  if (tag == j.end() || !tag->is_string() || tag->get<std::string>().empty()) {
    return bad("\"tag\" must be a non-empty string");
  }
  Node node;
  node.tag = tag->get<std::string>();
  if (auto attrs = j.find("attrs"); attrs != j.end() && !attrs->is_null()) {
    if (!attrs->is_object()) return bad("\"attrs\" must be an object");
    for (const auto& [k, v] : attrs->items()) {
      if (!v.is_string()) return bad(absl::StrCat("attribute \"", k, "\" must be a string"));
      node.attrs.emplace_back(k, v.get<std::string>());
    }
  }
  if (auto c = j.find("content"); c != j.end() && !c->is_null()) {
    if (c->is_string()) {
      node.content = c->get<std::string>();
    } else if (c->is_object()) {
      auto hex = c->find("hex");
      if (hex == c->end() || !hex->is_string()) return bad("bytes content must be {\"hex\": ...}");
      auto bytes = HexDecode(hex->get<std::string>());
      if (!bytes.ok()) return bad(bytes.status().message());
      node.content = *std::move(bytes);
    } else if (c->is_array()) {
      std::vector<Node> children;
      for (size_t i = 0; i < c->size(); ++i) {
        WAS_ASSIGN_OR_RETURN(Node child,
                             FromJson((*c)[i], absl::StrCat(path, ".content[", i, "]")));
        children.push_back(std::move(child));
      }
      node.content = std::move(children);
    } else {
      return bad("\"content\" must be a string, {\"hex\": ...} or an array");
    }
  }
  return node;
}

}  // namespace

nlohmann::ordered_json NodeToJson(const Node& node) {
  nlohmann::ordered_json j;
  j["tag"] = node.tag;
  if (!node.attrs.empty()) {
    auto& attrs = j["attrs"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : node.attrs) attrs[k] = v;
  }
  if (const auto* s = std::get_if<std::string>(&node.content)) {
    j["content"] = *s;
  } else if (const auto* b = std::get_if<Bytes>(&node.content)) {
    j["content"] = {{"hex", HexEncode(*b)}};
  } else if (const auto* children = std::get_if<std::vector<Node>>(&node.content)) {
    auto& arr = j["content"] = nlohmann::ordered_json::array();
    for (const Node& c : *children) arr.push_back(NodeToJson(c));
  }
  return j;
}

absl::StatusOr<Node> NodeFromJson(const nlohmann::ordered_json& json) {
  return FromJson(json, "$");
}

}  // namespace wasentinel::wa
