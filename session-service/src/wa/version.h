// The WhatsApp Web client version a linked device announces in its ClientPayload
// (UserAgent.appVersion, DeviceProps.version, and the MD5 build hash of registration).
//
// The real server refuses versions it considers too old with <failure reason="405">, and
// WhatsApp Web moves on many times a year. whatsmeow keeps a compiled-in default
// (store/clientpayload.go waVersion) and reads the live one from the WhatsApp Web page
// (update.go GetLatestVersion: the page's "client_revision"); Baileys reads it from sw.js
// (fetchLatestWaWebVersion), where the quotes are escaped. README "Configuration" ›
// "session-service" (`--wa_version`) says how session-service chooses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace wasentinel::wa {

struct WaVersion {
  uint32_t primary = 2;
  uint32_t secondary = 3000;
  uint32_t tertiary = 0;

  /// "2.3000.1045649367".
  std::string ToString() const;
  friend bool operator==(const WaVersion&, const WaVersion&) = default;

  /// Parses "P.S.T" (three decimal parts, each fitting 32 bits; the WhatsApp Web line is
  /// 2.3000.N and anything else is refused). INVALID_ARGUMENT saying what is wrong.
  static absl::StatusOr<WaVersion> Parse(std::string_view text);
};

/// The compiled-in default: whatsmeow's waVersion as of its 2026-08 release. Used when the live
/// version cannot be read and none was stored.
inline constexpr WaVersion kDefaultWaVersion{2, 3000, 1045649367};

/// The version a WhatsApp Web page names: the number after the first `"client_revision":`
/// (also with escaped quotes, `\"client_revision\":`, and spaces after the colon) in `page`.
/// INVALID_ARGUMENT when there is none or it is not a revision (1..4294967295).
absl::StatusOr<WaVersion> VersionFromPage(std::string_view page);

}  // namespace wasentinel::wa
