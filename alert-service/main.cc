// alert-service: delivers every alert, at least once, by e-mail and signed webhooks from a
// durable outbox (see src/alert_app.h).
//
// Every flag has a WAS_ environment fallback (flag > environment > default).
#include <cstdlib>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "alert_app.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/process.h"

using wasentinel::EnvOr;

ABSL_FLAG(std::string, grpc_listen, EnvOr("WAS_GRPC_LISTEN", "0.0.0.0:7003"),
          "gRPC address [WAS_GRPC_LISTEN]");
ABSL_FLAG(std::string, metrics_listen, EnvOr("WAS_METRICS_LISTEN", "0.0.0.0:9103"),
          "Prometheus /metrics address; empty disables [WAS_METRICS_LISTEN]");
ABSL_FLAG(std::string, database_url, EnvOr("WAS_DATABASE_URL", ""),
          "PostgreSQL URL [WAS_DATABASE_URL]");
ABSL_FLAG(std::string, secret_key, EnvOr("WAS_SECRET_KEY", ""),
          "sealing keys for webhook secrets: KEY or ID:KEY[,ID:KEY] (first seals; 64 hex or "
          "base64 of 32 bytes) [WAS_SECRET_KEY]");
ABSL_FLAG(std::string, api_keys, EnvOr("WAS_API_KEYS", ""),
          "API keys NAME:SCOPE:KEY,... (scope read|operate|admin); empty: no authentication"
          " [WAS_API_KEYS]");
ABSL_FLAG(std::string, tls_cert, EnvOr("WAS_TLS_CERT", ""),
          "gRPC TLS certificate chain (PEM file); empty: plaintext [WAS_TLS_CERT]");
ABSL_FLAG(std::string, tls_key, EnvOr("WAS_TLS_KEY", ""), "gRPC TLS private key [WAS_TLS_KEY]");
ABSL_FLAG(std::string, tls_client_ca, EnvOr("WAS_TLS_CLIENT_CA", ""),
          "require client certificates signed by this CA (mTLS) [WAS_TLS_CLIENT_CA]");
ABSL_FLAG(std::string, replica_id, EnvOr("WAS_REPLICA_ID", ""),
          "this replica's name in delivery claims; default hostname-pid [WAS_REPLICA_ID]");
ABSL_FLAG(std::string, alert_recipients, EnvOr("WAS_ALERT_RECIPIENTS", ""),
          "e-mail addresses told of every alert besides each session's owner, comma-separated"
          " [WAS_ALERT_RECIPIENTS]");
ABSL_FLAG(
    bool, allow_private_targets, EnvOr("WAS_ALLOW_PRIVATE_TARGETS", "false") == "true",
    "webhooks may go to http:// and private or loopback addresses [WAS_ALLOW_PRIVATE_TARGETS]");
ABSL_FLAG(std::string, webhook_ca, EnvOr("WAS_WEBHOOK_CA", ""),
          "PEM roots for https webhook receivers; default the system's [WAS_WEBHOOK_CA]");
ABSL_FLAG(int, dispatchers, std::atoi(EnvOr("WAS_DISPATCHERS", "4").c_str()),
          "dispatcher threads; 0: this replica only answers calls [WAS_DISPATCHERS]");
ABSL_FLAG(std::string, webhook_timeout, EnvOr("WAS_WEBHOOK_TIMEOUT", "10s"),
          "deadline of one webhook request [WAS_WEBHOOK_TIMEOUT]");
ABSL_FLAG(std::string, claim_lease, EnvOr("WAS_CLAIM_LEASE", "0s"),
          "a dispatcher's claim on a delivery; after a crash its deliveries go out again once"
          " their claims expire; 0s: 3 x --webhook_timeout, at least 1m [WAS_CLAIM_LEASE]");
ABSL_FLAG(std::string, delivery_backoff, EnvOr("WAS_DELIVERY_BACKOFF", "10s,30s,2m,10m,30m,1h,3h"),
          "waits before attempts 2, 3, …; after the last, a failed delivery is dead"
          " [WAS_DELIVERY_BACKOFF]");
ABSL_FLAG(std::string, smtp_url, EnvOr("WAS_SMTP_URL", ""),
          "SMTP server: smtp://host:587 (STARTTLS when offered) or smtps://host:465; empty: no"
          " e-mail [WAS_SMTP_URL]");
ABSL_FLAG(std::string, smtp_username, EnvOr("WAS_SMTP_USERNAME", ""),
          "SMTP AUTH user [WAS_SMTP_USERNAME]");
ABSL_FLAG(std::string, smtp_password, EnvOr("WAS_SMTP_PASSWORD", ""),
          "SMTP AUTH password (prefer the environment variable) [WAS_SMTP_PASSWORD]");
ABSL_FLAG(bool, smtp_require_tls, EnvOr("WAS_SMTP_REQUIRE_TLS", "false") == "true",
          "refuse to send unless STARTTLS or smtps protects the session [WAS_SMTP_REQUIRE_TLS]");
ABSL_FLAG(std::string, smtp_ca, EnvOr("WAS_SMTP_CA", ""),
          "PEM roots for the SMTP server's certificate; default the system's [WAS_SMTP_CA]");
ABSL_FLAG(std::string, smtp_from,
          EnvOr("WAS_SMTP_FROM", "WA Sentinel <alerts@wa-sentinel.invalid>"),
          "From: of alert e-mails [WAS_SMTP_FROM]");
