// Alert e-mails (README "Architecture" › "Alerts"): rendered from the Mustache templates in
// alert-service/templates (built in; --template_dir overrides) into multipart text + HTML,
// with a Message-ID that stays the same on every retry of one delivery, and sent through an
// EmailNotifier: CurlEmailSender, SMTP with libcurl (STARTTLS, AUTH, timeouts; libcurl kept out
// of this header), in production; a fake in alert-service/test/dispatcher_fake_test.cc.
//
// The e-mail says: the account name, the masked phone number, how long it has
// been offline and since when, the last connected time, how to reconnect (commands, and a link
// when --reconnect_url is set) and troubleshooting tips. Phone numbers arrive masked; nothing
// else identifying is added.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wasentinel/alert/v1/alert.pb.h"

namespace wasentinel::alert {

struct SmtpOptions {
  /// "smtp://host:587" (STARTTLS when the server offers it) or "smtps://host:465"; empty:
  /// e-mail is off and e-mail deliveries become dead letters saying so.
  std::string url;
  std::string username;  ///< AUTH when set
  std::string password;
  /// Refuse to send unless STARTTLS (or smtps) protects the session.
  bool require_tls = false;
  std::string ca_file;  ///< PEM roots for the server's certificate; empty: the system's
  std::string from = "WA Sentinel <alerts@wa-sentinel.invalid>";
  absl::Duration timeout = absl::Seconds(30);
  /// A page where a person can reconnect a session; "{session_id}" is replaced. Empty: none.
  std::string reconnect_url;
};

struct EmailTemplates {
  std::string text;  ///< Mustache, text/plain
  std::string html;  ///< Mustache, text/html (values HTML-escaped)
  /// The templates built into the binary from alert-service/templates.
  static EmailTemplates Builtin();
  /// alert.txt.mustache and alert.html.mustache from `dir`; INVALID_ARGUMENT when missing.
  static absl::StatusOr<EmailTemplates> FromDir(const std::string& dir);
};

struct EmailMessage {
  std::string from;        ///< "Name <address>"
  std::string to;          ///< an address
  std::string subject;     ///< UTF-8; encoded on the wire as RFC 2047 when not ASCII
  std::string message_id;  ///< "<…@…>"
  std::string text;
  std::string html;
};

/// The e-mail of delivery `delivery_id` (kind: notify or resolved) of `alert` to `to`.
EmailMessage RenderAlertEmail(const v1::Alert& alert, v1::Delivery::Kind kind,
                              const std::string& delivery_id, const std::string& to,
                              const SmtpOptions& smtp, const EmailTemplates& templates,
                              absl::Time now);

struct SmtpResult {
  bool sent = false;
  bool permanent = false;  ///< a 5xx for the recipient or message: retrying will not help
  long code = 0;           ///< the last SMTP reply code, 0 when none came
  std::string error;
};

/// Sends alert e-mails: what the dispatcher (delivery/dispatcher.h) depends on. One message per
/// Send, never retried here (the dispatcher schedules the retry). Not required to be
/// thread-safe: each dispatcher thread has one of its own.
class EmailNotifier {
 public:
  virtual ~EmailNotifier() = default;

  /// Sends `message` (dated `now`). Never fails as a call: what happened is in the result —
  /// `sent`, or `permanent` (a 5xx for the recipient or message: a dead letter) or not (SMTP
  /// 4xx, a refused login, a timeout, a network error: retried), with the SMTP reply `code`.
  virtual SmtpResult Send(const EmailMessage& message, absl::Time now) = 0;
};

/// The libcurl EmailNotifier: one handle, reused message after message. Not thread-safe: one
/// per dispatcher thread.
class CurlEmailSender final : public EmailNotifier {
 public:
  explicit CurlEmailSender(SmtpOptions options);
  ~CurlEmailSender() override;
  CurlEmailSender(const CurlEmailSender&) = delete;
  CurlEmailSender& operator=(const CurlEmailSender&) = delete;

  /// Sends `message` through `options.url`. Its `to` and the address in its `from` must pass
  /// CheckMailbox (wasentinel/common/validation.h); otherwise nothing is sent and the result
  /// is permanent.
  SmtpResult Send(const EmailMessage& message, absl::Time now) override;

 private:
  struct Impl;  // the libcurl handle, the options and the connection state (email.cc)
  std::unique_ptr<Impl> impl_;
};

}  // namespace wasentinel::alert
