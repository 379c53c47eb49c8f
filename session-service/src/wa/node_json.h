// JSON form of binary nodes, for the wa-node tool, test vectors and logs.
//
// Shape: {"tag": "iq", "attrs": {"id": "1", ...}, "content": C} where C is absent (no content),
// a string (string content), {"hex": "0a1b..."} (bytes content) or an array of nodes.
// Attribute order is kept (nlohmann::ordered_json), since it decides the encoded bytes.
#pragma once

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "binary_node.h"

namespace wasentinel::wa {

nlohmann::ordered_json NodeToJson(const Node& node);

/// INVALID_ARGUMENT, naming the path of the bad member, when `json` is not of the shape above.
absl::StatusOr<Node> NodeFromJson(const nlohmann::ordered_json& json);

}  // namespace wasentinel::wa
