// session-service: keeps WhatsApp Web linked-device sessions connected (see src/app.h).
//
// Every flag has a WAS_ environment fallback (flag > environment > default).
#include <cstdlib>
#include <iostream>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "app.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/process.h"

ABSL_FLAG(std::string, grpc_listen, wasentinel::EnvOr("WAS_GRPC_LISTEN", "0.0.0.0:7001"),
          "gRPC address [WAS_GRPC_LISTEN]");
ABSL_FLAG(std::string, metrics_listen, wasentinel::EnvOr("WAS_METRICS_LISTEN", "0.0.0.0:9101"),
          "Prometheus /metrics address; empty disables [WAS_METRICS_LISTEN]");
ABSL_FLAG(std::string, database_url, wasentinel::EnvOr("WAS_DATABASE_URL", ""),
          "PostgreSQL URL [WAS_DATABASE_URL]");
ABSL_FLAG(std::string, auth_state_key, wasentinel::EnvOr("WAS_AUTH_STATE_KEY", ""),
          "sealing keys for stored credentials: KEY or ID:KEY[,ID:KEY] (first seals; 64 hex or "
          "base64 of 32 bytes) [WAS_AUTH_STATE_KEY]");
ABSL_FLAG(std::string, wa_url, wasentinel::EnvOr("WAS_WA_URL", "wss://web.whatsapp.com/ws/chat"),
          "WhatsApp WebSocket URL [WAS_WA_URL]");
ABSL_FLAG(std::string, wa_root_key, wasentinel::EnvOr("WAS_WA_ROOT_KEY", ""),
          "hex of the Noise certificate root public key; default WhatsApp's [WAS_WA_ROOT_KEY]");
ABSL_FLAG(std::string, keepalive_interval, wasentinel::EnvOr("WAS_KEEPALIVE_INTERVAL", "20s,30s"),
          "ping interval range MIN,MAX [WAS_KEEPALIVE_INTERVAL]");
ABSL_FLAG(std::string, keepalive_timeout, wasentinel::EnvOr("WAS_KEEPALIVE_TIMEOUT", "10s"),
          "wait for a ping answer [WAS_KEEPALIVE_TIMEOUT]");
ABSL_FLAG(std::string, keepalive_max_silence, wasentinel::EnvOr("WAS_KEEPALIVE_MAX_SILENCE", "3m"),
          "give a connection up after no ping answered this long [WAS_KEEPALIVE_MAX_SILENCE]");
ABSL_FLAG(std::string, connect_timeout, wasentinel::EnvOr("WAS_CONNECT_TIMEOUT", "20s"),
          "connect + handshake + login [WAS_CONNECT_TIMEOUT]");
ABSL_FLAG(std::string, reconnect_backoff, wasentinel::EnvOr("WAS_RECONNECT_BACKOFF", "5s,15s,45s"),
          "delays before the retries after a drop [WAS_RECONNECT_BACKOFF]");
ABSL_FLAG(double, restore_per_second,
          std::atof(wasentinel::EnvOr("WAS_RESTORE_PER_SECOND", "20").c_str()),
          "start-up restores per second, 0 = no limit [WAS_RESTORE_PER_SECOND]");
ABSL_FLAG(std::string, shutdown_timeout, wasentinel::EnvOr("WAS_SHUTDOWN_TIMEOUT", "10s"),
          "drain deadline on SIGTERM [WAS_SHUTDOWN_TIMEOUT]");
ABSL_FLAG(std::string, event_retention, wasentinel::EnvOr("WAS_EVENT_RETENTION", "720h"),
          "session events older than this are pruned [WAS_EVENT_RETENTION]");
ABSL_FLAG(std::string, api_keys, wasentinel::EnvOr("WAS_API_KEYS", ""),
          "API keys NAME:SCOPE:KEY,... (scope read|operate|admin); empty: no authentication"
          " [WAS_API_KEYS]");
ABSL_FLAG(std::string, tls_cert, wasentinel::EnvOr("WAS_TLS_CERT", ""),
          "gRPC TLS certificate chain (PEM file); empty: plaintext [WAS_TLS_CERT]");
ABSL_FLAG(std::string, tls_key, wasentinel::EnvOr("WAS_TLS_KEY", ""),
          "gRPC TLS private key (PEM file) [WAS_TLS_KEY]");
ABSL_FLAG(std::string, tls_client_ca, wasentinel::EnvOr("WAS_TLS_CLIENT_CA", ""),
          "require client certificates signed by this CA (PEM file; mTLS) [WAS_TLS_CLIENT_CA]");
ABSL_FLAG(std::string, replica_id, wasentinel::EnvOr("WAS_REPLICA_ID", ""),
          "this replica's name in leases and deep health; default hostname-pid [WAS_REPLICA_ID]");
ABSL_FLAG(std::string, advertise_address, wasentinel::EnvOr("WAS_ADVERTISE_ADDRESS", ""),
          "host:port other replicas reach this one's gRPC at, for forwarded calls; default"
          " hostname and the --grpc_listen port [WAS_ADVERTISE_ADDRESS]");
