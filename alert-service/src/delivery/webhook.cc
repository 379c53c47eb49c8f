#include "webhook.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "delivery/curl_headers.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::alert {
namespace {

constexpr absl::string_view kSecretPrefix = "whsec_";

bool PublicV4(const uint8_t* a) {
  const uint32_t ip =
      (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) | (uint32_t{a[2]} << 8) | a[3];
  auto in = [ip](uint32_t net, int bits) {
    return bits == 0 || (ip >> (32 - bits)) == (net >> (32 - bits));
  };
  return !(in(0x00000000, 8) ||   // "this network"
           in(0x0A000000, 8) ||   // 10/8
           in(0x64400000, 10) ||  // 100.64/10 CGNAT
           in(0x7F000000, 8) ||   // loopback
           in(0xA9FE0000, 16) ||  // link-local
           in(0xAC100000, 12) ||  // 172.16/12
           in(0xC0A80000, 16) ||  // 192.168/16
           in(0xE0000000, 4) ||   // multicast
           in(0xF0000000, 4));    // reserved, broadcast
}

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

bool IsPublicAddress(std::string_view ip_text) {
  const std::string ip(ip_text);
  uint8_t a[16];
  if (inet_pton(AF_INET, ip.c_str(), a) == 1) return PublicV4(a);
  if (inet_pton(AF_INET6, ip.c_str(), a) != 1) return false;
  static const uint8_t kZero[16] = {};
  if (std::memcmp(a, kZero, 15) == 0 && (a[15] == 0 || a[15] == 1)) return false;  // ::, ::1
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a, kMapped, 12) == 0) return PublicV4(a + 12);
  if ((a[0] & 0xfe) == 0xfc) return false;                  // fc00::/7 unique local
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return false;  // fe80::/10 link-local
  if (a[0] == 0xff) return false;                           // multicast
  return true;
}

absl::Status CheckWebhookUrl(std::string_view url, bool allow_private) {
  std::unique_ptr<CURLU, void (*)(CURLU*)> u(curl_url(), curl_url_cleanup);
  const std::string text(url);
  if (curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError(absl::StrCat("not a URL: ", text));
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
  std::string host = part(CURLUPART_HOST);
  if (host.empty()) return absl::InvalidArgumentError("the webhook URL has no host");
  if (allow_private) return absl::OkStatus();
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  uint8_t buf[16];
  const bool literal =
      inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
  if (absl::AsciiStrToLower(host) == "localhost" || (literal && !IsPublicAddress(host))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "webhook URL ", text, " points at a private or loopback address; refused (SSRF)"));
  }
  return absl::OkStatus();
}

WebhookSender::WebhookSender(absl::Duration timeout, bool allow_private, std::string ca_file)
    : curl_(curl_easy_init()),
      timeout_(timeout),
      allow_private_(allow_private),
      ca_file_(std::move(ca_file)) {}

WebhookSender::~WebhookSender() { curl_easy_cleanup(curl_); }

WebhookResponse WebhookSender::Send(const WebhookRequest& req) {
  WebhookResponse out;
  if (!curl_) {
    out.error = "libcurl could not be initialised";
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
  curl_easy_reset(curl_);  // keeps the connection cache
  SocketGuard guard{allow_private_};
  curl_easy_setopt(curl_, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, allow_private_ ? "http,https" : "https");
  curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers.list);
  curl_easy_setopt(curl_, CURLOPT_POST, 1L);
  curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, req.body.data());
  curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(timeout_)));
  curl_easy_setopt(
      curl_, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(std::min(timeout_, absl::Seconds(5)))));
  curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl_, CURLOPT_FOLLOWLOCATION, 0L);  // a redirect could lead anywhere
  if (!ca_file_.empty()) curl_easy_setopt(curl_, CURLOPT_CAINFO, ca_file_.c_str());
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &Discard);
  curl_easy_setopt(curl_, CURLOPT_OPENSOCKETFUNCTION, &OpenSocket);
  curl_easy_setopt(curl_, CURLOPT_OPENSOCKETDATA, &guard);
  const CURLcode rc = curl_easy_perform(curl_);
  if (rc != CURLE_OK) {
    out.error = guard.refused ? "refused: the URL resolves to a private or loopback address (SSRF)"
                              : curl_easy_strerror(rc);
    return out;
  }
  curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &out.status);
  curl_off_t retry_after = 0;
  if (curl_easy_getinfo(curl_, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0) {
    out.retry_after = absl::Seconds(retry_after);
  }
  return out;
}

}  // namespace wasentinel::alert
