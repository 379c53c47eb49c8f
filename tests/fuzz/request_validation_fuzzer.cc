// libFuzzer target: the request rules every API boundary applies (common/validation.h), the
// public-address classifier of webhook targets (common/ip_address.h) and the log quoting of
// hostile values (common/logging.h). The input is split at its first NUL-free byte into a rule
// selector and a value; whatever a rule accepts must hold its promise (no CR, LF, '<' or '>' in
// an accepted mailbox; no control character in accepted single-line text).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "wasentinel/common/ip_address.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/validation.h"

namespace {

void Require(bool promise) {
  if (!promise) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wasentinel;
  if (size == 0) return 0;
  const uint8_t rule = data[0];
  const std::string_view value(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (rule % 8) {
    case 0:
      if (CheckMailbox("owner_email", value).ok()) {
        Require(value.find_first_of("\r\n<> \"") == std::string_view::npos);
        Require(value.size() <= 254);
      }
      break;
    case 1:
      if (auto address = ParseNameAddr("smtp_from", value); address.ok()) {
        Require(address->find_first_of("\r\n<>") == std::string::npos);
        Require(value.find_first_of("\r\n") == std::string_view::npos);
      }
      break;
    case 2:
      if (CheckText("account_name", value, {.max_bytes = 256}).ok()) {
        Require(IsUtf8(value) && value.size() <= 256);
        for (unsigned char c : value) Require(c >= 0x20 && c != 0x7f);
      }
      break;
    case 3:
      if (CheckTenantId("tenant_id", value).ok() || CheckEventType("event_type", value).ok() ||
          CheckIdentifier("id", value).ok()) {
        for (unsigned char c : value) Require(c > 0x20 && c < 0x7f);
      }
      break;
    case 4:
      (void)IsPublicAddress(value);
      break;
    case 5: {
      const std::string quoted = QuoteForLog(value, 32);
      for (unsigned char c : quoted.substr(0, quoted.rfind('"') + 1)) Require(c >= 0x20);
      break;
    }
    case 6:
      (void)RedactUrlCredentials(value);
      (void)MaskJid(value);
      break;
    default: {
      // Timestamps and durations from the first 12 bytes of the value.
      if (value.size() < 12) break;
      int64_t seconds;
      int32_t nanos;
      __builtin_memcpy(&seconds, value.data(), 8);
      __builtin_memcpy(&nanos, value.data() + 8, 4);
      (void)CheckTimestamp("until", seconds, nanos);
      (void)CheckDuration("timeout", seconds, nanos, 60);
      break;
    }
  }
  return 0;
}
