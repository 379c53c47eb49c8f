// libFuzzer target: reading a Baileys creds.json (an API input: CreateSession's creds_json).
#include <cstdint>
#include <string_view>

#include "credentials.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)wasentinel::wa::DeviceCredentials::FromBaileysJson(
      std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
