// WebSocket URLs of the connection layer.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace wasentinel::wa {

/// The parts of a ws:// or wss:// URL that a WebSocket client needs.
struct Url {
  bool tls = true;
  std::string host;
  std::string port;    ///< defaulted to 443 (wss) or 80 (ws)
  std::string target;  ///< path and query, at least "/"
};

/// Parses `ws://host[:port][/path]` or `wss://...` (IPv6 hosts in brackets). INVALID_ARGUMENT
/// for another scheme, an empty host or a bad port.
absl::StatusOr<Url> ParseUrl(std::string_view url);

}  // namespace wasentinel::wa
