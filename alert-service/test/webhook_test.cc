// Standard Webhooks signatures (the specification's own example), secrets, and which URLs and
// addresses webhooks may go to (SSRF).
#include "delivery/webhook.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::alert {
namespace {

TEST(Webhook, SignsAsTheStandardWebhooksExample) {
  // The example of the specification and of its reference libraries.
  auto sig = SignWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                         1614265330, R"({"test": 2432232314})");
  ASSERT_THAT(sig, IsOk()) << sig.status();
  EXPECT_EQ(*sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  EXPECT_EQ(SignWebhook("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, "{}").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SignWebhook("whsec_***", "m", 1, "{}").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Webhook, NewSecretsAreUsableAndDistinct) {
  const std::string a = NewWebhookSecret(), b = NewWebhookSecret();
  EXPECT_TRUE(absl::StartsWith(a, "whsec_"));
  EXPECT_EQ(a.size(), 6u + 32u);  // base64 of 24 bytes
  EXPECT_NE(a, b);
  EXPECT_THAT(SignWebhook(a, "msg_1", 1, "{}"), IsOk());
}

TEST(Webhook, OnlyPublicAddresses) {
  for (const char* ip : {"8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"}) {
    EXPECT_TRUE(IsPublicAddress(ip)) << ip;
  }
  for (const char* ip :
       {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00::1",
        "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "not an ip", ""}) {
    EXPECT_FALSE(IsPublicAddress(ip)) << ip;
  }
  EXPECT_TRUE(IsPublicAddress("172.32.0.1"));
}

TEST(Webhook, UrlsAreCheckedForSchemeAndPrivateTargets) {
  EXPECT_THAT(CheckWebhookUrl("https://hooks.example.com/wa", false), IsOk());
  EXPECT_THAT(CheckWebhookUrl("https://8.8.8.8/x", false), IsOk());
  for (const char* url :
       {"http://hooks.example.com/wa", "https://127.0.0.1/x", "https://localhost:8443/",
        "https://[::1]/x", "https://169.254.169.254/latest/meta-data", "https://10.0.0.5/",
        "ftp://hooks.example.com/", "not a url", "https://"}) {
    auto st = CheckWebhookUrl(url, false);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << url;
  }
  // Allowed explicitly (tests, internal receivers): loopback and plain http.
  EXPECT_THAT(CheckWebhookUrl("http://127.0.0.1:8080/hook", true), IsOk());
}

TEST(Webhook, ASenderRefusesAPrivateAddressItResolvesTo) {
  CurlWebhookSender sender(absl::Seconds(2), /*allow_private=*/false);
  WebhookRequest req;
  req.url = "https://localhost:1/hook";  // resolves to loopback: refused before connecting
  req.id = "msg_1";
  req.body = "{}";
  auto r = sender.Send(req);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("SSRF"), std::string::npos) << r.error;
  EXPECT_TRUE(r.refused) << "a refusal is final";
}

TEST(Webhook, CreationAndSendingRefuseTheSameEmbeddedAndSpecialAddresses) {
  CurlWebhookSender sender(absl::Seconds(2), /*allow_private=*/false);
  for (const char* url :
       {"https://[::127.0.0.1]/h", "https://[::ffff:127.0.0.1]/h", "https://[64:ff9b::7f00:1]/h",
        "https://[2002:7f00:1::]/h", "https://198.18.0.1/h", "https://192.0.0.1/h",
        "https://[fd00::1]/h", "https:///nohost", "https://localhost./h", "https://0x7f.1/h",
        "https://2130706433/h"}) {
    EXPECT_THAT(CheckWebhookUrl(url, false), ::testing::Not(IsOk())) << url;
    WebhookRequest req;
    req.url = url;
    req.id = "msg_1";
    req.body = "{}";
    auto r = sender.Send(req);
    EXPECT_TRUE(r.refused) << url << ": " << r.error;
  }
  EXPECT_THAT(CheckWebhookUrl("https://hooks.example.com/" + std::string(3000, 'a'), false),
              ::testing::Not(IsOk()));
  EXPECT_THAT(CheckWebhookUrl("https://[2606:4700::1111]/h", false), IsOk());
}

}  // namespace
}  // namespace wasentinel::alert
