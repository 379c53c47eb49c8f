// Logging: spdlog loggers made by the composition root and passed down, plus fmt formatters for
// the Abseil types that log lines carry (absl::string_view, absl::Status, absl::Duration).
#pragma once

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<std::string_view> {
  auto format(absl::string_view s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(std::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<std::string_view> {
  auto format(const absl::Status& s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(s.ToString(), ctx);
  }
};

template <>
struct fmt::formatter<absl::Duration> : fmt::formatter<std::string_view> {
  auto format(absl::Duration d, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(absl::FormatDuration(d), ctx);
  }
};

namespace wasentinel {

/// A logger named `name` writing to standard error at `level` ("trace" … "off"), for the
/// composition root to create and pass down. Libraries never use spdlog's default logger.
std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name,
                                           std::string_view level = "info");

/// Masks a phone number for logs and e-mails: all but the first 3 and last 2 digits become '*'
/// ("15551234567" → "155******67"); short numbers are masked whole.
std::string MaskPhone(std::string_view phone);

/// Masks the user part of a WhatsApp JID the way MaskPhone masks a number
/// ("15551234567.0:3@s.whatsapp.net" → "155******67.0:3@s.whatsapp.net"); other text stays.
std::string MaskJid(std::string_view jid);

/// A URL with any "user:password@" removed from its authority ("smtp://u:p@host:587" →
/// "smtp://***@host:587"); text that is not a URL comes back unchanged.
std::string RedactUrlCredentials(std::string_view url);

/// `value` quoted for a log line or error message: control characters, quotes and bytes that
/// are not printable ASCII as \xNN escapes, and cut after `max` bytes with the full length
/// noted ("\"abc…\" (1048576 bytes)"), so that a huge or hostile value never reaches a log or
/// a client whole.
std::string QuoteForLog(std::string_view value, size_t max = 64);

}  // namespace wasentinel
