// The Prometheus /metrics endpoint of a service (prometheus-cpp's civetweb Exposer).
#pragma once

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace spdlog {
class logger;
}

namespace wasentinel {

/// Serves `registry` on `listen` ("host:port"; port 0 picks one) at /metrics. nullptr (no
/// exposer) when `listen` is empty; UNAVAILABLE when the address cannot be bound.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> ServeMetrics(
    const std::string& listen, const std::shared_ptr<prometheus::Registry>& registry,
    spdlog::logger& log);

}  // namespace wasentinel
