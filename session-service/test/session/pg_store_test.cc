#include "pg_store.h"

#include <gtest/gtest.h>

#include <set>

#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/testing/recorder.h"
#include "wasentinel/testing/status_matchers.h"
#include "wasentinel/testing/test_database.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::session {
namespace {

using ::wasentinel::testing::StatusIs;

struct Fixture : wasentinel::testing::MigratedDatabase<PgSessionStore> {
  Fixture() : MigratedDatabase("session-service") {}
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
  EXPECT_THAT(ApplyMigrations(*f.pool, "session-service", PgSessionStore::Migrations(), *log),
              IsOk());
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
  ASSERT_THAT(f.store.Create(NewRecord("acme")), IsOk());
  const absl::Status dup = f.store.Create(NewRecord("acme")).status();
  EXPECT_THAT(dup, StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(std::string(dup.message()),
              ::testing::HasSubstr("tenant acme already has a session named"));
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
  ASSERT_THAT(f.store.RecordTransition(t), IsOk());
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
    ASSERT_THAT(f.store.RecordTransition(t), IsOk());
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
    ASSERT_THAT(f.store.Create(NewRecord("t1", "s" + std::to_string(i))), IsOk());
  for (int i = 0; i < 3; ++i)
    ASSERT_THAT(f.store.Create(NewRecord("t2", "s" + std::to_string(i))), IsOk());
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
  ASSERT_THAT(f.store.Create(NewRecord("b", "secondary")), IsOk());
  auto manual = NewRecord("c");
  manual.auto_connect = false;
  ASSERT_THAT(f.store.Create(manual), IsOk());
  auto inactive = NewRecord("d");
  inactive.is_active = false;
  ASSERT_THAT(f.store.Create(inactive), IsOk());
  auto nocreds = NewRecord("e");
  nocreds.credentials.reset();
  ASSERT_THAT(f.store.Create(nocreds), IsOk());
  auto restorable = f.store.ListRestorable().value();
  ASSERT_EQ(restorable.size(), 1u);
  EXPECT_EQ(restorable[0].id, primary.id);
}

// A transition to `to` of `rec` written under `token`.
absl::StatusOr<EventRecord> Write(SessionStore& store, const SessionRecord& rec,
                                  v1::SessionState to, int64_t token) {
  Transition t;
  t.session_id = rec.id;
  t.tenant_id = rec.tenant_id;
  t.from = v1::SESSION_STATE_DISCONNECTED;
  t.to = to;
  t.reason = v1::STATE_REASON_USER;
  t.at = absl::Now();
  t.lease_token = token;
  return store.RecordTransition(t);
}

// A lease time-to-live already past: the lease is expired the moment it is written.
constexpr absl::Duration kExpired = absl::Microseconds(-1);

TEST(PgSessionStore, LeaseExcludesOthersUntilItExpires) {
  Fixture f;
  auto rec = f.store.Create(NewRecord("acme")).value().first;
  auto a = f.store.AcquireLeases({rec.id}, "replica-a", absl::Minutes(1)).value();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_GT(a[0].token, 0);
  EXPECT_TRUE(f.store.AcquireLeases({rec.id}, "replica-b", absl::Minutes(1)).value().empty());
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->id, "replica-a");
  EXPECT_EQ(f.store.Get(rec.id).value().owner, "replica-a");
  // The holder may take it again (a restart under the same id): a newer token.
  auto again = f.store.AcquireLeases({rec.id}, "replica-a", absl::Minutes(1)).value();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_GT(again[0].token, a[0].token);
  // Not renewed in time: another replica takes it, with a newer token still.
  ASSERT_EQ(f.store.RenewLeases({again[0].token}, kExpired).value().size(), 1u);
  EXPECT_FALSE(f.store.LeaseOwner(rec.id).value().has_value());
  EXPECT_EQ(f.store.Get(rec.id).value().owner, "");
  auto b = f.store.AcquireLeases({rec.id}, "replica-b", absl::Minutes(1)).value();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_GT(b[0].token, again[0].token);
  // The old token no longer renews anything.
  EXPECT_TRUE(f.store.RenewLeases({again[0].token}, absl::Minutes(1)).value().empty());
  EXPECT_EQ(f.store.RenewLeases({b[0].token}, absl::Minutes(1)).value(),
            std::vector<int64_t>{b[0].token});
  EXPECT_THAT(f.store.AcquireLeases({"nope"}, "replica-b", absl::Minutes(1)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Unknown sessions are simply not won.
  EXPECT_TRUE(
      f.store.AcquireLeases({"00000000-0000-0000-0000-000000000000"}, "replica-b", absl::Minutes(1))
          .value()
          .empty());
}

TEST(PgSessionStore, StaleFencingTokensCannotWrite) {
  Fixture f;
  auto rec = f.store.Create(NewRecord("acme")).value().first;
  // Nobody holds it: an unleased write (token 0) lands.
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_DISCONNECTED, 0), IsOk());
  auto a = f.store.AcquireLeases({rec.id}, "replica-a", absl::Minutes(1)).value().at(0);
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_CONNECTING, a.token), IsOk());
  auto unleased = Write(f.store, rec, v1::SESSION_STATE_DISCONNECTED, 0);
  EXPECT_TRUE(IsFenced(unleased.status())) << unleased.status();
  ASSERT_THAT(f.store.RenewLeases({a.token}, kExpired), IsOk());
  auto b = f.store.AcquireLeases({rec.id}, "replica-b", absl::Minutes(1)).value().at(0);
  auto stale = Write(f.store, rec, v1::SESSION_STATE_DISCONNECTED, a.token);
  EXPECT_TRUE(IsFenced(stale.status())) << stale.status();
  EXPECT_THAT(stale.status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_CONNECTED, b.token), IsOk());
  EXPECT_EQ(f.store.Get(rec.id).value().state, v1::SESSION_STATE_CONNECTED);
  // Given up: anyone may write again.
  ASSERT_THAT(f.store.ReleaseLeases({b.token}), IsOk());
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_DISCONNECTED, 0), IsOk());
  EXPECT_FALSE(IsFenced(absl::NotFoundError("x")));
}

