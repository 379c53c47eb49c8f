// libFuzzer target: the gRPC-Web request bodies the console's bridge reads from browsers
// (console/src/grpc_web.h). The first byte picks the format and the message limit; whatever
// DecodeRequest accepts must be within the limit and frame back to what it decoded.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "grpc_web.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wasentinel::console;
  if (size == 0) return 0;
  const WireFormat format = (data[0] & 1) ? WireFormat::kText : WireFormat::kBinary;
  const size_t limit = size_t{data[0]} * 16;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto message = DecodeRequest(body, format, limit);
  if (message.ok()) {
    if (message->size() > limit) std::abort();
    auto again = DecodeRequest(EncodeMessage(*message, format), format, limit);
    if (!again.ok() || *again != *message) std::abort();
  }
  (void)FormatOf(body);
  return 0;
}
