#include "wasentinel/common/validation.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/logging.h"

namespace wasentinel {
namespace {

constexpr size_t kQuoted = 32;

absl::Status Invalid(std::string_view field, std::string_view value, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(Sv(field), " ", Sv(QuoteForLog(value, kQuoted)), " ", Sv(why)));
}

// RFC 5322 §3.2.3 atext.
bool Atext(char c) {
  if (absl::ascii_isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

bool DotAtom(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!Atext(c)) {
      return false;
    }
    prev = c;
  }
  return true;
}

// RFC 5321 §4.1.2 Domain (sub-domain *("." sub-domain)), each label 1..63 of letters, digits
// and inner hyphens.
bool DomainName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    const std::string_view label =
        s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

}  // namespace

bool IsUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int extra;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;  // continuation byte, overlong lead (C0, C1) or beyond F4
    }
    if (end - p <= extra) return false;
    for (int i = 1; i <= extra; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    p += extra + 1;
  }
  return true;
}

absl::Status CheckText(std::string_view field, std::string_view value, TextRule rule) {
  if (value.empty()) {
    return rule.required ? absl::InvalidArgumentError(absl::StrCat(Sv(field), " is required"))
                         : absl::OkStatus();
  }
  if (value.size() > rule.max_bytes) {
    return Invalid(field, value,
                   absl::StrCat("is longer than ", rule.max_bytes, " bytes (", value.size(), ")"));
  }
  if (!IsUtf8(value)) return Invalid(field, value, "is not valid UTF-8");
  for (size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    const bool c1 = c == 0xC2 && i + 1 < value.size() &&
                    static_cast<unsigned char>(value[i + 1]) >= 0x80 &&
                    static_cast<unsigned char>(value[i + 1]) <= 0x9F;
    if ((c < 0x20 && !(rule.multiline && (c == '\n' || c == '\t'))) || c == 0x7F || c1) {
      return Invalid(field, value,
                     absl::StrCat("holds a control character at byte ", i,
                                  rule.multiline ? " (only newlines and tabs are allowed)" : ""));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckMailbox(std::string_view field, std::string_view address) {
  if (address.empty()) return absl::InvalidArgumentError(absl::StrCat(Sv(field), " is empty"));
  if (address.size() > 254) return Invalid(field, address, "is longer than 254 bytes");
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos) {
    return Invalid(field, address, "is not an e-mail address (local@domain)");
  }
  const std::string_view local = address.substr(0, at);
  const std::string_view domain = address.substr(at + 1);
  if (local.size() > 64 || !DotAtom(local)) {
    return Invalid(field, address,
                   "is not an e-mail address: the part before '@' may hold letters, digits, "
                   "dots and !#$%&'*+-/=?^_`{|}~ (at most 64)");
  }
  if (!DomainName(domain)) {
    return Invalid(field, address,
                   "is not an e-mail address: the part after '@' is not a domain name");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseNameAddr(std::string_view field, std::string_view value) {
  const size_t lt = value.find('<');
  if (lt == std::string_view::npos) {
    if (auto st = CheckMailbox(field, value); !st.ok()) return st;
    return std::string(value);
  }
  if (value.back() != '>' || value.find('<', lt + 1) != std::string_view::npos) {
    return Invalid(field, value, "is not \"Name <local@domain>\"");
  }
  std::string_view name = value.substr(0, lt);
  // Checked whole (no CR or LF may hide in the blanks around it), then trimmed of spaces.
  if (auto st = CheckText(field, name, {.max_bytes = 128}); !st.ok()) return st;
  while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
  while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
  const std::string_view address = value.substr(lt + 1, value.size() - lt - 2);
  if (name.find_first_of("<>\"") != std::string_view::npos) {
    return Invalid(field, value, "has '<', '>' or '\"' in its name");
  }
  if (auto st = CheckMailbox(field, address); !st.ok()) return st;
  return std::string(address);
}

absl::Status CheckTenantId(std::string_view field, std::string_view tenant) {
  if (tenant.empty()) return absl::InvalidArgumentError(absl::StrCat(Sv(field), " is required"));
  bool ok = tenant.size() <= 64 && absl::ascii_isalnum(tenant.front());
  for (char c : tenant) {
    ok = ok && (absl::ascii_isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-');
  }
  if (!ok) {
    return Invalid(field, tenant,
                   "is not a tenant id: 1 to 64 of letters, digits, '.', '_', ':' and '-', "
                   "starting with a letter or digit");
  }
  return absl::OkStatus();
}

absl::Status CheckEventType(std::string_view field, std::string_view type) {
  if (type.empty()) return absl::InvalidArgumentError(absl::StrCat(Sv(field), " is required"));
  bool ok = type.size() <= 64 && absl::ascii_islower(type.front());
  for (char c : type) {
    ok = ok &&
         (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' || c == '-');
  }
  if (!ok) {
    return Invalid(field, type,
                   "is not an event type: 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with "
                   "a letter (like session.critical)");
  }
  return absl::OkStatus();
}

absl::Status CheckIdentifier(std::string_view field, std::string_view id, size_t max_bytes) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(Sv(field), " is required"));
  if (id.size() > max_bytes) {
    return Invalid(field, id, absl::StrCat("is longer than ", max_bytes, " bytes"));
  }
  for (char c : id) {
    if (c <= 0x20 || c >= 0x7F) {
      return Invalid(field, id, "may hold only printable ASCII without spaces");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTimestamp(std::string_view field, int64_t seconds, int32_t nanos) {
  constexpr int64_t kMax = 253402300799;  // 9999-12-31T23:59:59Z
  if (seconds < 0 || seconds > kMax || nanos < 0 || nanos > 999999999) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(field), " is out of range: 1970-01-01 to 9999-12-31"));
  }
  return absl::OkStatus();
}

absl::Status CheckDuration(std::string_view field, int64_t seconds, int32_t nanos,
                           int64_t max_seconds) {
  if (seconds < 0 || nanos < 0 || nanos > 999999999 || seconds > max_seconds) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(field), " is out of range: 0 to ", max_seconds, " seconds"));
  }
  return absl::OkStatus();
}

}  // namespace wasentinel
