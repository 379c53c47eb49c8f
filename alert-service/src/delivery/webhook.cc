#include "webhook.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "delivery/curl_headers.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::alert {
namespace {

constexpr absl::string_view kSecretPrefix = "whsec_";

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

// Refuses to open a socket to an address that is not public (DNS can answer anything, so the
// check is on the address curl is about to connect to, not on the name).
struct SocketGuard {
  bool allow_private = false;
  bool refused = false;
};

curl_socket_t OpenSocket(void* guard_ptr, curlsocktype, curl_sockaddr* address) {
  auto* guard = static_cast<SocketGuard*>(guard_ptr);
  if (!guard->allow_private) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* where = nullptr;
    if (address->family == AF_INET) {
      where = &reinterpret_cast<const sockaddr_in*>(&address->addr)->sin_addr;
    } else if (address->family == AF_INET6) {
      where = &reinterpret_cast<const sockaddr_in6*>(&address->addr)->sin6_addr;
    }
    if (!where || !inet_ntop(address->family, where, text, sizeof text) || !IsPublicAddress(text)) {
      guard->refused = true;
      return CURL_SOCKET_BAD;
    }
  }
  return socket(address->family, address->socktype, address->protocol);
}

}  // namespace

std::string WebhookTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

std::string WebhookTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "";
  return WebhookTime(FromProto(t));
}

std::string WebhookWord(std::string name, std::string_view prefix) {
  if (absl::StartsWith(name, Sv(prefix))) name = name.substr(prefix.size());
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string NewWebhookSecret() {
  static const int sodium = sodium_init();  // idempotent; needed before randombytes
  (void)sodium;
  Bytes raw(24);
  randombytes_buf(raw.data(), raw.size());
  return absl::StrCat(kSecretPrefix, Base64Encode(raw));
}

absl::StatusOr<std::string> SignWebhook(std::string_view secret, std::string_view id,
                                        int64_t timestamp, std::string_view body) {
  absl::string_view rest = Sv(secret);
  if (!absl::ConsumePrefix(&rest, kSecretPrefix)) {
    return absl::InvalidArgumentError("a webhook secret starts with whsec_");
  }
  auto key = Base64Decode(std::string_view(rest.data(), rest.size()));
  if (!key.ok() || key->empty()) {
    return absl::InvalidArgumentError("a webhook secret is whsec_ and base64");
  }
  const std::string content = absl::StrCat(Sv(id), ".", timestamp, ".", Sv(body));
  std::array<uint8_t, crypto_auth_hmacsha256_BYTES> mac{};
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key->data(), key->size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const uint8_t*>(content.data()),
                                content.size());
  crypto_auth_hmacsha256_final(&st, mac.data());
  sodium_memzero(&st, sizeof st);
  return absl::StrCat("v1,", Base64Encode(ByteView(mac.data(), mac.size())));
}

