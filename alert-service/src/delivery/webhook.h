// Webhooks as the Standard Webhooks specification has them (standardwebhooks.com): a JSON POST
// with `webhook-id` (the same on every retry of one delivery), `webhook-timestamp` (Unix
// seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the
// base64 key of a `whsec_…` secret; several space-separated signatures while a rotated secret
// is still valid. The dispatcher sends through a WebhookNotifier: CurlWebhookSender (libcurl,
// kept out of this header) in production, a fake in alert-service/test/dispatcher_fake_test.cc.
// URLs that resolve to private, loopback or link-local addresses are refused unless allowed
// (SSRF), checked on each address before a socket to it is opened.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "wasentinel/common/ip_address.h"

namespace wasentinel::alert {

/// A time in webhook bodies: RFC 3339, UTC, milliseconds ("2026-12-07T10:15:02.118Z"); "" for
/// an unset Timestamp.
std::string WebhookTime(absl::Time t);
std::string WebhookTime(const google::protobuf::Timestamp& t);
/// An enum value's name in webhook bodies: `name` without `prefix`, in lower case
/// ("STATUS_OPEN", "STATUS_" → "open").
std::string WebhookWord(std::string name, std::string_view prefix);

/// A new secret: "whsec_" + base64 of 24 random bytes.
std::string NewWebhookSecret();

/// "v1,<base64 signature>" of `body` for message `id` at `timestamp` (Unix seconds).
/// INVALID_ARGUMENT when `secret` is not "whsec_<base64>".
absl::StatusOr<std::string> SignWebhook(std::string_view secret, std::string_view id,
                                        int64_t timestamp, std::string_view body);

/// The longest webhook URL accepted, in bytes.
inline constexpr size_t kMaxWebhookUrl = 2048;

/// A URL webhooks may be sent to: at most kMaxWebhookUrl bytes of printable ASCII, https (http
/// too when `allow_private`), a host named in the URL, and — when the host is an address or
/// "localhost" — a public one (IsPublicAddress, wasentinel/common/ip_address.h) unless
/// `allow_private`. INVALID_ARGUMENT saying why not.
absl::Status CheckWebhookUrl(std::string_view url, bool allow_private);

struct WebhookRequest {
  std::string url;
  std::string id;  ///< webhook-id
  int64_t timestamp = 0;
  std::vector<std::string> signatures;  ///< "v1,…" each
  std::string body;                     ///< JSON
};

struct WebhookResponse {
  long status = 0;                            ///< HTTP status; 0 when none came
  std::string error;                          ///< transport error, empty when a status came
  std::optional<absl::Duration> retry_after;  ///< a Retry-After header in seconds
  /// The target was refused before any request (SSRF: the URL or an address it resolved to is
  /// not public, or the URL is not one webhooks may go to): retrying will not help.
  bool refused = false;
};

/// Sends webhook requests: what the dispatcher (delivery/dispatcher.h) depends on. One request
/// per Send, never retried here (the dispatcher judges the answer and schedules the retry).
/// Not required to be thread-safe: each dispatcher thread has one of its own.
class WebhookNotifier {
 public:
  virtual ~WebhookNotifier() = default;

  /// POSTs `req.body` to `req.url` with the webhook-id, webhook-timestamp and webhook-signature
  /// headers (the signatures space-separated). Never fails as a call: a transport error, a
  /// timeout or a refusal (SSRF) is in the answer's `error` / `refused`.
  virtual WebhookResponse Send(const WebhookRequest& req) = 0;
};

/// The libcurl WebhookNotifier: one handle, reused request after request so connections are
/// kept alive. Checks each URL again (CheckWebhookUrl) and each address it resolves to before
/// connecting unless `allow_private`. Not thread-safe: one per dispatcher thread.
class CurlWebhookSender final : public WebhookNotifier {
 public:
  /// `timeout`: the whole request (connecting: at most 5 s of it). `allow_private`: also send
  /// to private addresses and over plain http (tests and internal receivers). `ca_file`: PEM
  /// roots for https receivers; empty: the system's.
  CurlWebhookSender(absl::Duration timeout, bool allow_private, std::string ca_file = "");
  ~CurlWebhookSender() override;
  CurlWebhookSender(const CurlWebhookSender&) = delete;
  CurlWebhookSender& operator=(const CurlWebhookSender&) = delete;

  WebhookResponse Send(const WebhookRequest& req) override;

 private:
  struct Impl;  // the libcurl handle and the options (webhook.cc)
  std::unique_ptr<Impl> impl_;
};

}  // namespace wasentinel::alert
