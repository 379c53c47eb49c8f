#include "wasentinel/common/metrics_exposer.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"

namespace wasentinel {

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> ServeMetrics(
    const std::string& listen, const std::shared_ptr<prometheus::Registry>& registry,
    spdlog::logger& log) {
  if (listen.empty()) return nullptr;
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  exposer->RegisterCollectable(registry);
  log.info("metrics on port {}", exposer->GetListeningPorts().front());
  return exposer;
}

}  // namespace wasentinel
