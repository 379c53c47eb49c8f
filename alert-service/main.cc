// alert-service: delivers every alert, at least once, by e-mail and signed webhooks from a
// durable outbox (see src/alert_app.h).
//
// Every flag has a WAS_ environment fallback (flag > environment > default).
#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "alert_app.h"
#include "wasentinel/common/config.h"
#include "wasentinel/common/daemon.h"
#include "wasentinel/common/validation.h"

WAS_DEFINE_RUNTIME_FLAGS("0.0.0.0:7003", "0.0.0.0:9103");
ABSL_FLAG(std::string, secret_key, "",
          "sealing keys for webhook secrets: KEY or ID:KEY[,ID:KEY] (first seals; 64 hex or "
          "base64 of 32 bytes) [WAS_SECRET_KEY]");
ABSL_FLAG(std::string, alert_recipients, "",
          "e-mail addresses told of every alert besides each session's owner, comma-separated"
          " [WAS_ALERT_RECIPIENTS]");
ABSL_FLAG(
    bool, allow_private_targets, false,
    "webhooks may go to http:// and private or loopback addresses [WAS_ALLOW_PRIVATE_TARGETS]");
ABSL_FLAG(std::string, webhook_ca, "",
          "PEM roots for https webhook receivers; default the system's [WAS_WEBHOOK_CA]");
ABSL_FLAG(int, dispatchers, 4,
          "dispatcher threads; 0: this replica only answers calls [WAS_DISPATCHERS]");
ABSL_FLAG(absl::Duration, webhook_timeout, absl::Seconds(10),
          "deadline of one webhook request [WAS_WEBHOOK_TIMEOUT]");
ABSL_FLAG(absl::Duration, claim_lease, absl::ZeroDuration(),
          "a dispatcher's claim on a delivery; after a crash its deliveries go out again once"
          " their claims expire; 0s: 3 x --webhook_timeout, at least 1m [WAS_CLAIM_LEASE]");
ABSL_FLAG(std::string, delivery_backoff, "10s,30s,2m,10m,30m,1h,3h",
          "waits before attempts 2, 3, …; after the last, a failed delivery is dead"
          " [WAS_DELIVERY_BACKOFF]");
ABSL_FLAG(std::string, smtp_url, "",
          "SMTP server: smtp://host:587 (STARTTLS when offered) or smtps://host:465; empty: no"
          " e-mail [WAS_SMTP_URL]");
ABSL_FLAG(std::string, smtp_username, "", "SMTP AUTH user [WAS_SMTP_USERNAME]");
ABSL_FLAG(std::string, smtp_password, "",
          "SMTP AUTH password (prefer the environment variable) [WAS_SMTP_PASSWORD]");
ABSL_FLAG(bool, smtp_require_tls, false,
          "refuse to send unless STARTTLS or smtps protects the session [WAS_SMTP_REQUIRE_TLS]");
ABSL_FLAG(std::string, smtp_ca, "",
          "PEM roots for the SMTP server's certificate; default the system's [WAS_SMTP_CA]");
ABSL_FLAG(std::string, smtp_from, "WA Sentinel <alerts@wa-sentinel.invalid>",
          "From: of alert e-mails [WAS_SMTP_FROM]");
ABSL_FLAG(absl::Duration, smtp_timeout, absl::Seconds(30),
          "deadline of one SMTP transaction [WAS_SMTP_TIMEOUT]");
ABSL_FLAG(int, emails_per_recipient_per_hour, 20,
          "alert e-mails to one address per hour at most (0: no limit); beyond, they wait"
          " [WAS_EMAILS_PER_RECIPIENT_PER_HOUR]");
ABSL_FLAG(double, webhook_rate_per_second, 50,
          "webhooks per second to one endpoint unless it sets its own (0: no limit)"
          " [WAS_WEBHOOK_RATE_PER_SECOND]");
ABSL_FLAG(absl::Duration, reminder_interval, absl::ZeroDuration(),
          "re-notify critical alerts still open this long after their last notification;"
          " 0s: off [WAS_REMINDER_INTERVAL]");
ABSL_FLAG(std::string, reconnect_url, "",
          "a page where a person reconnects a session, linked from e-mails; {session_id} is"
          " replaced [WAS_RECONNECT_URL]");
ABSL_FLAG(std::string, template_dir, "",
          "alert.txt.mustache and alert.html.mustache from here; default the built-in ones"
          " [WAS_TEMPLATE_DIR]");
ABSL_FLAG(std::string, session_service, "",
          "session-service gRPC address whose messages become webhooks (message.received,"
          " message.status); empty: message webhooks off [WAS_SESSION_SERVICE]");
ABSL_FLAG(std::string, session_service_api_key, "",
          "key for session-service (scope messages:read) [WAS_SESSION_SERVICE_API_KEY]");
ABSL_FLAG(std::string, upstream_ca, "",
          "CA (PEM file) for TLS to session-service, presenting --tls_cert and --tls_key as the"
          " client certificate; empty: plaintext [WAS_UPSTREAM_CA]");
