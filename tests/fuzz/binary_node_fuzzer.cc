// libFuzzer target: the binary node decoder on arbitrary frame plaintexts (flag byte, zlib,
// every string form). Decoded nodes must re-encode, and re-encoding must reach a fixed point.
#include <cstdint>
#include <cstdlib>

#include "binary_node.h"
#include "node_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wasentinel;
  wa::DecodeLimits limits;
  limits.max_inflated_bytes = 1 << 20;
  auto node = wa::DecodeNode(ByteView(data, size), limits);
  if (!node.ok()) return 0;
  (void)wa::NodeToXml(*node);
  (void)wa::NodeToJson(*node).dump(-1, ' ', false,
                                   nlohmann::ordered_json::error_handler_t::replace);
  auto bytes = wa::EncodeNode(*node);
  if (!bytes.ok()) return 0;
  auto again = wa::DecodeNode(*bytes, limits);
  if (!again.ok()) std::abort();
  // Re-encoding may pick another form for the same JID (device 0 prints without ":0", as
  // both reference libraries print it), so the fixed point is reached one round later.
  auto bytes2 = wa::EncodeNode(*again);
  if (!bytes2.ok()) std::abort();
  auto third = wa::DecodeNode(*bytes2, limits);
  if (!third.ok() || !(*third == *again)) std::abort();
  return 0;
}
