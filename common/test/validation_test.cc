// The request rules (common/validation.h), the public-address classifier (common/ip_address.h)
// and the log helpers that keep hostile or secret values out of logs (common/logging.h).
#include "wasentinel/common/validation.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "wasentinel/common/ip_address.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel {
namespace {

TEST(Mailbox, AcceptsOrdinaryAddresses) {
  for (const char* ok :
       {"owner@acme.example", "o@x.example", "first.last+tag@mail.example.com",
        "ops-team@sub-domain.example", "a!#$%&'*+/=?^_`{|}~@x.io", "o@localhost"}) {
    EXPECT_THAT(CheckMailbox("owner_email", ok), IsOk()) << ok;
  }
}

TEST(Mailbox, RefusesWhatCouldBreakAnSmtpCommandOrHeader) {
  const std::string injection =
      "o@x.example>\r\nDATA\r\nFrom: IT <it@x.example>\r\nSubject: hi\r\n.\r\nRSET\r\nMAIL "
      "FROM:<a@x.example>\r\nRCPT TO:<o@x.example";
  for (const std::string bad :
       {injection, std::string("o@x.example\r\n"), std::string("o@x.example\n"),
        std::string("<o@x.example>"), std::string("o @x.example"), std::string("o@x .example"),
        std::string("o@x.example\0evil", 16), std::string("\"quoted\"@x.example"),
        std::string("o@[127.0.0.1]"), std::string("@x.example"), std::string("o@"),
        std::string("o"), std::string(".o@x.example"), std::string("o..p@x.example"),
        std::string("o@-x.example"), std::string("o@x..example"), std::string("ö@x.example"),
        std::string(65, 'a') + "@x.example", "o@" + std::string(250, 'x') + ".example"}) {
    auto st = CheckMailbox("owner_email", bad);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(st.message(), "owner_email")) << st;
    EXPECT_EQ(st.message().find('\r'), std::string::npos) << "the error never carries a CR";
    EXPECT_EQ(st.message().find('\n'), std::string::npos);
  }
}

TEST(Mailbox, NameAddr) {
  EXPECT_EQ(*ParseNameAddr("smtp_from", "WA Sentinel <alerts@wa-sentinel.invalid>"),
            "alerts@wa-sentinel.invalid");
  EXPECT_EQ(*ParseNameAddr("smtp_from", "alerts@x.example"), "alerts@x.example");
  EXPECT_THAT(ParseNameAddr("smtp_from", "IT\r\nBcc: a@x.example <a@x.example>"),
              ::testing::Not(IsOk()));
  EXPECT_THAT(ParseNameAddr("smtp_from", "A <b@x.example> <c@x.example>"), ::testing::Not(IsOk()));
  EXPECT_THAT(ParseNameAddr("smtp_from", "A <b@x.example"), ::testing::Not(IsOk()));
  EXPECT_THAT(ParseNameAddr("smtp_from", "\rIT <it@x.example>"), ::testing::Not(IsOk()))
      << "found by the fuzzer";
}

TEST(Text, LengthUtf8AndControlCharacters) {
  EXPECT_THAT(CheckText("account_name", "Shop Berlin – Kasse 2 ☎", {}), IsOk());
  EXPECT_THAT(CheckText("account_name", "", {}), IsOk());
  EXPECT_EQ(CheckText("account_name", "", {.required = true}).message(),
            "account_name is required");
  const std::string huge(1 << 20, 'x');
  auto st = CheckText("account_name", huge, {.max_bytes = 256});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(st.message().size(), 200u) << "the error quotes a short prefix, never the value";
  EXPECT_TRUE(absl::StrContains(st.message(), "1048576")) << st;
  EXPECT_THAT(CheckText("f", std::string("a\0b", 3), {}), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckText("f", "a\x1b[31mred", {}), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckText("f", "a\nb", {}), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckText("f", "a\nb\tc", {.multiline = true}), IsOk());
  EXPECT_THAT(CheckText("f", "a\rb", {.multiline = true}), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckText("f", "\x7f", {}), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckText("f", "\xc2\x85", {}), ::testing::Not(IsOk())) << "C1 control NEL";
  EXPECT_THAT(CheckText("f", "\xff\xfe", {}), ::testing::Not(IsOk()));
}

