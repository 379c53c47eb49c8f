// API keys (common/api_keys.h): scopes, tenant-bound keys, the start-up refusals (one key value
// under two entries, a malformed tenant), and the tenant rules every service applies.
#include "wasentinel/common/api_keys.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel {
namespace {

TEST(ApiKeys, ScopesAndTenants) {
  auto keys = ApiKeys::FromConfig(
      "ops:admin:operator-key-0123456789, acme:read:acme:acme-read-key-0123456789");
  ASSERT_THAT(keys, IsOk()) << keys.status();
  auto op = keys->Authorize("operator-key-0123456789", "", Scope::kAdmin);
  ASSERT_THAT(op, IsOk());
  EXPECT_EQ(op->key_name, "ops");
  EXPECT_TRUE(op->all_tenants());
  auto acme = keys->Authorize("", "Bearer acme-read-key-0123456789", Scope::kRead);
  ASSERT_THAT(acme, IsOk());
  EXPECT_EQ(acme->tenant, "acme");
  EXPECT_TRUE(acme->Sees("acme"));
  EXPECT_FALSE(acme->Sees("globex"));
  EXPECT_EQ(keys->Authorize("acme-read-key-0123456789", "", Scope::kOperate).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(keys->Authorize("", "", Scope::kRead).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(ApiKeys, StartUpRefusesAmbiguousOrMalformedEntries) {
  auto twice = ApiKeys::FromConfig("a:read:same-key-0123456789,b:admin:same-key-0123456789");
  ASSERT_THAT(twice, ::testing::Not(IsOk()))
      << "one key value under two scopes would act as the wider";
  EXPECT_FALSE(absl::StrContains(twice.status().message(), "same-key")) << "never the key";
  EXPECT_THAT(ApiKeys::FromConfig("a:b:c"), ::testing::Not(IsOk()));
  EXPECT_THAT(ApiKeys::FromConfig("a:read:bad tenant:key-0123456789abcdef"),
              ::testing::Not(IsOk()));
  EXPECT_THAT(ApiKeys::FromConfig("a:read:t:x:key-0123456789abcdef"), ::testing::Not(IsOk()));
  EXPECT_THAT(ApiKeys::FromConfig("a:root:key-0123456789abcdef"), ::testing::Not(IsOk()));
  EXPECT_THAT(ApiKeys::FromConfig("a:read:short"), ::testing::Not(IsOk()));
  EXPECT_THAT(ApiKeys::FromConfig("a:read:key-0123456789abcdef,a:read:key-fedcba9876543210"),
              ::testing::Not(IsOk()));
  auto none = ApiKeys::FromConfig("");
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->enabled());
  EXPECT_TRUE(none->Authorize("", "", Scope::kAdmin).ok());
}

TEST(ApiKeys, TenantRules) {
  const Caller op{"ops", Scope::kAdmin, ""};
  const Caller acme{"acme", Scope::kAdmin, "acme"};
  EXPECT_EQ(*TenantFilter(op, ""), "");
  EXPECT_EQ(*TenantFilter(op, "globex"), "globex");
  EXPECT_EQ(*TenantFilter(acme, ""), "acme");
  EXPECT_EQ(*TenantFilter(acme, "acme"), "acme");
  EXPECT_EQ(TenantFilter(acme, "globex").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(*TenantOfNew(acme, ""), "acme");
  EXPECT_EQ(TenantOfNew(op, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*TenantOfNew(op, "", /*required=*/false), "");
  EXPECT_THAT(RequireAllTenants(op, "x"), IsOk());
  EXPECT_EQ(RequireAllTenants(acme, "x").code(), absl::StatusCode::kPermissionDenied);
  const auto missing = NotVisible(acme, "session", "s1", absl::NotFoundError("no session s1"));
  const auto theirs = NotVisible(acme, "session", "s1", absl::OkStatus());
  EXPECT_EQ(missing, theirs) << "another tenant's and a missing object answer alike";
  EXPECT_EQ(missing.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(NotVisible(op, "session", "s1", absl::NotFoundError("no session s1")).code(),
            absl::StatusCode::kNotFound);
}

// Message scopes are granted by name, beside a level or alone; only admin includes them.
TEST(ApiKeys, MessageScopes) {
  auto keys = ApiKeys::FromConfig(
      "bot:messages:read+messages:send:bot-key-0123456789,"
      "desk:operate+messages:send:acme:desk-key-0123456789,"
      "ops:admin:ops-key-0123456789,dash:read:dash-key-0123456789");
  ASSERT_TRUE(keys.ok()) << keys.status();
  auto bot = keys->Authorize("bot-key-0123456789", "", Scope::kMessagesRead);
  ASSERT_TRUE(bot.ok());
  EXPECT_EQ(bot->ScopesText(), "messages:read+messages:send");
  EXPECT_FALSE(bot->Has(Scope::kRead));
  auto desk = keys->Authorize("desk-key-0123456789", "", Scope::kMessagesSend);
  ASSERT_TRUE(desk.ok());
  EXPECT_EQ(desk->tenant, "acme");
  EXPECT_TRUE(desk->Has(Scope::kOperate));
  EXPECT_FALSE(desk->Has(Scope::kMessagesRead));
  EXPECT_TRUE(keys->Authorize("ops-key-0123456789", "", Scope::kMessagesRead).ok());
  EXPECT_EQ(keys->Authorize("dash-key-0123456789", "", Scope::kMessagesRead).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(ApiKeys::FromConfig("x:messages:write:key-0123456789abcdef").ok());
  EXPECT_FALSE(ApiKeys::FromConfig("x:read+admin:key-0123456789abcdef").ok());
}

}  // namespace
}  // namespace wasentinel
