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

}  // namespace wasentinel