ABSL_FLAG(absl::Duration, message_feed_lease, absl::Seconds(30),
          "the message feed's hold: a standby replica takes over this long after the replica"
          " following session-service's messages died [WAS_MESSAGE_FEED_LEASE]");
ABSL_FLAG(absl::Duration, message_delivery_retention, absl::Hours(24 * 7),
          "message webhooks sent or dead are deleted after this long"
          " [WAS_MESSAGE_DELIVERY_RETENTION]");

namespace wasentinel::alert {
namespace {

// The service's own flags, checked (exit 2 naming a bad one: config.h).
Options ReadFlags(RuntimeOptions runtime) {
  Options o;
  o.runtime = std::move(runtime);
  o.secret_keys = config::Required(FLAGS_secret_key, "sealing keys KEY or ID:KEY[,ID:KEY]");
  for (auto r :
       absl::StrSplit(absl::GetFlag(FLAGS_alert_recipients), ',', absl::SkipWhitespace())) {
    const std::string address(absl::StripAsciiWhitespace(r));
    if (!CheckMailbox("recipient", address).ok()) {
      config::Refuse(config::Handle(FLAGS_alert_recipients),
                     "wants e-mail addresses (local@domain), comma-separated");
    }
    o.recipients.push_back(address);
  }
  o.allow_private_targets = absl::GetFlag(FLAGS_allow_private_targets);
  o.webhook_ca_file = absl::GetFlag(FLAGS_webhook_ca);
  o.dispatcher_threads = config::IntIn(FLAGS_dispatchers, 0, 64);
  o.webhook_timeout =
      config::DurationIn(FLAGS_webhook_timeout, absl::Milliseconds(100), absl::Minutes(10));
  o.claim_lease = config::DurationIn(FLAGS_claim_lease, absl::ZeroDuration(), absl::Hours(24));
  if (o.claim_lease != absl::ZeroDuration() && o.claim_lease <= o.webhook_timeout) {
    config::RefuseConfig(absl::StrCat(
        config::Source(config::Handle(FLAGS_claim_lease)), " must be longer than ",
        config::Source(config::Handle(FLAGS_webhook_timeout)), " (or 0s for the default)"));
  }
  o.backoff =
      config::DurationList(FLAGS_delivery_backoff, absl::Milliseconds(100), absl::Hours(24 * 7));
  o.smtp.url = absl::GetFlag(FLAGS_smtp_url);
  if (!o.smtp.url.empty() && !absl::StartsWith(o.smtp.url, "smtp://") &&
      !absl::StartsWith(o.smtp.url, "smtps://")) {
    config::Refuse(config::Handle(FLAGS_smtp_url), "wants smtp://host:port or smtps://host:port");
  }
  o.smtp.username = absl::GetFlag(FLAGS_smtp_username);
  o.smtp.password = absl::GetFlag(FLAGS_smtp_password);
  o.smtp.require_tls = absl::GetFlag(FLAGS_smtp_require_tls);
  o.smtp.ca_file = absl::GetFlag(FLAGS_smtp_ca);
  o.smtp.from = absl::GetFlag(FLAGS_smtp_from);
  if (!ParseNameAddr("smtp_from", o.smtp.from).ok()) {
    config::Refuse(config::Handle(FLAGS_smtp_from),
                   "wants an address (alerts@example.com) or a name and an address (WA "
                   "Sentinel <alerts@example.com>)");
  }
  o.smtp.timeout = config::DurationIn(FLAGS_smtp_timeout, absl::Seconds(1), absl::Minutes(10));
  o.smtp.reconnect_url = absl::GetFlag(FLAGS_reconnect_url);
  o.emails_per_recipient_per_hour = config::IntIn(FLAGS_emails_per_recipient_per_hour, 0, 100000);
  o.template_dir = absl::GetFlag(FLAGS_template_dir);
  o.reminder_interval =
      config::DurationIn(FLAGS_reminder_interval, absl::ZeroDuration(), absl::Hours(24 * 30));
  if (o.reminder_interval != absl::ZeroDuration() && o.reminder_interval < absl::Minutes(1)) {
    config::Refuse(config::Handle(FLAGS_reminder_interval), "wants 0s (off) or at least 1m");
  }
  o.webhook_rate_per_second = config::NonNegative(FLAGS_webhook_rate_per_second, 1e6);
  o.session_service = config::Address(FLAGS_session_service, /*empty_allowed=*/true);
  o.session_service_api_key = absl::GetFlag(FLAGS_session_service_api_key);
  o.upstream_ca_file = absl::GetFlag(FLAGS_upstream_ca);
  o.message_feed_lease =
      config::DurationIn(FLAGS_message_feed_lease, absl::Seconds(1), absl::Minutes(10));
  o.message_delivery_retention =
      config::DurationIn(FLAGS_message_delivery_retention, absl::Minutes(1), absl::Hours(24 * 365));
  return o;
}

}  // namespace
}  // namespace wasentinel::alert

int main(int argc, char** argv) {
  return wasentinel::DaemonMain<wasentinel::alert::App>(
      argc, argv, "alert-service: delivers alerts by e-mail and signed webhooks",
      wasentinel::alert::ReadFlags);
}
