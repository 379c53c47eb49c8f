// health-monitor: watches every session through session-service's API, classifies, scores,
// recovers and alerts (see src/monitor_app.h).
//
// Every flag has a WAS_ environment fallback (flag > environment > default).
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "monitor_app.h"
#include "wasentinel/common/config.h"
#include "wasentinel/common/daemon.h"

WAS_DEFINE_RUNTIME_FLAGS("0.0.0.0:7002", "0.0.0.0:9102");
ABSL_FLAG(std::string, session_service, "127.0.0.1:7001",
          "session-service gRPC address [WAS_SESSION_SERVICE]");
ABSL_FLAG(std::string, session_service_api_key, "",
          "key for session-service (scopes read + operate) [WAS_SESSION_SERVICE_API_KEY]");
ABSL_FLAG(std::string, alert_service, "",
          "alert-service gRPC address; empty: alerts are only logged [WAS_ALERT_SERVICE]");
ABSL_FLAG(std::string, alert_service_api_key, "",
          "key for alert-service (scope operate) [WAS_ALERT_SERVICE_API_KEY]");
ABSL_FLAG(std::string, upstream_ca, "",
          "CA (PEM file) for TLS to session-service and alert-service, presenting --tls_cert and"
          " --tls_key as the client certificate; empty: plaintext [WAS_UPSTREAM_CA]");
ABSL_FLAG(absl::Duration, light_interval, absl::Seconds(30),
          "light check (GetHealth) period [WAS_LIGHT_INTERVAL]");
ABSL_FLAG(absl::Duration, deep_interval, absl::Minutes(5),
          "deep check (GetDeepHealth) period [WAS_DEEP_INTERVAL]");
ABSL_FLAG(absl::Duration, fast_interval, absl::Seconds(5),
          "light check period while session-service is young [WAS_FAST_INTERVAL]");
ABSL_FLAG(absl::Duration, fast_while_younger_than, absl::Seconds(60),
          "session-service counts as young until this uptime [WAS_FAST_WHILE_YOUNGER_THAN]");
ABSL_FLAG(std::string, unreachable_backoff, "5s,10s,30s",
          "light-check retries while session-service does not answer; the last repeats"
          " [WAS_UNREACHABLE_BACKOFF]");
ABSL_FLAG(absl::Duration, critical_after, absl::Hours(6),
          "offline this long is CRITICAL and alerted session.critical [WAS_CRITICAL_AFTER]");
ABSL_FLAG(absl::Duration, warning_after, absl::Minutes(5),
          "offline this long is alerted session.warning [WAS_WARNING_AFTER]");
ABSL_FLAG(absl::Duration, phone_inactive_warning_after, absl::Hours(24 * 12),
          "the account's phone unseen this long is alerted session.phone_inactive (WARNING)"
          " [WAS_PHONE_INACTIVE_WARNING_AFTER]");
ABSL_FLAG(absl::Duration, phone_inactive_critical_after, absl::Hours(24 * 13),
          "... and this long CRITICAL; WhatsApp unlinks devices after about 14 days"
          " [WAS_PHONE_INACTIVE_CRITICAL_AFTER]");
ABSL_FLAG(absl::Duration, reconnect_after, absl::Minutes(3),
          "offline this long with no retry under way → Reconnect; also the least spacing of"
          " such reconnects [WAS_RECONNECT_AFTER]");
ABSL_FLAG(absl::Duration, inbound_silence, absl::Minutes(30),
          "no inbound traffic this long on a connected session → probe it [WAS_INBOUND_SILENCE]");
ABSL_FLAG(int, max_recoveries, 3,
          "recovery attempts per session per --recovery_window [WAS_MAX_RECOVERIES]");
ABSL_FLAG(absl::Duration, recovery_window, absl::Hours(1),
          "sliding window of --max_recoveries [WAS_RECOVERY_WINDOW]");
ABSL_FLAG(absl::Duration, history_retention, absl::Hours(2160),
          "transitions, recoveries and resolved alerts older than this are pruned daily"
          " [WAS_HISTORY_RETENTION]");
ABSL_FLAG(absl::Duration, leader_poll, absl::Seconds(2),
          "how often a standby tries to lead [WAS_LEADER_POLL]");
