// The rules every API boundary of the three services checks requests with, so that one field
// means the same thing everywhere (README "gRPC API", where the rules are listed, and
// "Security").
//
// Each check answers OK or INVALID_ARGUMENT with a message that names the field and quotes at
// most 32 bytes of the value (QuoteForLog), never the whole of it: a 1 MiB value must not come
// back in an error's metadata. Lengths are in bytes of UTF-8.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wasentinel {

/// Is `text` well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
/// U+10FFFF)?
bool IsUtf8(std::string_view text);

struct TextRule {
  size_t max_bytes = 256;
  bool required = false;   ///< empty is refused
  bool multiline = false;  ///< '\n' and '\t' allowed (other control characters never are)
};

/// UTF-8, no NUL or other control characters (C0, DEL, C1), at most `max_bytes`, present when
/// required.
absl::Status CheckText(std::string_view field, std::string_view value, TextRule rule);

/// A mailbox as SMTP's MAIL FROM / RCPT TO carry it (RFC 5321 §4.1.2 "Mailbox"), restricted to
/// what alert e-mail needs: a dot-atom local part of RFC 5322 atext (no quoted strings), '@',
/// and a domain name of letters, digits and hyphens (no address literals); ASCII only, local
/// part at most 64 bytes, the whole at most 254 (RFC 5321 §4.5.3.1). So no CR, LF, '<', '>',
/// space or NUL can ever reach an SMTP command or a header.
absl::Status CheckMailbox(std::string_view field, std::string_view address);

/// A From:-style mailbox: "local@domain" or "Display Name <local@domain>" (the name printable
/// UTF-8 without '<', '>', '"' or control characters, at most 128 bytes). Answers the address.
absl::StatusOr<std::string> ParseNameAddr(std::string_view field, std::string_view value);

/// A tenant id: 1 to 64 of [A-Za-z0-9._:-], starting with a letter or digit.
absl::Status CheckTenantId(std::string_view field, std::string_view tenant);

/// An event type: 1 to 64 of [a-z0-9._-], starting with a letter (it becomes a Prometheus
/// label value and a webhook filter, so its set stays small and printable).
absl::Status CheckEventType(std::string_view field, std::string_view type);

/// An identifier a client passes back (session id, alert id, page token, dedup key):
/// printable ASCII without spaces, 1 to `max_bytes`.
absl::Status CheckIdentifier(std::string_view field, std::string_view id, size_t max_bytes = 128);

/// A time given as Unix seconds and nanoseconds (google.protobuf.Timestamp's fields): between
/// 1970-01-01 and 9999-12-31, nanos 0..999999999.
absl::Status CheckTimestamp(std::string_view field, int64_t seconds, int32_t nanos);

/// A duration given as seconds and nanoseconds (google.protobuf.Duration's fields): at least 0,
/// at most `max_seconds`, nanos of the same sign and under a second.
absl::Status CheckDuration(std::string_view field, int64_t seconds, int32_t nanos,
                           int64_t max_seconds);

}  // namespace wasentinel
