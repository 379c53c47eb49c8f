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

}  // namespace wasentinel
