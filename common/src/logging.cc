#include "wasentinel/common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace wasentinel {

std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name, std::string_view level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ [%n] %v");
  return logger;
}

std::string MaskPhone(std::string_view phone) {
  std::string out(phone);
  if (out.size() <= 5) return std::string(out.size(), '*');
  for (size_t i = 3; i + 2 < out.size(); ++i) out[i] = '*';
  return out;
}

std::string MaskJid(std::string_view jid) {
  const size_t end = jid.find_first_of(".:@");
  if (end == 0 || end == std::string_view::npos) return std::string(jid);
  return MaskPhone(jid.substr(0, end)) + std::string(jid.substr(end));
}

std::string RedactUrlCredentials(std::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const size_t authority = scheme + 3;
  const size_t path = url.find_first_of("/?#", authority);
  const std::string_view host_part = url.substr(
      authority, path == std::string_view::npos ? std::string_view::npos : path - authority);
  const size_t at = host_part.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  std::string out(url.substr(0, authority));
  out += "***";
  out += url.substr(authority + at);
  return out;
}

std::string QuoteForLog(std::string_view value, size_t max) {
  std::string out = "\"";
  const std::string_view shown = value.substr(0, max);
  for (unsigned char c : shown) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (value.size() > max) out += fmt::format("… ({} bytes)", value.size());
  return out;
}

}  // namespace wasentinel
