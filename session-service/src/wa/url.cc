#include "url.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::wa {

absl::StatusOr<Url> ParseUrl(std::string_view text) {
  Url url;
  std::string_view rest;
  if (text.starts_with("wss://")) {
    url.tls = true;
    rest = text.substr(6);
  } else if (text.starts_with("ws://")) {
    url.tls = false;
    rest = text.substr(5);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("not a ws:// or wss:// URL: ", Sv(text)));
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  url.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  std::string_view port;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("unclosed IPv6 host");
    url.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return absl::InvalidArgumentError("junk after IPv6 host");
      port = authority.substr(close + 2);
    }
  } else {
    const size_t colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (url.host.empty()) return absl::InvalidArgumentError(absl::StrCat("no host in ", Sv(text)));
  if (port.empty()) {
    url.port = url.tls ? "443" : "80";
  } else {
    int p = 0;
    if (!absl::SimpleAtoi(Sv(port), &p) || p <= 0 || p > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("bad port in ", Sv(text)));
    }
    url.port = std::string(port);
  }
  return url;
}

}  // namespace wasentinel::wa
