// health-monitor: watches every session through session-service's API, classifies, scores,
// recovers and alerts (see src/app.h).
//
// Every flag has a WAS_ environment fallback (flag > environment > default).
#include <cstdlib>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "monitor_app.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/process.h"

using wasentinel::EnvOr;

ABSL_FLAG(std::string, grpc_listen, EnvOr("WAS_GRPC_LISTEN", "0.0.0.0:7002"),
          "gRPC address [WAS_GRPC_LISTEN]");
ABSL_FLAG(std::string, metrics_listen, EnvOr("WAS_METRICS_LISTEN", "0.0.0.0:9102"),
          "Prometheus /metrics address; empty disables [WAS_METRICS_LISTEN]");
ABSL_FLAG(std::string, database_url, EnvOr("WAS_DATABASE_URL", ""),
          "PostgreSQL URL [WAS_DATABASE_URL]");
ABSL_FLAG(std::string, api_keys, EnvOr("WAS_API_KEYS", ""),
          "API keys of this API, NAME:SCOPE:KEY,... (scope read|operate|admin); empty: no"
          " authentication [WAS_API_KEYS]");
ABSL_FLAG(std::string, session_service, EnvOr("WAS_SESSION_SERVICE", "127.0.0.1:7001"),
          "session-service gRPC address [WAS_SESSION_SERVICE]");
ABSL_FLAG(std::string, session_service_api_key, EnvOr("WAS_SESSION_SERVICE_API_KEY", ""),
          "key for session-service (scopes read + operate) [WAS_SESSION_SERVICE_API_KEY]");
ABSL_FLAG(std::string, alert_service, EnvOr("WAS_ALERT_SERVICE", ""),
          "alert-service gRPC address; empty: alerts are only logged [WAS_ALERT_SERVICE]");
ABSL_FLAG(std::string, alert_service_api_key, EnvOr("WAS_ALERT_SERVICE_API_KEY", ""),
          "key for alert-service (scope operate) [WAS_ALERT_SERVICE_API_KEY]");
ABSL_FLAG(std::string, tls_cert, EnvOr("WAS_TLS_CERT", ""),
          "gRPC TLS certificate chain (PEM file); also the client certificate upstream"
          " [WAS_TLS_CERT]");
ABSL_FLAG(std::string, tls_key, EnvOr("WAS_TLS_KEY", ""),
          "gRPC TLS private key (PEM file) [WAS_TLS_KEY]");
ABSL_FLAG(std::string, tls_client_ca, EnvOr("WAS_TLS_CLIENT_CA", ""),
          "require client certificates signed by this CA (PEM file; mTLS) [WAS_TLS_CLIENT_CA]");
ABSL_FLAG(std::string, upstream_ca, EnvOr("WAS_UPSTREAM_CA", ""),
          "CA (PEM file) for TLS to session-service and alert-service; empty: plaintext"
          " [WAS_UPSTREAM_CA]");
ABSL_FLAG(std::string, replica_id, EnvOr("WAS_REPLICA_ID", ""),
          "this replica's name in leader election; default hostname-pid [WAS_REPLICA_ID]");
ABSL_FLAG(std::string, light_interval, EnvOr("WAS_LIGHT_INTERVAL", "30s"),
          "light check (GetHealth) period [WAS_LIGHT_INTERVAL]");
ABSL_FLAG(std::string, deep_interval, EnvOr("WAS_DEEP_INTERVAL", "5m"),
          "deep check (GetDeepHealth) period [WAS_DEEP_INTERVAL]");
ABSL_FLAG(std::string, fast_interval, EnvOr("WAS_FAST_INTERVAL", "5s"),
          "light check period while session-service is young [WAS_FAST_INTERVAL]");
ABSL_FLAG(std::string, fast_while_younger_than, EnvOr("WAS_FAST_WHILE_YOUNGER_THAN", "60s"),
          "session-service counts as young until this uptime [WAS_FAST_WHILE_YOUNGER_THAN]");
ABSL_FLAG(std::string, unreachable_backoff, EnvOr("WAS_UNREACHABLE_BACKOFF", "5s,10s,30s"),
          "light-check retries while session-service does not answer; the last repeats"
          " [WAS_UNREACHABLE_BACKOFF]");
ABSL_FLAG(std::string, critical_after, EnvOr("WAS_CRITICAL_AFTER", "6h"),
          "offline this long is CRITICAL and alerted session.critical [WAS_CRITICAL_AFTER]");
ABSL_FLAG(std::string, warning_after, EnvOr("WAS_WARNING_AFTER", "5m"),
          "offline this long is alerted session.warning [WAS_WARNING_AFTER]");
ABSL_FLAG(std::string, reconnect_after, EnvOr("WAS_RECONNECT_AFTER", "3m"),
          "offline this long with no retry under way → Reconnect; also the least spacing of"
          " such reconnects [WAS_RECONNECT_AFTER]");
ABSL_FLAG(std::string, inbound_silence, EnvOr("WAS_INBOUND_SILENCE", "30m"),
          "no inbound traffic this long on a connected session → probe it [WAS_INBOUND_SILENCE]");
