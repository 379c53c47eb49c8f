#include "wasentinel/common/daemon.h"

#include "wasentinel/common/config.h"

namespace wasentinel::daemon_internal {

RuntimeOptions RuntimeFlags() {
  RuntimeOptions o;
  o.grpc_listen = config::Address(FLAGS_grpc_listen);
  o.metrics_listen = config::Address(FLAGS_metrics_listen, /*empty_allowed=*/true);
  o.database_url = config::Required(FLAGS_database_url, "a PostgreSQL URL");
  o.api_keys = absl::GetFlag(FLAGS_api_keys);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  o.replica_id = absl::GetFlag(FLAGS_replica_id);
  o.log_level = config::LogLevel(FLAGS_log_level);
  return o;
}

absl::Duration ShutdownTimeout() {
  return config::DurationIn(FLAGS_shutdown_timeout, absl::ZeroDuration(), absl::Hours(1));
}

}  // namespace wasentinel::daemon_internal
