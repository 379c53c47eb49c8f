// libFuzzer target: what session-service reads about the WhatsApp Web version from outside —
// the version page (web.whatsapp.com or --wa_version_url, any bytes up to the size cap) and a
// --wa_version value. Neither may crash, and a version found must be a valid one.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "version.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wasentinel::wa;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto v = VersionFromPage(text); v.ok()) {
    if (v->primary != 2 || v->secondary != 3000 || v->tertiary == 0) std::abort();
    if (!WaVersion::Parse(v->ToString()).ok()) std::abort();
  }
  if (auto v = WaVersion::Parse(text); v.ok() && v->ToString() != text) std::abort();
  return 0;
}
