// was-health-probe: asks a gRPC server's grpc.health.v1 Check and exits with the answer, for
// container HEALTHCHECKs and scripts (Kubernetes uses its native gRPC probe instead).
//
//   was-health-probe [--addr=127.0.0.1:7001] [--service=NAME] [--timeout=2s] [--tls_ca=FILE]
//
// Exit status: 0 SERVING; 1 answered, but not SERVING (NOT_SERVING, UNKNOWN, or the service
// name is unknown); 2 no answer (unreachable, timed out, TLS failure) or a usage error. One line
// on stderr says why whenever the status is not 0.
#include <grpcpp/grpcpp.h>

#include <iostream>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "wasentinel/common/config.h"
#include "wasentinel/common/grpc_tls.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:7001", "host:port of the gRPC server to ask");
ABSL_FLAG(std::string, service, "", "service name to ask about; empty asks about the server");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(2), "deadline of the call");
ABSL_FLAG(std::string, tls_ca, "", "PEM roots to trust; TLS when set, plaintext otherwise");

int main(int argc, char** argv) {
  namespace config = wasentinel::config;
  config::ParseFlags(argc, argv, "Exits 0 when the gRPC server at --addr reports SERVING.");
  const absl::Duration timeout =
      config::DurationIn(FLAGS_timeout, absl::Milliseconds(1), absl::Minutes(10));
  auto creds = wasentinel::GrpcChannelCredentials(absl::GetFlag(FLAGS_tls_ca), "", "");
  if (!creds.ok()) {
    std::cerr << "was-health-probe: " << creds.status().message() << "\n";
    return 2;
  }
  const std::string addr = absl::GetFlag(FLAGS_addr);
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(addr, *creds));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse res;
  const grpc::Status st = stub->Check(&ctx, req, &res);
  if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
    std::cerr << "was-health-probe: " << addr << " does not know service \"" << req.service()
              << "\"\n";
    return 1;
  }
  if (!st.ok()) {
    std::cerr << "was-health-probe: " << addr << ": " << st.error_message() << "\n";
    return 2;
  }
  if (res.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    std::cerr << "was-health-probe: " << addr << " is "
              << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(res.status()) << "\n";
    return 1;
  }
  return 0;
}
