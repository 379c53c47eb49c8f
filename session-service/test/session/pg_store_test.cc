#include "pg_store.h"

#include <gtest/gtest.h>

#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/testing/recorder.h"
#include "wasentinel/testing/test_database.h"

namespace wasentinel::session {
namespace {

using ::wasentinel::testing::StatusIs;

struct Fixture {
  wasentinel::testing::TestDatabase db;
  std::unique_ptr<PgPool> pool = PgPool::Create(db.url(), 2).value();
  PgSessionStore store{*pool};
  Fixture() {
    auto log = MakeLogger("test", "warn");
    EXPECT_TRUE(ApplyMigrations(*pool, "session-service", PgSessionStore::Migrations(), *log).ok());
  }
};

SessionRecord NewRecord(std::string tenant, std::string name = "primary") {
  SessionRecord r;
  r.tenant_id = std::move(tenant);
  r.session_name = std::move(name);
  r.phone_number = "15551234567";
  r.device_jid = "15551234567:12@s.whatsapp.net";
  r.account_name = "Shop";
  r.credentials = SealedCredentials{"k1", Bytes{1, 2, 3, 0, 255}};
  return r;
}

TEST(PgSessionStore, MigrationsApplyOnce) {
  Fixture f;
  auto log = MakeLogger("test", "warn");
  EXPECT_TRUE(ApplyMigrations(*f.pool, "session-service", PgSessionStore::Migrations(), *log).ok());
}

TEST(PgSessionStore, CreatesAndReadsBack) {
  Fixture f;
  auto [rec, event] = f.store.Create(NewRecord("acme")).value();
  EXPECT_EQ(rec.id.size(), 36u);
  EXPECT_EQ(rec.state, v1::SESSION_STATE_DISCONNECTED);
  EXPECT_EQ(rec.reason, v1::STATE_REASON_CREATED);
  EXPECT_TRUE(rec.auto_connect);
  EXPECT_GT(event.sequence, 0);
  EXPECT_EQ(event.to, v1::SESSION_STATE_DISCONNECTED);
  auto got = f.store.Get(rec.id).value();
  EXPECT_EQ(got.tenant_id, "acme");
  ASSERT_TRUE(got.credentials.has_value());
  EXPECT_EQ(got.credentials->blob, (Bytes{1, 2, 3, 0, 255}));
  EXPECT_EQ(got.credentials->key_id, "k1");
}

TEST(PgSessionStore, ClearErrors) {
  Fixture f;
  ASSERT_TRUE(f.store.Create(NewRecord("acme")).ok());
  EXPECT_THAT(f.store.Create(NewRecord("acme")).status(),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(f.store.Get("not-a-uuid").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(f.store.Get("00000000-0000-0000-0000-000000000000").status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(f.store.List({}, 10, "'; drop table sessions; --").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PgSessionStore, TransitionsUpdateTheRowAndAppendEvents) {
  Fixture f;
  auto [rec, created] = f.store.Create(NewRecord("acme")).value();
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  Transition t{rec.id,
               rec.tenant_id,
               v1::SESSION_STATE_DISCONNECTED,
               v1::SESSION_STATE_CONNECTING,
               v1::STATE_REASON_STARTUP_RESTORE,
               "",
               t0};
  auto e1 = f.store.RecordTransition(t).value();
  t = {rec.id,
       rec.tenant_id,
       v1::SESSION_STATE_CONNECTING,
       v1::SESSION_STATE_CONNECTED,
       v1::STATE_REASON_LOGIN_SUCCESS,
       "",
       t0 + absl::Seconds(1)};
  auto e2 = f.store.RecordTransition(t).value();
  t = {rec.id,
       rec.tenant_id,
       v1::SESSION_STATE_CONNECTED,
       v1::SESSION_STATE_DISCONNECTED,
       v1::STATE_REASON_SOCKET_CLOSED,
       "socket closed",
       t0 + absl::Seconds(2)};
  t.count_error = true;
  auto e3 = f.store.RecordTransition(t).value();
  EXPECT_LT(created.sequence, e1.sequence);
  EXPECT_LT(e1.sequence, e2.sequence);
  EXPECT_LT(e2.sequence, e3.sequence);
  EXPECT_EQ(e3.at, t0 + absl::Seconds(2));

  auto got = f.store.Get(rec.id).value();
  EXPECT_EQ(got.state, v1::SESSION_STATE_DISCONNECTED);
  EXPECT_EQ(got.reason, v1::STATE_REASON_SOCKET_CLOSED);
  EXPECT_EQ(got.last_error, "socket closed");
  EXPECT_EQ(got.last_connected_at, t0 + absl::Seconds(1));
  EXPECT_EQ(got.last_disconnected_at, t0 + absl::Seconds(2));
  EXPECT_EQ(got.error_count, 1);

  auto events = f.store.EventsAfter(created.sequence, {}, 100).value();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[1].reason, v1::STATE_REASON_LOGIN_SUCCESS);
  EXPECT_EQ(f.store.LatestSequence().value(), e3.sequence);
  EXPECT_EQ(f.store.OldestSequence().value(), created.sequence);

  // A logout forgets the credentials.
  t = {rec.id,
       rec.tenant_id,
       v1::SESSION_STATE_DISCONNECTED,
       v1::SESSION_STATE_LOGGED_OUT,
       v1::STATE_REASON_LOGGED_OUT,
       "stream error 401",
       t0 + absl::Seconds(3)};
  t.clear_credentials = true;
  ASSERT_TRUE(f.store.RecordTransition(t).ok());
  EXPECT_FALSE(f.store.Get(rec.id).value().credentials.has_value());
}

TEST(PgSessionStore, PrunesOldEventsInBatches) {
  Fixture f;
  auto [rec, created] = f.store.Create(NewRecord("acme")).value();
  const absl::Time t0 = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) - 2 * 86400);
  for (int i = 0; i < 5; ++i) {
    Transition t{rec.id,
                 rec.tenant_id,
                 v1::SESSION_STATE_DISCONNECTED,
                 v1::SESSION_STATE_CONNECTING,
                 v1::STATE_REASON_RETRY,
                 "",
                 t0 + absl::Seconds(i)};
    ASSERT_TRUE(f.store.RecordTransition(t).ok());
  }
  // The CREATED event is from now; the five others from two days ago. Cut after the third.
  EXPECT_EQ(f.store.PruneEventsBefore(t0 + absl::Seconds(2.5), 2).value(), 2);
  EXPECT_EQ(f.store.PruneEventsBefore(t0 + absl::Seconds(2.5), 2).value(), 1);
  EXPECT_EQ(f.store.PruneEventsBefore(t0 + absl::Seconds(2.5), 2).value(), 0);
  auto left = f.store.EventsAfter(0, {}, 100).value();
  ASSERT_EQ(left.size(), 3u);
  EXPECT_EQ(left[0].sequence, created.sequence);
  EXPECT_EQ(left[1].at, t0 + absl::Seconds(3));
}

TEST(PgSessionStore, ListsWithFiltersAndPages) {
  Fixture f;
  for (int i = 0; i < 7; ++i)
    ASSERT_TRUE(f.store.Create(NewRecord("t1", "s" + std::to_string(i))).ok());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(f.store.Create(NewRecord("t2", "s" + std::to_string(i))).ok());
  std::vector<std::string> seen;
  std::string token;
  do {
    auto page = f.store.List({.tenant_id = "t1"}, 3, token).value();
    EXPECT_LE(page.sessions.size(), 3u);
    for (const auto& s : page.sessions) {
      EXPECT_EQ(s.tenant_id, "t1");
      seen.push_back(s.id);
    }
    token = page.next_page_token;
  } while (!token.empty());
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(
      f.store.List({.states = {v1::SESSION_STATE_CONNECTED}}, 100, "").value().sessions.size(), 0u);
  EXPECT_EQ(
      f.store.List({.states = {v1::SESSION_STATE_DISCONNECTED}}, 100, "").value().sessions.size(),
      10u);
  auto counts = f.store.CountByState().value();
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].second, 10);
}

TEST(PgSessionStore, RestorableAreActivePrimaryWithCredentials) {
  Fixture f;
  auto primary = f.store.Create(NewRecord("a")).value().first;
  ASSERT_TRUE(f.store.Create(NewRecord("b", "secondary")).ok());
  auto manual = NewRecord("c");
  manual.auto_connect = false;
  ASSERT_TRUE(f.store.Create(manual).ok());
  auto inactive = NewRecord("d");
  inactive.is_active = false;
  ASSERT_TRUE(f.store.Create(inactive).ok());
  auto nocreds = NewRecord("e");
  nocreds.credentials.reset();
  ASSERT_TRUE(f.store.Create(nocreds).ok());
  auto restorable = f.store.ListRestorable().value();
  ASSERT_EQ(restorable.size(), 1u);
  EXPECT_EQ(restorable[0].id, primary.id);
}

}  // namespace
}  // namespace wasentinel::session
