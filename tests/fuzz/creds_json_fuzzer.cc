// libFuzzer target: reading Baileys' auth state as an API input — a creds.json (CreateSession's
// creds_json) and the pre-key-<id>.json files that come with it.
#include <cstdint>
#include <string_view>

#include "baileys_prekeys.h"
#include "credentials.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  (void)wasentinel::wa::DeviceCredentials::FromBaileysJson(json);
  (void)wasentinel::wa::ParseBaileysPreKeyFile("pre-key-7.json", json);
  return 0;
}