ABSL_FLAG(absl::Duration, call_timeout, absl::Seconds(10),
          "deadline of calls to session-service and alert-service [WAS_CALL_TIMEOUT]");
ABSL_FLAG(std::string, watch_backoff, "5s,10s,30s",
          "pauses before the event watch is resumed; the last repeats [WAS_WATCH_BACKOFF]");

namespace wasentinel::monitor {
namespace {

// The service's own flags, checked (exit 2 naming a bad one: config.h).
Options ReadFlags(RuntimeOptions runtime) {
  Options o;
  o.runtime = std::move(runtime);
  o.session_service = config::Address(FLAGS_session_service);
  o.session_service_api_key = absl::GetFlag(FLAGS_session_service_api_key);
  o.alert_service = config::Address(FLAGS_alert_service, /*empty_allowed=*/true);
  o.alert_service_api_key = absl::GetFlag(FLAGS_alert_service_api_key);
  o.upstream_ca_file = absl::GetFlag(FLAGS_upstream_ca);
  const absl::Duration week = absl::Hours(24 * 7);
  o.light_interval = config::DurationIn(FLAGS_light_interval, absl::Milliseconds(100), week);
  o.deep_interval = config::DurationIn(FLAGS_deep_interval, absl::Milliseconds(100), week);
  o.fast_interval = config::DurationIn(FLAGS_fast_interval, absl::Milliseconds(100), week);
  o.fast_while_younger_than =
      config::DurationIn(FLAGS_fast_while_younger_than, absl::ZeroDuration(), week);
  o.unreachable_backoff =
      config::DurationList(FLAGS_unreachable_backoff, absl::Milliseconds(100), absl::Hours(1));
  o.watch_pauses =
      config::DurationList(FLAGS_watch_backoff, absl::Milliseconds(100), absl::Hours(1));
  auto& p = o.policy;
  p.critical_after = config::DurationIn(FLAGS_critical_after, absl::Seconds(1), week * 52);
  p.warning_after = config::DurationIn(FLAGS_warning_after, absl::ZeroDuration(), week * 52);
  p.reconnect_after = config::DurationIn(FLAGS_reconnect_after, absl::ZeroDuration(), week);
  p.inbound_silence = config::DurationIn(FLAGS_inbound_silence, absl::Seconds(1), week);
  p.recovery_window = config::DurationIn(FLAGS_recovery_window, absl::Seconds(1), week);
  p.max_recoveries = config::IntIn(FLAGS_max_recoveries, 0, 1000);
  if (p.warning_after > p.critical_after) {
    config::RefuseConfig(absl::StrCat(config::Source(config::Handle(FLAGS_warning_after)),
                                      " is longer than ",
                                      config::Source(config::Handle(FLAGS_critical_after))));
  }
  p.phone_inactive_warning_after =
      config::DurationIn(FLAGS_phone_inactive_warning_after, absl::Seconds(1), week * 52);
  p.phone_inactive_critical_after =
      config::DurationIn(FLAGS_phone_inactive_critical_after, absl::Seconds(1), week * 52);
  if (p.phone_inactive_warning_after > p.phone_inactive_critical_after) {
    config::RefuseConfig(absl::StrCat(
        config::Source(config::Handle(FLAGS_phone_inactive_warning_after)), " is longer than ",
        config::Source(config::Handle(FLAGS_phone_inactive_critical_after))));
  }
  o.history_retention =
      config::DurationIn(FLAGS_history_retention, absl::Hours(1), absl::Hours(24 * 3650));
  o.leader_poll = config::DurationIn(FLAGS_leader_poll, absl::Milliseconds(100), absl::Minutes(5));
  o.call_timeout =
      config::DurationIn(FLAGS_call_timeout, absl::Milliseconds(100), absl::Minutes(10));
  return o;
}

}  // namespace
}  // namespace wasentinel::monitor

int main(int argc, char** argv) {
  return wasentinel::DaemonMain<wasentinel::monitor::App>(
      argc, argv, "health-monitor: classifies, scores, recovers and alerts on WhatsApp sessions",
      wasentinel::monitor::ReadFlags);
}