ABSL_FLAG(std::string, lease_ttl, wasentinel::EnvOr("WAS_LEASE_TTL", "30s"),
          "session lease time-to-live: a dead replica's sessions move after it; renewed every"
          " third of it [WAS_LEASE_TTL]");
ABSL_FLAG(bool, reseal_on_start, wasentinel::EnvOr("WAS_RESEAL_ON_START", "false") == "true",
          "re-seal all credentials under the first key of --auth_state_key at start-up"
          " [WAS_RESEAL_ON_START]");
ABSL_FLAG(std::string, qr_timeouts, wasentinel::EnvOr("WAS_QR_TIMEOUTS", "60s,20s"),
          "how long the first and each later pairing QR code is shown [WAS_QR_TIMEOUTS]");
ABSL_FLAG(std::string, log_level, wasentinel::EnvOr("WAS_LOG_LEVEL", "info"),
          "trace … off [WAS_LOG_LEVEL]");

namespace {

// A "A[,B]" pair of durations (B defaults to A), exiting with a usage error otherwise.
std::pair<absl::Duration, absl::Duration> DurationPairFlag(const std::string& name,
                                                           const std::string& text,
                                                           const char* shape) {
  auto steps = wasentinel::Backoff::ParseSteps(text);
  if (!steps.ok() || steps->empty() || steps->size() > 2) {
    std::cerr << "session-service: --" << name << " wants " << shape << " durations\n";
    std::exit(2);
  }
  return {steps->front(), steps->back()};
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("session-service: keeps WhatsApp Web sessions connected");
  absl::ParseCommandLine(argc, argv);
  using namespace wasentinel;
  DisableMutexDeadlockDetection();

  BlockStopSignals();  // before any thread starts; main waits for them below

  session::Options o;
  o.grpc_listen = absl::GetFlag(FLAGS_grpc_listen);
  o.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  o.database_url = absl::GetFlag(FLAGS_database_url);
  o.auth_state_keys = absl::GetFlag(FLAGS_auth_state_key);
  o.log_level = absl::GetFlag(FLAGS_log_level);
  o.api_keys = absl::GetFlag(FLAGS_api_keys);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  o.replica_id = absl::GetFlag(FLAGS_replica_id);
  o.reseal_on_start = absl::GetFlag(FLAGS_reseal_on_start);
  o.advertise_address = absl::GetFlag(FLAGS_advertise_address);
  o.manager.lease_ttl = DurationFlag("lease_ttl", absl::GetFlag(FLAGS_lease_ttl));
  if (o.manager.lease_ttl < absl::Seconds(1)) {
    std::cerr << "session-service: --lease_ttl must be at least 1s\n";
    return 2;
  }
  auto& c = o.manager.connection;
  c.url = absl::GetFlag(FLAGS_wa_url);
  if (auto hex = absl::GetFlag(FLAGS_wa_root_key); !hex.empty()) {
    auto key = HexDecode(hex);
    if (!key.ok() || key->size() != 32) {
      std::cerr << "session-service: --wa_root_key must be 64 hex digits\n";
      return 2;
    }
    std::copy(key->begin(), key->end(), c.root_key.begin());
  }
  std::tie(c.keepalive_interval_min, c.keepalive_interval_max) =
      DurationPairFlag("keepalive_interval", absl::GetFlag(FLAGS_keepalive_interval), "MIN[,MAX]");
  c.keepalive_response_timeout =
      DurationFlag("keepalive_timeout", absl::GetFlag(FLAGS_keepalive_timeout));
  c.keepalive_max_silence =
      DurationFlag("keepalive_max_silence", absl::GetFlag(FLAGS_keepalive_max_silence));
  c.connect_timeout = DurationFlag("connect_timeout", absl::GetFlag(FLAGS_connect_timeout));
  std::tie(c.qr_first_timeout, c.qr_next_timeout) =
      DurationPairFlag("qr_timeouts", absl::GetFlag(FLAGS_qr_timeouts), "FIRST[,NEXT]");
  o.manager.backoff = DurationListFlag("reconnect_backoff", absl::GetFlag(FLAGS_reconnect_backoff));
  o.manager.restore_per_second = absl::GetFlag(FLAGS_restore_per_second);
  o.event_retention = DurationFlag("event_retention", absl::GetFlag(FLAGS_event_retention));
  const absl::Duration drain =
      DurationFlag("shutdown_timeout", absl::GetFlag(FLAGS_shutdown_timeout));

  wasentinel::RaiseFileLimit();
  auto app = session::App::Create(o);
  if (!app.ok()) {
    std::cerr << "session-service: " << app.status().ToString() << "\n";
    return 1;
  }
  if (auto st = (*app)->Start(); !st.ok()) {
    std::cerr << "session-service: start-up restore failed: " << st.ToString() << "\n";
    return 1;
  }
  WaitForStopSignal();
  (*app)->Shutdown(drain);
  return 0;
}
