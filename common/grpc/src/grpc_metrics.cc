#include "wasentinel/common/grpc_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace wasentinel {
namespace {

using grpc::experimental::InterceptionHookPoints;

class Families {
 public:
  explicit Families(prometheus::Registry& registry)
      : calls_(prometheus::BuildCounter()
                   .Name("wasentinel_grpc_calls_total")
                   .Help("Finished gRPC calls, by method and status code")
                   .Register(registry)),
        in_flight_(prometheus::BuildGauge()
                       .Name("wasentinel_grpc_calls_in_flight")
                       .Help("gRPC calls started and not finished (open streams included)")
                       .Register(registry)) {}

  prometheus::Counter& Calls(const std::string& method, grpc::StatusCode code) {
    const std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    absl::MutexLock lock(&mu_);
    auto& slot = calls_by_key_[absl::StrCat(method, "|", name)];
    if (!slot) slot = &calls_.Add({{"method", method}, {"code", name}});
    return *slot;
  }
  prometheus::Gauge& InFlight(const std::string& method) {
    absl::MutexLock lock(&mu_);
    auto& slot = in_flight_by_method_[method];
    if (!slot) slot = &in_flight_.Add({{"method", method}});
    return *slot;
  }

 private:
  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Family<prometheus::Gauge>& in_flight_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, prometheus::Counter*> calls_by_key_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, prometheus::Gauge*> in_flight_by_method_ ABSL_GUARDED_BY(mu_);
};

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(Families& families, std::string method)
      : families_(families), method_(std::move(method)), in_flight_(families.InFlight(method_)) {
    in_flight_.Increment();
  }
  ~MetricsInterceptor() override { in_flight_.Decrement(); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      families_.Calls(method_, methods->GetSendStatus().error_code()).Increment();
    }
    methods->Proceed();
  }

 private:
  Families& families_;
  const std::string method_;
  prometheus::Gauge& in_flight_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(prometheus::Registry& registry) : families_(registry) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(families_, info->method() ? info->method() : "unknown");
  }

 private:
  Families families_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcMetricsInterceptor(
    prometheus::Registry& registry) {
  return std::make_unique<MetricsInterceptorFactory>(registry);
}

}  // namespace wasentinel