TEST(PgSessionStore, OrphansAreWantedSessionsWithoutALiveLease) {
  Fixture f;
  auto connected = [&](const std::string& tenant, v1::SessionState state, v1::StateReason reason,
                       bool with_creds = true) {
    SessionRecord r = NewRecord(tenant);
    if (!with_creds) r.credentials.reset();
    auto rec = f.store.Create(r).value().first;
    Transition t{rec.id, rec.tenant_id, v1::SESSION_STATE_DISCONNECTED, state, reason,
                 "",     absl::Now()};
    EXPECT_THAT(f.store.RecordTransition(t), IsOk());
    return rec;
  };
  auto orphan = connected("a", v1::SESSION_STATE_CONNECTED, v1::STATE_REASON_LOGIN_SUCCESS);
  auto retrying = connected("b", v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_SOCKET_CLOSED);
  connected("c", v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_USER);
  connected("d", v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_RETRIES_EXHAUSTED);
  connected("e", v1::SESSION_STATE_LOGGED_OUT, v1::STATE_REASON_LOGGED_OUT, false);
  auto held = connected("f", v1::SESSION_STATE_CONNECTED, v1::STATE_REASON_LOGIN_SUCCESS);
  ASSERT_EQ(f.store.AcquireLeases({held.id}, "replica-a", absl::Minutes(1)).value().size(), 1u);

  auto counts = f.store.CountWanted().value();
  EXPECT_EQ(counts.wanted, 3);    // orphan, retrying, held
  EXPECT_EQ(counts.orphaned, 2);  // orphan, retrying
  auto one = f.store.ClaimOrphans("replica-b", absl::Minutes(1), 1).value();
  ASSERT_EQ(one.size(), 1u);
  auto rest = f.store.ClaimOrphans("replica-c", absl::Minutes(1), 10).value();
  ASSERT_EQ(rest.size(), 1u);
  std::set<std::string> ids{one[0].session_id, rest[0].session_id};
  EXPECT_EQ(ids, (std::set<std::string>{orphan.id, retrying.id}));
  EXPECT_TRUE(f.store.ClaimOrphans("replica-c", absl::Minutes(1), 10).value().empty());
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 0);
}

TEST(PgSessionStore, CreatedLeasedIsNeverAnOrphan) {
  Fixture f;
  // A new session with credentials wants a socket at once (DISCONNECTED / CREATED).
  auto rec = f.store.Create(NewRecord("a"), "replica-a", absl::Minutes(1)).value().first;
  EXPECT_EQ(rec.owner, "replica-a");
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->id, "replica-a");
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 0);
  EXPECT_TRUE(f.store.ClaimOrphans("replica-b", absl::Minutes(1), 10).value().empty());
  // The creator takes its lease up (a fresh token); others cannot.
  EXPECT_TRUE(f.store.AcquireLeases({rec.id}, "replica-b", absl::Minutes(1)).value().empty());
  EXPECT_EQ(f.store.AcquireLeases({rec.id}, "replica-a", absl::Minutes(1)).value().size(), 1u);
  // Without an owner it is stored unleased, as before.
  auto plain = f.store.Create(NewRecord("b")).value().first;
  EXPECT_TRUE(plain.owner.empty());
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 1);
}

TEST(PgSessionStore, ReplicasAreLiveWhileTheyBeat) {
  Fixture f;
  ASSERT_THAT(f.store.Heartbeat({"replica-a", "10.0.0.1:7001"}), IsOk());
  ASSERT_THAT(f.store.Heartbeat({"replica-b", "10.0.0.2:7001"}), IsOk());
  ASSERT_THAT(f.store.Heartbeat({"replica-a", "10.0.0.9:7001"}), IsOk());  // moved
  auto live = f.store.LiveReplicas(absl::Minutes(1)).value();
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].id, "replica-a");
  EXPECT_EQ(live[0].address, "10.0.0.9:7001");
  EXPECT_TRUE(f.store.LiveReplicas(kExpired).value().empty());
  ASSERT_THAT(f.store.RemoveReplica("replica-a"), IsOk());
  live = f.store.LiveReplicas(absl::Minutes(1)).value();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].id, "replica-b");
  // The lease owner's address comes from the replica set.
  auto rec = f.store.Create(NewRecord("acme")).value().first;
  ASSERT_THAT(f.store.AcquireLeases({rec.id}, "replica-b", absl::Minutes(1)), IsOk());
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->address, "10.0.0.2:7001");
}

TEST(PgSessionStore, EventsBySequence) {
  Fixture f;
  auto a = f.store.Create(NewRecord("a")).value().second;
  f.store.Create(NewRecord("b")).value();
  auto c = f.store.Create(NewRecord("c")).value().second;
  auto got = f.store.EventsBySequence({c.sequence, a.sequence, 999999}).value();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].sequence, a.sequence);
  EXPECT_EQ(got[1].tenant_id, "c");
}

}  // namespace
}  // namespace wasentinel::session