absl::Status CheckWebhookUrl(std::string_view url, bool allow_private) {
  if (url.empty()) return absl::InvalidArgumentError("url is required");
  if (url.size() > kMaxWebhookUrl) {
    return absl::InvalidArgumentError(
        absl::StrCat("url is longer than ", kMaxWebhookUrl, " bytes (", url.size(), ")"));
  }
  const std::string text(url);
  const std::string shown = QuoteForLog(RedactUrlCredentials(text), 64);
  for (unsigned char c : text) {
    if (c <= 0x20 || c >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "url ", shown, " holds spaces, control characters or non-ASCII (percent-encode them)"));
    }
  }
  std::unique_ptr<CURLU, void (*)(CURLU*)> u(curl_url(), curl_url_cleanup);
  if (curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError(absl::StrCat("url ", shown, " is not a URL"));
  }
  auto part = [&](CURLUPart which) {
    char* p = nullptr;
    std::string out;
    if (curl_url_get(u.get(), which, &p, 0) == CURLUE_OK && p) out = p;
    curl_free(p);
    return out;
  };
  const std::string scheme = absl::AsciiStrToLower(part(CURLUPART_SCHEME));
  if (scheme != "https" && !(allow_private && scheme == "http")) {
    return absl::InvalidArgumentError(absl::StrCat("webhook URLs are https:// (", scheme,
                                                   ":// is allowed only with private "
                                                   "targets allowed)"));
  }
  // libcurl reads "https:///x" leniently as host "x"; a URL must name its host itself.
  const auto authority = text.find("://");
  std::string host = part(CURLUPART_HOST);
  if (host.empty() || authority == std::string::npos || text.size() <= authority + 3 ||
      text[authority + 3] == '/') {
    return absl::InvalidArgumentError(absl::StrCat("url ", shown, " has no host"));
  }
  if (allow_private) return absl::OkStatus();
  std::string lower = absl::AsciiStrToLower(host);
  while (!lower.empty() && lower.back() == '.') lower.pop_back();  // "localhost." is localhost
  uint8_t buf[16];
  const std::string bare = absl::StartsWith(host, "[") && absl::EndsWith(host, "]")
                               ? host.substr(1, host.size() - 2)
                               : host;
  const bool literal =
      inet_pton(AF_INET, bare.c_str(), buf) == 1 || inet_pton(AF_INET6, bare.c_str(), buf) == 1;
  // RFC 6761: "localhost" and names under it are the loopback.
  if (lower == "localhost" || absl::EndsWith(lower, ".localhost") ||
      (literal && !IsPublicAddress(bare))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "webhook URL ", shown, " points at a private or loopback address; refused (SSRF)"));
  }
  return absl::OkStatus();
}

struct CurlWebhookSender::Impl {
  CURL* curl = nullptr;
  absl::Duration timeout;
  bool allow_private = false;
  std::string ca_file;
};

CurlWebhookSender::CurlWebhookSender(absl::Duration timeout, bool allow_private,
                                     std::string ca_file)
    : impl_(std::make_unique<Impl>(
          Impl{curl_easy_init(), timeout, allow_private, std::move(ca_file)})) {}

CurlWebhookSender::~CurlWebhookSender() { curl_easy_cleanup(impl_->curl); }

WebhookResponse CurlWebhookSender::Send(const WebhookRequest& req) {
  const Impl& o = *impl_;
  CURL* const curl = o.curl;  // reused: curl_easy_reset keeps its connection cache
  WebhookResponse out;
  if (!curl) {
    out.error = "libcurl could not be initialised";
    return out;
  }
  // Endpoints stored before a rule was tightened are held to today's rules too.
  if (auto st = CheckWebhookUrl(req.url, o.allow_private); !st.ok()) {
    out.refused = true;
    out.error = absl::StrCat("refused: ", st.message());
    return out;
  }
  CurlHeaders headers;
  headers.Add("content-type: application/json");
  headers.Add("user-agent: wa-sentinel-alert-service");
  headers.Add(absl::StrCat("webhook-id: ", req.id));
  headers.Add(absl::StrCat("webhook-timestamp: ", req.timestamp));
  std::string sigs;
  for (const auto& s : req.signatures) absl::StrAppend(&sigs, sigs.empty() ? "" : " ", s);
  headers.Add(absl::StrCat("webhook-signature: ", sigs));
  curl_easy_reset(curl);  // keeps the connection cache
  SocketGuard guard{o.allow_private};
  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, o.allow_private ? "http,https" : "https");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.list);
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(o.timeout)));
  curl_easy_setopt(
      curl, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(std::min(o.timeout, absl::Seconds(5)))));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);  // a redirect could lead anywhere
  if (!o.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, o.ca_file.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Discard);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, &OpenSocket);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &guard);
  const CURLcode rc = curl_easy_perform(curl);
  if (rc != CURLE_OK) {
    out.refused = guard.refused;
    out.error = guard.refused ? "refused: the URL resolves to a private or loopback address (SSRF)"
                              : curl_easy_strerror(rc);
    return out;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  curl_off_t retry_after = 0;
  if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0) {
    out.retry_after = absl::Seconds(retry_after);
  }
  return out;
}

}  // namespace wasentinel::alert
