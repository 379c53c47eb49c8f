#include "version.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace wasentinel::wa {
namespace {

bool ParsePart(std::string_view text, uint32_t* out) {
  if (text.empty() || text.size() > 10) return false;
  if (text.size() > 1 && text[0] == '0') return false;  // one spelling per number
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  uint64_t v = 0;
  for (char c : text) v = v * 10 + static_cast<uint64_t>(c - '0');
  if (v > UINT32_MAX) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

}  // namespace

std::string WaVersion::ToString() const {
  return absl::StrCat(primary, ".", secondary, ".", tertiary);
}

absl::StatusOr<WaVersion> WaVersion::Parse(std::string_view text) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t dot = text.find('.', start);
    parts.push_back(text.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  WaVersion v;
  if (parts.size() != 3 || !ParsePart(parts[0], &v.primary) || !ParsePart(parts[1], &v.secondary) ||
      !ParsePart(parts[2], &v.tertiary)) {
    return absl::InvalidArgumentError(
        "a WhatsApp Web version is three numbers, like 2.3000.1045649367");
  }
  if (v.primary != 2 || v.secondary != 3000 || v.tertiary == 0) {
    return absl::InvalidArgumentError(
        "WhatsApp Web versions are 2.3000.N with N > 0 (the line the real server accepts)");
  }
  return v;
}

absl::StatusOr<WaVersion> VersionFromPage(std::string_view page) {
  constexpr std::string_view kKey = "client_revision";
  for (size_t at = page.find(kKey); at != std::string_view::npos;
       at = page.find(kKey, at + kKey.size())) {
    // The key must be quoted: "client_revision" or \"client_revision\".
    if (at == 0 || page[at - 1] != '"') continue;
    size_t i = at + kKey.size();
    if (i < page.size() && page[i] == '\\') ++i;
    if (i >= page.size() || page[i] != '"') continue;
    ++i;
    while (i < page.size() && page[i] == ' ') ++i;
    if (i >= page.size() || page[i] != ':') continue;
    ++i;
    while (i < page.size() && page[i] == ' ') ++i;
    size_t end = i;
    while (end < page.size() && end - i <= 10 &&
           absl::ascii_isdigit(static_cast<unsigned char>(page[end]))) {
      ++end;
    }
    WaVersion v;
    if (!ParsePart(page.substr(i, end - i), &v.tertiary) || v.tertiary == 0) {
      return absl::InvalidArgumentError(
          "the page's client_revision is not a number between 1 and 4294967295");
    }
    return v;
  }
  return absl::InvalidArgumentError("the page names no client_revision");
}

}  // namespace wasentinel::wa
