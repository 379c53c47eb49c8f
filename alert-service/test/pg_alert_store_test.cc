// The outbox's rules on a real PostgreSQL, on a fake clock: dedup, escalation, resolve with
// notices where the alert was notified, silences, pages, bad input, and two raises of one new
// key at once.
#include "outbox/pg_alert_store.h"

#include <gtest/gtest.h>

#include <thread>

#include "alert_db.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::alert {
namespace {

using Channel = v1::Delivery::Channel;
using Kind = v1::Delivery::Kind;

v1::RaiseAlertRequest Offline(v1::Severity severity,
                              const std::string& key = "session.offline/s1") {
  v1::RaiseAlertRequest r;
  r.set_dedup_key(key);
  r.set_event_type(severity == v1::SEVERITY_CRITICAL ? "session.critical" : "session.warning");
  r.set_severity(severity);
  r.set_summary("Shop (155******67) has been offline for 5m");
  auto* s = r.mutable_session();
  s->set_session_id("s1");
  s->set_tenant_id("acme");
  s->set_account_name("Shop");
  s->set_phone_number_masked("155******67");
  s->set_owner_email("owner@acme.example");
  return r;
}

int Count(const v1::Alert& a, Channel channel, Kind kind) {
  int n = 0;
  for (const auto& d : a.deliveries()) n += d.channel() == channel && d.kind() == kind;
  return n;
}

TEST(PgAlertStore, OneOutageIsOneAlertThatEscalatesAndResolves) {
  AlertDb f;
  wasentinel::testing::FakeClock clock;
  const std::string all = f.AddEndpoint("https://hooks.example/all");
  f.AddEndpoint("https://hooks.example/critical-only", "{session.critical}");

  auto first = f.store.Raise(Offline(v1::SEVERITY_WARNING), {"oncall@ops.example"}, clock.Now());
  ASSERT_THAT(first, IsOk()) << first.status();
  EXPECT_TRUE(first->created);
  EXPECT_EQ(first->alert.status(), v1::Alert::STATUS_OPEN);
  EXPECT_EQ(first->alert.session().phone_number_masked(), "155******67");
  // Owner and on-call by e-mail; the endpoint taking every type by webhook.
  EXPECT_EQ(Count(first->alert, v1::Delivery::CHANNEL_EMAIL, v1::Delivery::KIND_NOTIFY), 2);
  ASSERT_EQ(Count(first->alert, v1::Delivery::CHANNEL_WEBHOOK, v1::Delivery::KIND_NOTIFY), 1);
  for (const auto& d : first->alert.deliveries()) {
    EXPECT_EQ(d.status(), v1::Delivery::STATUS_PENDING);
    if (d.channel() == v1::Delivery::CHANNEL_WEBHOOK) EXPECT_EQ(d.target(), all);
  }

  clock.Advance(absl::Minutes(1));
  auto again = f.store.Raise(Offline(v1::SEVERITY_WARNING), {"oncall@ops.example"}, clock.Now());
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(again->created);
  EXPECT_FALSE(again->escalated);
  EXPECT_EQ(again->alert.id(), first->alert.id());
  EXPECT_EQ(again->alert.raise_count(), 2);
  EXPECT_EQ(again->alert.deliveries_size(), 3) << "a repeat notifies nobody";

  clock.Advance(absl::Hours(6));
  auto critical =
      f.store.Raise(Offline(v1::SEVERITY_CRITICAL), {"oncall@ops.example"}, clock.Now());
  ASSERT_THAT(critical, IsOk());
  EXPECT_TRUE(critical->escalated);
  EXPECT_EQ(critical->alert.id(), first->alert.id());
  EXPECT_EQ(critical->alert.severity(), v1::SEVERITY_CRITICAL);
  EXPECT_EQ(critical->alert.event_type(), "session.critical");
  // Notified again: 2 e-mails, and now both endpoints.
  EXPECT_EQ(Count(critical->alert, v1::Delivery::CHANNEL_EMAIL, v1::Delivery::KIND_NOTIFY), 4);
  EXPECT_EQ(Count(critical->alert, v1::Delivery::CHANNEL_WEBHOOK, v1::Delivery::KIND_NOTIFY), 3);
  // A lower severity afterwards folds in.
  auto lower = f.store.Raise(Offline(v1::SEVERITY_WARNING), {}, clock.Now());
  ASSERT_THAT(lower, IsOk());
  EXPECT_FALSE(lower->escalated);
  EXPECT_EQ(lower->alert.severity(), v1::SEVERITY_CRITICAL);

  clock.Advance(absl::Minutes(3));
  auto resolved = f.store.Resolve("session.offline/s1", "connected again", clock.Now());
  ASSERT_THAT(resolved, IsOk()) << resolved.status();
  EXPECT_EQ(resolved->status(), v1::Alert::STATUS_RESOLVED);
  EXPECT_EQ(FromProto(resolved->resolved_at()), clock.Now());
  // One resolved notice per target notified: 2 addresses, 2 endpoints.
  EXPECT_EQ(Count(*resolved, v1::Delivery::CHANNEL_EMAIL, v1::Delivery::KIND_RESOLVED), 2);
  EXPECT_EQ(Count(*resolved, v1::Delivery::CHANNEL_WEBHOOK, v1::Delivery::KIND_RESOLVED), 2);
  // Idempotent; then the key starts a new alert.
  auto twice = f.store.Resolve("session.offline/s1", "again", clock.Now());
  ASSERT_THAT(twice, IsOk());
  EXPECT_EQ(twice->deliveries_size(), resolved->deliveries_size());
  auto next = f.store.Raise(Offline(v1::SEVERITY_WARNING), {}, clock.Now());
  ASSERT_THAT(next, IsOk());
  EXPECT_TRUE(next->created);
  EXPECT_NE(next->alert.id(), first->alert.id());
  EXPECT_EQ(f.store.Resolve("never/raised", "", clock.Now()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(PgAlertStore, ASilencedAlertIsRecordedButNotDelivered) {
  AlertDb f;
  wasentinel::testing::FakeClock clock;
  f.AddEndpoint("https://hooks.example/all");
  f.AddSilence("acme", clock.Now() + absl::Hours(1));
  auto raised = f.store.Raise(Offline(v1::SEVERITY_CRITICAL), {"oncall@ops.example"}, clock.Now());
  ASSERT_THAT(raised, IsOk());
  EXPECT_EQ(raised->alert.status(), v1::Alert::STATUS_SUPPRESSED);
  EXPECT_EQ(raised->alert.deliveries_size(), 0);
  auto resolved = f.store.Resolve("session.offline/s1", "", clock.Now());
  ASSERT_THAT(resolved, IsOk());
  EXPECT_EQ(resolved->deliveries_size(), 0) << "nobody was told, so nobody is told it ended";
  // After the silence: delivered.
  clock.Advance(absl::Hours(2));
  auto later = f.store.Raise(Offline(v1::SEVERITY_CRITICAL), {}, clock.Now());
  ASSERT_THAT(later, IsOk());
  EXPECT_EQ(later->alert.status(), v1::Alert::STATUS_OPEN);
  EXPECT_EQ(later->alert.deliveries_size(), 2);
}

TEST(PgAlertStore, BadInputIsRefusedClearly) {
  AlertDb f;
  wasentinel::testing::FakeClock clock;
  auto no_key = Offline(v1::SEVERITY_WARNING);
  no_key.clear_dedup_key();
  EXPECT_EQ(f.store.Raise(no_key, {}, clock.Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto long_key = Offline(v1::SEVERITY_WARNING, std::string(201, 'k'));
  EXPECT_EQ(f.store.Raise(long_key, {}, clock.Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto no_severity = Offline(v1::SEVERITY_WARNING);
  no_severity.set_severity(v1::SEVERITY_UNSPECIFIED);
  EXPECT_EQ(f.store.Raise(no_severity, {}, clock.Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.store.Get("nope").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.store.Get("6f1c1f1e-0000-4000-8000-000000000001").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(f.store.List({}, 0, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.store.List({}, 10, "garbage").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PgAlertStore, ListsNewestFirstInPagesWithFilters) {
  AlertDb f;
  wasentinel::testing::FakeClock clock;
  for (int i = 0; i < 5; ++i) {
    clock.Advance(absl::Seconds(1));
    ASSERT_THAT(
        f.store.Raise(Offline(v1::SEVERITY_WARNING, "k" + std::to_string(i)), {}, clock.Now()),
        IsOk());
  }
  ASSERT_THAT(f.store.Resolve("k1", "", clock.Now()), IsOk());
  std::vector<std::string> keys;
  std::string token;
  do {
    auto page = f.store.List({}, 2, token);
    ASSERT_THAT(page, IsOk()) << page.status();
    for (const auto& a : page->alerts) keys.push_back(a.dedup_key());
    token = page->next_page_token;
  } while (!token.empty());
  EXPECT_EQ(keys, (std::vector<std::string>{"k4", "k3", "k2", "k1", "k0"}));
  AlertFilter resolved;
  resolved.statuses = {v1::Alert::STATUS_RESOLVED};
  auto page = f.store.List(resolved, 10, "");
  ASSERT_THAT(page, IsOk());
  ASSERT_EQ(page->alerts.size(), 1u);
  EXPECT_EQ(page->alerts[0].dedup_key(), "k1");
}

TEST(PgAlertStore, TwoRaisesOfOneNewKeyAtOnceMakeOneAlert) {
  AlertDb f;
  wasentinel::testing::FakeClock clock;
  for (int round = 0; round < 10; ++round) {
    const std::string key = "race/" + std::to_string(round);
    absl::StatusOr<RaiseOutcome> a, b;
    std::thread t1([&] { a = f.store.Raise(Offline(v1::SEVERITY_WARNING, key), {}, clock.Now()); });
    std::thread t2([&] { b = f.store.Raise(Offline(v1::SEVERITY_WARNING, key), {}, clock.Now()); });
    t1.join();
    t2.join();
    ASSERT_THAT(a, IsOk()) << a.status();
    ASSERT_THAT(b, IsOk()) << b.status();
    EXPECT_EQ(a->alert.id(), b->alert.id());
    EXPECT_NE(a->created, b->created);
  }
}

TEST(PgAlertStore, RemindersOfCriticalAlertsStillOpen) {
  AlertDb f;
  wasentinel::testing::FakeClock clock;
  f.AddEndpoint("https://hooks.example/all");
  ASSERT_THAT(f.store.Raise(Offline(v1::SEVERITY_CRITICAL), {}, clock.Now()), IsOk());
  ASSERT_THAT(f.store.Raise(Offline(v1::SEVERITY_WARNING, "warning/only"), {}, clock.Now()),
              IsOk());
  EXPECT_EQ(f.store.Remind(absl::Hours(1), clock.Now()).value(), 0) << "not yet";
  clock.Advance(absl::Hours(1));
  EXPECT_EQ(f.store.Remind(absl::Hours(1), clock.Now()).value(), 1) << "critical only";
  EXPECT_EQ(f.store.Remind(absl::Hours(1), clock.Now()).value(), 0) << "once per interval";
  auto a = f.store.Resolve("session.offline/s1", "", clock.Now()).value();
  EXPECT_EQ(Count(a, v1::Delivery::CHANNEL_EMAIL, v1::Delivery::KIND_REMINDER), 1);
  EXPECT_EQ(Count(a, v1::Delivery::CHANNEL_WEBHOOK, v1::Delivery::KIND_REMINDER), 1);
  clock.Advance(absl::Hours(2));
  EXPECT_EQ(f.store.Remind(absl::Hours(1), clock.Now()).value(), 0) << "resolved: no reminders";
}

}  // namespace
}  // namespace wasentinel::alert