ABSL_FLAG(std::string, smtp_timeout, EnvOr("WAS_SMTP_TIMEOUT", "30s"),
          "deadline of one SMTP transaction [WAS_SMTP_TIMEOUT]");
ABSL_FLAG(int, emails_per_recipient_per_hour,
          std::atoi(EnvOr("WAS_EMAILS_PER_RECIPIENT_PER_HOUR", "20").c_str()),
          "alert e-mails to one address per hour at most (0: no limit); beyond, they wait"
          " [WAS_EMAILS_PER_RECIPIENT_PER_HOUR]");
ABSL_FLAG(double, webhook_rate_per_second,
          std::atof(EnvOr("WAS_WEBHOOK_RATE_PER_SECOND", "50").c_str()),
          "webhooks per second to one endpoint unless it sets its own (0: no limit)"
          " [WAS_WEBHOOK_RATE_PER_SECOND]");
ABSL_FLAG(std::string, reminder_interval, EnvOr("WAS_REMINDER_INTERVAL", "0s"),
          "re-notify critical alerts still open this long after their last notification;"
          " 0s: off [WAS_REMINDER_INTERVAL]");
ABSL_FLAG(std::string, reconnect_url, EnvOr("WAS_RECONNECT_URL", ""),
          "a page where a person reconnects a session, linked from e-mails; {session_id} is"
          " replaced [WAS_RECONNECT_URL]");
ABSL_FLAG(std::string, template_dir, EnvOr("WAS_TEMPLATE_DIR", ""),
          "alert.txt.mustache and alert.html.mustache from here; default the built-in ones"
          " [WAS_TEMPLATE_DIR]");
ABSL_FLAG(std::string, shutdown_timeout, EnvOr("WAS_SHUTDOWN_TIMEOUT", "10s"),
          "deadline on SIGTERM [WAS_SHUTDOWN_TIMEOUT]");
ABSL_FLAG(std::string, log_level, EnvOr("WAS_LOG_LEVEL", "info"), "trace … off [WAS_LOG_LEVEL]");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("alert-service: delivers alerts by e-mail and signed webhooks");
  absl::ParseCommandLine(argc, argv);
  using namespace wasentinel;
  DisableMutexDeadlockDetection();
  BlockStopSignals();  // before any thread starts; main waits for them below

  alert::Options o;
  o.grpc_listen = absl::GetFlag(FLAGS_grpc_listen);
  o.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  o.database_url = absl::GetFlag(FLAGS_database_url);
  o.secret_keys = absl::GetFlag(FLAGS_secret_key);
  o.api_keys = absl::GetFlag(FLAGS_api_keys);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  o.replica_id = absl::GetFlag(FLAGS_replica_id);
  for (auto r : absl::StrSplit(absl::GetFlag(FLAGS_alert_recipients), ',', absl::SkipEmpty())) {
    o.recipients.emplace_back(r);
  }
  o.allow_private_targets = absl::GetFlag(FLAGS_allow_private_targets);
  o.webhook_ca_file = absl::GetFlag(FLAGS_webhook_ca);
  o.dispatcher_threads = absl::GetFlag(FLAGS_dispatchers);
  if (o.dispatcher_threads < 0 || o.dispatcher_threads > 64) {
    std::cerr
        << "alert-service: --dispatchers must be 0..64 (0: this replica only answers calls)\n";
    return 2;
  }
  o.webhook_timeout =
      DurationFlag("webhook_timeout", absl::GetFlag(FLAGS_webhook_timeout), /*positive=*/true);
  o.claim_lease = DurationFlag("claim_lease", absl::GetFlag(FLAGS_claim_lease));  // 0: default
  o.backoff = DurationListFlag("delivery_backoff", absl::GetFlag(FLAGS_delivery_backoff));
  o.smtp.url = absl::GetFlag(FLAGS_smtp_url);
  o.smtp.username = absl::GetFlag(FLAGS_smtp_username);
  o.smtp.password = absl::GetFlag(FLAGS_smtp_password);
  o.smtp.require_tls = absl::GetFlag(FLAGS_smtp_require_tls);
  o.smtp.ca_file = absl::GetFlag(FLAGS_smtp_ca);
  o.smtp.from = absl::GetFlag(FLAGS_smtp_from);
  o.smtp.timeout =
      DurationFlag("smtp_timeout", absl::GetFlag(FLAGS_smtp_timeout), /*positive=*/true);
  o.smtp.reconnect_url = absl::GetFlag(FLAGS_reconnect_url);
  o.emails_per_recipient_per_hour = absl::GetFlag(FLAGS_emails_per_recipient_per_hour);
  o.template_dir = absl::GetFlag(FLAGS_template_dir);
  o.reminder_interval =
      DurationFlag("reminder_interval", absl::GetFlag(FLAGS_reminder_interval));  // 0: off
  o.webhook_rate_per_second = absl::GetFlag(FLAGS_webhook_rate_per_second);
  if (o.webhook_rate_per_second < 0) {
    std::cerr << "alert-service: --webhook_rate_per_second must be 0 or more\n";
    return 2;
  }
  o.log_level = absl::GetFlag(FLAGS_log_level);
  const absl::Duration drain =
      DurationFlag("shutdown_timeout", absl::GetFlag(FLAGS_shutdown_timeout), /*positive=*/true);

  auto app = alert::App::Create(o);
  if (!app.ok()) {
    std::cerr << "alert-service: " << app.status().ToString() << "\n";
    return 1;
  }
  WaitForStopSignal();
  (*app)->Shutdown(drain);
  return 0;
}