TEST(Text, Utf8IsStrict) {
  EXPECT_TRUE(IsUtf8("plain"));
  EXPECT_TRUE(IsUtf8("\xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsUtf8("\xc0\xaf")) << "overlong";
  EXPECT_FALSE(IsUtf8("\xe0\x80\xaf")) << "overlong";
  EXPECT_FALSE(IsUtf8("\xed\xa0\x80")) << "surrogate";
  EXPECT_FALSE(IsUtf8("\xf4\x90\x80\x80")) << "above U+10FFFF";
  EXPECT_FALSE(IsUtf8("\xe2\x82")) << "truncated";
  EXPECT_FALSE(IsUtf8("\x80"));
}

TEST(Identifiers, TenantsEventTypesIds) {
  for (const char* ok : {"acme", "tenant-new", "t1", "acme.eu:prod_2"}) {
    EXPECT_THAT(CheckTenantId("tenant_id", ok), IsOk()) << ok;
  }
  for (const std::string bad :
       {std::string(""), std::string(" acme"), std::string("acme "), std::string("ac me"),
        std::string("acme\n"), std::string("-acme"), std::string(65, 'a'), std::string("ac\0me", 5),
        std::string("äcme")}) {
    EXPECT_THAT(CheckTenantId("tenant_id", bad), ::testing::Not(IsOk())) << bad;
  }
  EXPECT_THAT(CheckEventType("event_type", "session.critical"), IsOk());
  EXPECT_THAT(CheckEventType("event_type", "session_service.unreachable"), IsOk());
  EXPECT_THAT(CheckEventType("event_type", "Session.Critical"), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckEventType("event_type", std::string(65, 'a')), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckEventType("event_type", "a{b=\"c\"}"), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckIdentifier("id", "0b0c6a9e-6f4e-4c43-9d4c-2f0f7d1f6a11"), IsOk());
  EXPECT_THAT(CheckIdentifier("id", std::string(100 * 1024, 'x')), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckIdentifier("id", "a b"), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckIdentifier("id", ""), ::testing::Not(IsOk()));
}

TEST(Times, TimestampsAndDurationsInRange) {
  EXPECT_THAT(CheckTimestamp("until", 1'800'000'000, 0), IsOk());
  EXPECT_THAT(CheckTimestamp("until", -1, 0), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckTimestamp("until", 253402300800, 0), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckTimestamp("until", 0, 1'000'000'000), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckDuration("timeout", 60, 0, 60), IsOk());
  EXPECT_THAT(CheckDuration("timeout", 61, 0, 60), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckDuration("timeout", -1, 0, 60), ::testing::Not(IsOk()));
  EXPECT_THAT(CheckDuration("timeout", 9'223'372'036'854'775'807, 0, 60), ::testing::Not(IsOk()));
}

TEST(PublicAddress, EmbeddingsAndSpecialRanges) {
  for (const char* pub :
       {"8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700::1111", "[2606:4700::1111]",
        "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"}) {
    EXPECT_TRUE(IsPublicAddress(pub)) << pub;
  }
  for (const char* priv : {"127.0.0.1",
                           "10.1.2.3",
                           "192.168.1.1",
                           "172.16.0.1",
                           "169.254.169.254",
                           "100.64.0.1",
                           "0.0.0.0",
                           "255.255.255.255",
                           "224.0.0.1",
                           "198.18.0.1",
                           "198.19.255.255",
                           "192.0.0.1",
                           "192.0.2.1",
                           "198.51.100.1",
                           "203.0.113.1",
                           "192.88.99.1",
                           "::",
                           "::1",
                           "[::1]",
                           "::127.0.0.1",
                           "[::127.0.0.1]",
                           "::ffff:127.0.0.1",
                           "::ffff:10.0.0.1",
                           "64:ff9b::7f00:1",
                           "64:ff9b::a00:1",
                           "64:ff9b:1::1",
                           "2002:7f00:1::",
                           "2002:a00:1::1",
                           "fc00::1",
                           "fd12::1",
                           "fe80::1",
                           "fec0::1",
                           "ff02::1",
                           "2001::1",
                           "2001:db8::1",
                           "3fff::1",
                           "100::1",
                           "not-an-ip",
                           "",
                           "1.2.3",
                           "[]"}) {
    EXPECT_FALSE(IsPublicAddress(priv)) << priv;
  }
}

TEST(Logs, QuotedRedactedMasked) {
  EXPECT_EQ(QuoteForLog("a\r\nb\"c"), "\"a\\x0d\\x0ab\\x22c\"");
  EXPECT_EQ(QuoteForLog(std::string(100, 'x'), 4), "\"xxxx\"… (100 bytes)");
  EXPECT_EQ(RedactUrlCredentials("smtp://user:hunter2@mail.example:587"),
            "smtp://***@mail.example:587");
  EXPECT_EQ(RedactUrlCredentials("postgresql://u:p@db/x?sslmode=require"),
            "postgresql://***@db/x?sslmode=require");
  EXPECT_EQ(RedactUrlCredentials("https://hooks.example/a@b"), "https://hooks.example/a@b");
  EXPECT_EQ(RedactUrlCredentials("smtp://mail.example:25"), "smtp://mail.example:25");
  EXPECT_EQ(MaskJid("15551234567.0:3@s.whatsapp.net"), "155******67.0:3@s.whatsapp.net");
  EXPECT_EQ(MaskJid("15551234567@s.whatsapp.net"), "155******67@s.whatsapp.net");
}

}  // namespace
}  // namespace wasentinel
