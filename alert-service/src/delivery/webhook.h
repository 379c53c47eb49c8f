// Webhooks as the Standard Webhooks specification has them (standardwebhooks.com): a JSON POST
// with `webhook-id` (the same on every retry of one delivery), `webhook-timestamp` (Unix
// seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the
// base64 key of a `whsec_…` secret; several space-separated signatures while a rotated secret
// is still valid. Sent with libcurl; URLs that resolve to private, loopback or link-local
// addresses are refused unless allowed (SSRF), checked on each address before a socket to it
// is opened.
#pragma once

#include <curl/curl.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wasentinel/common/ip_address.h"

namespace wasentinel::alert {

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
/// "localhost" — a public one (IsPublicAddress, common/ip_address.h) unless `allow_private`.
/// INVALID_ARGUMENT saying why not.
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

/// One libcurl handle, reused request after request so connections are kept alive. Not
/// thread-safe: one per dispatcher thread.
class WebhookSender {
 public:
  /// `timeout`: the whole request. `allow_private`: also send to private addresses (tests and
  /// internal receivers). `ca_file`: PEM roots for https receivers; empty: the system's.
  WebhookSender(absl::Duration timeout, bool allow_private, std::string ca_file = "");
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  WebhookResponse Send(const WebhookRequest& req);

 private:
  CURL* curl_;
  const absl::Duration timeout_;
  const bool allow_private_;
  const std::string ca_file_;
};

}  // namespace wasentinel::alert