ABSL_FLAG(int, max_recoveries, std::atoi(EnvOr("WAS_MAX_RECOVERIES", "3").c_str()),
          "recovery attempts per session per --recovery_window [WAS_MAX_RECOVERIES]");
ABSL_FLAG(std::string, recovery_window, EnvOr("WAS_RECOVERY_WINDOW", "1h"),
          "sliding window of --max_recoveries [WAS_RECOVERY_WINDOW]");
ABSL_FLAG(std::string, history_retention, EnvOr("WAS_HISTORY_RETENTION", "2160h"),
          "transitions, recoveries and resolved alerts older than this are pruned daily"
          " [WAS_HISTORY_RETENTION]");
ABSL_FLAG(std::string, leader_poll, EnvOr("WAS_LEADER_POLL", "2s"),
          "how often a standby tries to lead [WAS_LEADER_POLL]");
ABSL_FLAG(std::string, call_timeout, EnvOr("WAS_CALL_TIMEOUT", "10s"),
          "deadline of calls to session-service and alert-service [WAS_CALL_TIMEOUT]");
ABSL_FLAG(std::string, watch_backoff, EnvOr("WAS_WATCH_BACKOFF", "5s,10s,30s"),
          "pauses before the event watch is resumed; the last repeats [WAS_WATCH_BACKOFF]");
ABSL_FLAG(std::string, shutdown_timeout, EnvOr("WAS_SHUTDOWN_TIMEOUT", "10s"),
          "deadline on SIGTERM [WAS_SHUTDOWN_TIMEOUT]");
ABSL_FLAG(std::string, log_level, EnvOr("WAS_LOG_LEVEL", "info"), "trace … off [WAS_LOG_LEVEL]");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "health-monitor: classifies, scores, recovers and alerts on WhatsApp sessions");
  absl::ParseCommandLine(argc, argv);
  using namespace wasentinel;
  DisableMutexDeadlockDetection();

  BlockStopSignals();  // before any thread starts; main waits for them below

  monitor::Options o;
  o.grpc_listen = absl::GetFlag(FLAGS_grpc_listen);
  o.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  o.database_url = absl::GetFlag(FLAGS_database_url);
  o.api_keys = absl::GetFlag(FLAGS_api_keys);
  o.session_service = absl::GetFlag(FLAGS_session_service);
  o.session_service_api_key = absl::GetFlag(FLAGS_session_service_api_key);
  o.alert_service = absl::GetFlag(FLAGS_alert_service);
  o.alert_service_api_key = absl::GetFlag(FLAGS_alert_service_api_key);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  o.upstream_ca_file = absl::GetFlag(FLAGS_upstream_ca);
  o.replica_id = absl::GetFlag(FLAGS_replica_id);
  o.log_level = absl::GetFlag(FLAGS_log_level);
  o.light_interval = DurationFlag("light_interval", absl::GetFlag(FLAGS_light_interval), true);
  o.deep_interval = DurationFlag("deep_interval", absl::GetFlag(FLAGS_deep_interval), true);
  o.fast_interval = DurationFlag("fast_interval", absl::GetFlag(FLAGS_fast_interval), true);
  o.fast_while_younger_than =
      DurationFlag("fast_while_younger_than", absl::GetFlag(FLAGS_fast_while_younger_than), false);
  o.unreachable_backoff =
      DurationListFlag("unreachable_backoff", absl::GetFlag(FLAGS_unreachable_backoff));
  o.watch_pauses = DurationListFlag("watch_backoff", absl::GetFlag(FLAGS_watch_backoff));
  auto& p = o.policy;
  p.critical_after = DurationFlag("critical_after", absl::GetFlag(FLAGS_critical_after), true);
  p.warning_after = DurationFlag("warning_after", absl::GetFlag(FLAGS_warning_after), false);
  p.reconnect_after = DurationFlag("reconnect_after", absl::GetFlag(FLAGS_reconnect_after), false);
  p.inbound_silence = DurationFlag("inbound_silence", absl::GetFlag(FLAGS_inbound_silence), true);
  p.recovery_window = DurationFlag("recovery_window", absl::GetFlag(FLAGS_recovery_window), true);
  p.max_recoveries = absl::GetFlag(FLAGS_max_recoveries);
  if (p.max_recoveries < 0) {
    std::cerr << "health-monitor: --max_recoveries must be 0 or more\n";
    return 2;
  }
  if (p.warning_after > p.critical_after) {
    std::cerr << "health-monitor: --warning_after is longer than --critical_after\n";
    return 2;
  }
  o.history_retention =
      DurationFlag("history_retention", absl::GetFlag(FLAGS_history_retention), true);
  o.leader_poll = DurationFlag("leader_poll", absl::GetFlag(FLAGS_leader_poll), true);
  o.call_timeout = DurationFlag("call_timeout", absl::GetFlag(FLAGS_call_timeout), true);
  const absl::Duration drain =
      DurationFlag("shutdown_timeout", absl::GetFlag(FLAGS_shutdown_timeout), false);

  auto app = monitor::App::Create(o);
  if (!app.ok()) {
    std::cerr << "health-monitor: " << app.status().ToString() << "\n";
    return 1;
  }
  (*app)->Start();
  WaitForStopSignal();
  (*app)->Shutdown(drain);
  return 0;
}
