#include "pg_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "transition_writer.h"
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

// A lease time-to-live already past: a holder renewed with it is expired at once.
constexpr absl::Duration kExpired = absl::Microseconds(-1);

// A new lease holder (an incarnation) of replica `id`, live for a minute.
int64_t StartHolder(SessionStore& store, const std::string& id, const std::string& address = "") {
  return store.StartHolder({id, address}, absl::Minutes(1)).value();
}

// The transaction ids that last wrote the rows `sql` selects (as `xmin::text`): a row written
// again shows a new one.
std::vector<std::string> Writers(PgPool& pool, const std::string& sql) {
  std::vector<std::string> out;
  EXPECT_THAT(pool.Run("read xmin",
                       [&](pqxx::connection& c) {
                         pqxx::nontransaction n(c);
                         auto r = n.exec(sql);
                         for (const auto& row : r) out.push_back(row[0].as<std::string>());
                       }),
              IsOk());
  return out;
}

// Runs `sql` with `args` on a connection of the test's own: to write rows as a replica of the
// previous version does, or to look at them. Answers its rows.
template <class... Args>
pqxx::result Sql(PgPool& pool, const std::string& sql, const Args&... args) {
  pqxx::result out;
  EXPECT_THAT(pool.Run("test sql",
                       [&](pqxx::connection& c) {
                         pqxx::nontransaction n(c);
                         if constexpr (sizeof...(Args) == 0) {
                           out = n.exec(sql);
                         } else {
                           out = n.exec_params(sql, args...);
                         }
                       }),
              IsOk());
  return out;
}

// The previous version's lease (before migration 4): no holder, its own expiry `ttl_sql` (an
// SQL interval) from now. Answers its token.
int64_t PreviousVersionLease(PgPool& pool, const std::string& session_id, const std::string& owner,
                             const std::string& ttl_sql = "1 minute") {
  auto r = Sql(pool,
               "INSERT INTO session_leases (session_id, owner, token, expires_at) VALUES"
               " ($1::uuid, $2, nextval('session_lease_tokens'), now() + $3::interval)"
               " RETURNING token",
               session_id, owner, ttl_sql);
  return r.size() == 1 ? r[0][0].as<int64_t>() : 0;
}

// The previous version's heartbeat (its Heartbeat before migration 4), `age_sql` ago.
void PreviousVersionBeat(PgPool& pool, const std::string& id, const std::string& address,
                         const std::string& age_sql = "0 seconds") {
  Sql(pool,
      "INSERT INTO session_replicas (replica_id, address, heartbeat_at) VALUES ($1, $2,"
      " now() - $3::interval) ON CONFLICT (replica_id) DO UPDATE SET address = EXCLUDED.address,"
      " heartbeat_at = EXCLUDED.heartbeat_at",
      id, address, age_sql);
}

TEST(PgSessionStore, LeaseExcludesOthersUntilItsHolderExpires) {
  Fixture f;
  auto rec = f.store.Create(NewRecord("acme")).value().first;
  const int64_t ha = StartHolder(f.store, "replica-a");
  const int64_t hb = StartHolder(f.store, "replica-b");
  EXPECT_NE(ha, hb);
  auto a = f.store.AcquireLeases({rec.id}, "replica-a", ha).value();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_GT(a[0].token, 0);
  EXPECT_TRUE(f.store.AcquireLeases({rec.id}, "replica-b", hb).value().empty());
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->id, "replica-a");
  EXPECT_EQ(f.store.Get(rec.id).value().owner, "replica-a");
  // The holder may take it again (a restart under the same id): a newer token.
  auto again = f.store.AcquireLeases({rec.id}, "replica-a", ha).value();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_GT(again[0].token, a[0].token);
  EXPECT_EQ(f.store.HeldTokens(ha).value(), std::vector<int64_t>{again[0].token});
  // Not renewed in time: the lease is no longer live, and another replica takes it, with a
  // newer token still.
  ASSERT_THAT(f.store.RenewHolder(ha, kExpired), IsOk());
  EXPECT_FALSE(f.store.LeaseOwner(rec.id).value().has_value());
  EXPECT_EQ(f.store.Get(rec.id).value().owner, "");
  auto b = f.store.AcquireLeases({rec.id}, "replica-b", hb).value();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_GT(b[0].token, again[0].token);
  // Taking it deleted the expired holder: it is never renewed again, nor takes anything.
  EXPECT_THAT(f.store.RenewHolder(ha, absl::Minutes(1)).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(f.store.HeldTokens(ha).value().empty());
  auto fresh = f.store.Create(NewRecord("other")).value().first;
  EXPECT_THAT(f.store.AcquireLeases({fresh.id}, "replica-a", ha).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  auto renewed = f.store.RenewHolder(hb, absl::Minutes(1)).value();
  EXPECT_EQ(renewed.leases, 1);
  EXPECT_EQ(renewed.token_sum, b[0].token);
  EXPECT_EQ(f.store.HeldTokens(hb).value(), std::vector<int64_t>{b[0].token});
  EXPECT_THAT(f.store.AcquireLeases({"nope"}, "replica-b", hb).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Unknown sessions are simply not won.
  EXPECT_TRUE(f.store.AcquireLeases({"00000000-0000-0000-0000-000000000000"}, "replica-b", hb)
                  .value()
                  .empty());
}

TEST(PgSessionStore, RenewingAHolderWritesOneRowWhateverItHolds) {
  Fixture f;
  const int64_t holder = StartHolder(f.store, "replica-a");
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    ids.push_back(f.store.Create(NewRecord("t" + std::to_string(i))).value().first.id);
  }
  auto won = f.store.AcquireLeases(ids, "replica-a", holder).value();
  ASSERT_EQ(won.size(), 50u);
  int64_t token_sum = 0;
  for (const auto& l : won) token_sum += l.token;

  const std::string leases = "SELECT xmin::text FROM session_leases ORDER BY session_id";
  const std::string holders = "SELECT xmin::text FROM lease_holders ORDER BY holder";
  const auto leases_before = Writers(*f.pool, leases);
  const auto holders_before = Writers(*f.pool, holders);
  auto renewed = f.store.RenewHolder(holder, absl::Minutes(1)).value();
  EXPECT_EQ(renewed.leases, 50);
  EXPECT_EQ(renewed.token_sum, token_sum);
  // The holder row was written again; not one lease row was.
  EXPECT_EQ(Writers(*f.pool, leases), leases_before);
  ASSERT_EQ(holders_before.size(), 1u);
  EXPECT_NE(Writers(*f.pool, holders), holders_before);

  // A lease given up leaves the count and the sum; the tokens name what is left.
  ASSERT_THAT(f.store.ReleaseLeases({won[7].token}), IsOk());
  renewed = f.store.RenewHolder(holder, absl::Minutes(1)).value();
  EXPECT_EQ(renewed.leases, 49);
  EXPECT_EQ(renewed.token_sum, token_sum - won[7].token);
  auto tokens = f.store.HeldTokens(holder).value();
  ASSERT_EQ(tokens.size(), 49u);
  EXPECT_TRUE(std::is_sorted(tokens.begin(), tokens.end()));
  EXPECT_EQ(std::count(tokens.begin(), tokens.end(), won[7].token), 0);
}

TEST(PgSessionStore, StaleFencingTokensCannotWrite) {
  Fixture f;
  auto rec = f.store.Create(NewRecord("acme")).value().first;
  const int64_t ha = StartHolder(f.store, "replica-a");
  const int64_t hb = StartHolder(f.store, "replica-b");
  // Nobody holds it: an unleased write (token 0) lands.
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_DISCONNECTED, 0), IsOk());
  auto a = f.store.AcquireLeases({rec.id}, "replica-a", ha).value().at(0);
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_CONNECTING, a.token), IsOk());
  auto unleased = Write(f.store, rec, v1::SESSION_STATE_DISCONNECTED, 0);
  EXPECT_TRUE(IsFenced(unleased.status())) << unleased.status();
  // Its holder expired: the lease is not live, so an unleased write lands again.
  ASSERT_THAT(f.store.RenewHolder(ha, kExpired), IsOk());
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_DISCONNECTED, 0), IsOk());
  auto b = f.store.AcquireLeases({rec.id}, "replica-b", hb).value().at(0);
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

// A batch is one transaction: a fenced transition and one of a deleted session are answered as
// such and the others stored in order, each with its own event.
TEST(PgSessionStore, BatchOfTransitionsAnswersEachInOrder) {
  Fixture f;
  auto a = f.store.Create(NewRecord("a")).value().first;
  auto b = f.store.Create(NewRecord("b")).value().first;
  const int64_t holder = StartHolder(f.store, "replica-a");
  const int64_t token = f.store.AcquireLeases({a.id}, "replica-a", holder).value().at(0).token;
  auto change = [](const SessionRecord& rec, v1::SessionState from, v1::SessionState to,
                   int64_t lease) {
    Transition t{rec.id, rec.tenant_id, from, to, v1::STATE_REASON_STARTUP_RESTORE,
                 "",     absl::Now()};
    t.lease_token = lease;
    return t;
  };
  std::vector<Transition> batch = {
      change(a, v1::SESSION_STATE_DISCONNECTED, v1::SESSION_STATE_CONNECTING, token),
      change(b, v1::SESSION_STATE_DISCONNECTED, v1::SESSION_STATE_CONNECTING, 7),  // not its
      change(a, v1::SESSION_STATE_CONNECTING, v1::SESSION_STATE_CONNECTED, token),
  };
  Transition gone = change(b, v1::SESSION_STATE_DISCONNECTED, v1::SESSION_STATE_CONNECTING, 0);
  gone.session_id = "00000000-0000-0000-0000-000000000000";
  batch.push_back(gone);
  auto answers = f.store.RecordTransitions(batch).value();
  ASSERT_EQ(answers.size(), 4u);
  ASSERT_THAT(answers[0], IsOk());
  EXPECT_TRUE(IsFenced(answers[1].status())) << answers[1].status();
  ASSERT_THAT(answers[2], IsOk());
  EXPECT_THAT(answers[3].status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_LT(answers[0]->sequence, answers[2]->sequence);
  EXPECT_EQ(answers[2]->to, v1::SESSION_STATE_CONNECTED);
  EXPECT_EQ(f.store.Get(a.id).value().state, v1::SESSION_STATE_CONNECTED);
  EXPECT_EQ(f.store.Get(b.id).value().state, v1::SESSION_STATE_DISCONNECTED);
}

// A statement that fails takes its batch's transaction with it: the writer then writes that
// batch one transition at a time, so only the one at fault is dropped, and the order holds.
TEST(TransitionWriter, DropsOnlyTheTransitionAtFaultInABatch) {
  Fixture f;
  auto rec = f.store.Create(NewRecord("a")).value().first;
  const int64_t created = f.store.LatestSequence().value();
  std::vector<absl::Status> answers;
  absl::Mutex mu;
  {
    TransitionWriter writer(f.store, MakeLogger("test", "off"));
    for (int i = 0; i < 40; ++i) {
      Transition t{rec.id,
                   rec.tenant_id,
                   v1::SESSION_STATE_DISCONNECTED,
                   v1::SESSION_STATE_CONNECTING,
                   v1::STATE_REASON_RETRY,
                   absl::StrCat("try ", i),
                   absl::Now()};
      // Not UTF-8: PostgreSQL refuses the text, and with it the whole transaction.
      if (i == 17) t.error = "\xff\xfe";
      t.on_stored = [&](const absl::StatusOr<EventRecord>& e) {
        absl::MutexLock lock(&mu);
        answers.push_back(e.status());
      };
      writer.Post(std::move(t));
    }
    ASSERT_TRUE(writer.Drain(absl::Now() + absl::Seconds(30)));
  }
  ASSERT_EQ(answers.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    if (i == 17) {
      EXPECT_THAT(answers[i], StatusIs(absl::StatusCode::kInvalidArgument));
    } else {
      EXPECT_THAT(answers[i], IsOk()) << i;
    }
  }
  auto events = f.store.EventsAfter(created, {}, 100).value();
  ASSERT_EQ(events.size(), 39u);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].error, absl::StrCat("try ", i < 17 ? i : i + 1));
  }
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
  const int64_t ha = StartHolder(f.store, "replica-a");
  const int64_t hb = StartHolder(f.store, "replica-b");
  const int64_t hc = StartHolder(f.store, "replica-c");
  ASSERT_EQ(f.store.AcquireLeases({held.id}, "replica-a", ha).value().size(), 1u);

  auto counts = f.store.CountWanted().value();
  EXPECT_EQ(counts.wanted, 3);    // orphan, retrying, held
  EXPECT_EQ(counts.orphaned, 2);  // orphan, retrying
  auto one = f.store.ClaimOrphans("replica-b", hb, 1).value();
  ASSERT_EQ(one.size(), 1u);
  auto rest = f.store.ClaimOrphans("replica-c", hc, 10).value();
  ASSERT_EQ(rest.size(), 1u);
  std::set<std::string> ids{one[0].session_id, rest[0].session_id};
  EXPECT_EQ(ids, (std::set<std::string>{orphan.id, retrying.id}));
  EXPECT_TRUE(f.store.ClaimOrphans("replica-c", hc, 10).value().empty());
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 0);
}

TEST(PgSessionStore, AnExpiredHolderLosesItsSessionsToClaims) {
  Fixture f;
  const int64_t ha = StartHolder(f.store, "replica-a");
  const int64_t hb = StartHolder(f.store, "replica-b");
  // New sessions with credentials want a socket at once (DISCONNECTED / CREATED).
  std::set<std::string> ids;
  for (const char* tenant : {"a", "b", "c"}) {
    ids.insert(f.store.Create(NewRecord(tenant), "replica-a", ha).value().first.id);
  }
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 0);
  EXPECT_TRUE(f.store.ClaimOrphans("replica-b", hb, 10).value().empty());
  ASSERT_THAT(f.store.RenewHolder(ha, kExpired), IsOk());
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 3);
  auto claimed = f.store.ClaimOrphans("replica-b", hb, 10).value();
  ASSERT_EQ(claimed.size(), 3u);
  std::set<std::string> got;
  int64_t token_sum = 0;
  for (const auto& l : claimed) {
    got.insert(l.session_id);
    token_sum += l.token;
  }
  EXPECT_EQ(got, ids);
  for (const auto& id : ids) EXPECT_EQ(f.store.Get(id).value().owner, "replica-b");
  // The old holder was deleted with its leases: its renewal says so.
  EXPECT_THAT(f.store.RenewHolder(ha, absl::Minutes(1)).status(),
              StatusIs(absl::StatusCode::kNotFound));
  auto renewed = f.store.RenewHolder(hb, absl::Minutes(1)).value();
  EXPECT_EQ(renewed.leases, 3);
  EXPECT_EQ(renewed.token_sum, token_sum);
}

TEST(PgSessionStore, CreatedLeasedIsNeverAnOrphan) {
  Fixture f;
  const int64_t ha = StartHolder(f.store, "replica-a");
  const int64_t hb = StartHolder(f.store, "replica-b");
  // A new session with credentials wants a socket at once (DISCONNECTED / CREATED).
  auto rec = f.store.Create(NewRecord("a"), "replica-a", ha).value().first;
  EXPECT_EQ(rec.owner, "replica-a");
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->id, "replica-a");
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 0);
  EXPECT_TRUE(f.store.ClaimOrphans("replica-b", hb, 10).value().empty());
  // The creator takes its lease up (a fresh token); others cannot.
  EXPECT_TRUE(f.store.AcquireLeases({rec.id}, "replica-b", hb).value().empty());
  EXPECT_EQ(f.store.AcquireLeases({rec.id}, "replica-a", ha).value().size(), 1u);
  // Without an owner it is stored unleased, as before.
  auto plain = f.store.Create(NewRecord("b")).value().first;
  EXPECT_TRUE(plain.owner.empty());
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 1);
}

TEST(PgSessionStore, ReplicasAreLiveWhileTheirHoldersAre) {
  Fixture f;
  const int64_t a1 = StartHolder(f.store, "replica-a", "10.0.0.1:7001");
  const int64_t b = StartHolder(f.store, "replica-b", "10.0.0.2:7001");
  // replica-a restarted elsewhere before its first holder expired: one entry, where it is now.
  const int64_t a2 = StartHolder(f.store, "replica-a", "10.0.0.9:7001");
  auto live = f.store.LiveReplicas().value();
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].id, "replica-a");
  EXPECT_EQ(live[0].address, "10.0.0.9:7001");
  EXPECT_EQ(live[1].id, "replica-b");
  EXPECT_EQ(live[1].address, "10.0.0.2:7001");
  // The lease owner's address comes from the lease's holder.
  auto rec = f.store.Create(NewRecord("acme")).value().first;
  ASSERT_THAT(f.store.AcquireLeases({rec.id}, "replica-b", b), IsOk());
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->id, "replica-b");
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->address, "10.0.0.2:7001");
  // Holders that expire leave the set.
  ASSERT_THAT(f.store.RenewHolder(a1, kExpired), IsOk());
  ASSERT_THAT(f.store.RenewHolder(a2, kExpired), IsOk());
  live = f.store.LiveReplicas().value();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].id, "replica-b");
}

TEST(PgSessionStore, ARestartedReplicaTakesItsPredecessorsLeasesAtOnce) {
  Fixture f;
  const int64_t old_holder = StartHolder(f.store, "replica-a", "10.0.0.1:7001");
  const int64_t other = StartHolder(f.store, "replica-b", "10.0.0.2:7001");
  auto rec = f.store.Create(NewRecord("acme")).value().first;
  auto before = f.store.AcquireLeases({rec.id}, "replica-a", old_holder).value().at(0);
  // The same replica id under a new holder (a restart) takes it while the old holder is live;
  // another replica cannot.
  const int64_t new_holder = StartHolder(f.store, "replica-a", "10.0.0.9:7001");
  EXPECT_TRUE(f.store.AcquireLeases({rec.id}, "replica-b", other).value().empty());
  auto after = f.store.AcquireLeases({rec.id}, "replica-a", new_holder).value();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_GT(after[0].token, before.token);
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->address, "10.0.0.9:7001");
  EXPECT_TRUE(f.store.HeldTokens(old_holder).value().empty());
  EXPECT_EQ(f.store.HeldTokens(new_holder).value(), std::vector<int64_t>{after[0].token});
  EXPECT_EQ(f.store.RenewHolder(old_holder, absl::Minutes(1)).value().leases, 0);
  // The old token no longer writes.
  EXPECT_TRUE(IsFenced(Write(f.store, rec, v1::SESSION_STATE_CONNECTING, before.token).status()));
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_CONNECTING, after[0].token), IsOk());
  // The old holder expiring takes nothing of the new one's with it.
  ASSERT_THAT(f.store.RenewHolder(old_holder, kExpired), IsOk());
  EXPECT_TRUE(f.store.ClaimOrphans("replica-b", other, 10).value().empty());
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->address, "10.0.0.9:7001");
}

TEST(PgSessionStore, EndingAHolderFreesItsLeasesAtOnce) {
  Fixture f;
  const int64_t leaving = StartHolder(f.store, "replica-a", "10.0.0.1:7001");
  const int64_t staying = StartHolder(f.store, "replica-b", "10.0.0.2:7001");
  auto rec = f.store.Create(NewRecord("acme"), "replica-a", leaving).value().first;
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 0);
  ASSERT_THAT(f.store.EndHolder(leaving), IsOk());
  EXPECT_FALSE(f.store.LeaseOwner(rec.id).value().has_value());
  auto live = f.store.LiveReplicas().value();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].id, "replica-b");
  EXPECT_THAT(f.store.RenewHolder(leaving, absl::Minutes(1)).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(f.store.EndHolder(leaving), IsOk());  // gone already
  // Its session is an orphan at once, long before the holder would have expired.
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 1);
  auto claimed = f.store.ClaimOrphans("replica-b", staying, 10).value();
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].session_id, rec.id);
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->id, "replica-b");
}

// ---- Expand step of migration 4: replicas of the previous version run beside this one during
// a rolling update (pg_store.cc kLeaseIsLive; the contract release removes these tests). ----

TEST(PgSessionStore, APreviousVersionLeaseIsLiveUntilItsOwnExpiry) {
  Fixture f;
  auto rec = f.store.Create(NewRecord("acme")).value().first;
  PreviousVersionBeat(*f.pool, "replica-old", "10.0.0.5:7001");
  const int64_t old_token = PreviousVersionLease(*f.pool, rec.id, "replica-old");
  ASSERT_GT(old_token, 0);
  const int64_t hb = StartHolder(f.store, "replica-b", "10.0.0.2:7001");
  // Live: nobody of this version takes it, and calls go to its owner, at its heartbeat address.
  auto owner = f.store.LeaseOwner(rec.id).value();
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->id, "replica-old");
  EXPECT_EQ(owner->address, "10.0.0.5:7001");
  EXPECT_EQ(f.store.Get(rec.id).value().owner, "replica-old");
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 0);
  EXPECT_TRUE(f.store.ClaimOrphans("replica-b", hb, 10).value().empty());
  EXPECT_TRUE(f.store.AcquireLeases({rec.id}, "replica-b", hb).value().empty());
  // Its owner writes under its token; an unleased write is fenced.
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_CONNECTING, old_token), IsOk());
  EXPECT_TRUE(IsFenced(Write(f.store, rec, v1::SESSION_STATE_DISCONNECTED, 0).status()));

  // Its owner stopped renewing it: once its expiry passed, it is an orphan and claimed.
  Sql(*f.pool,
      "UPDATE session_leases SET expires_at = now() - interval '1 second'"
      " WHERE session_id = $1::uuid",
      rec.id);
  EXPECT_FALSE(f.store.LeaseOwner(rec.id).value().has_value());
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 1);
  auto claimed = f.store.ClaimOrphans("replica-b", hb, 10).value();
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].session_id, rec.id);
  EXPECT_GT(claimed[0].token, old_token);
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->id, "replica-b");
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->address, "10.0.0.2:7001");
  EXPECT_EQ(f.store.HeldTokens(hb).value(), std::vector<int64_t>{claimed[0].token});
  // The row is this version's now, with an expiry the previous version honours too.
  auto row = Sql(
      *f.pool, "SELECT holder, expires_at > now() FROM session_leases WHERE session_id = $1::uuid",
      rec.id);
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0][0].as<int64_t>(), hb);
  EXPECT_TRUE(row[0][1].as<bool>());
  EXPECT_TRUE(IsFenced(Write(f.store, rec, v1::SESSION_STATE_DISCONNECTED, old_token).status()));
}

TEST(PgSessionStore, AnExpiredPreviousVersionLeaseIsTakenByAcquire) {
  Fixture f;
  auto rec = f.store.Create(NewRecord("acme")).value().first;
  const int64_t hb = StartHolder(f.store, "replica-b");
  const int64_t old_token = PreviousVersionLease(*f.pool, rec.id, "replica-old", "-1 second");
  ASSERT_GT(old_token, 0);
  auto won = f.store.AcquireLeases({rec.id}, "replica-b", hb).value();
  ASSERT_EQ(won.size(), 1u);
  EXPECT_GT(won[0].token, old_token);
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->id, "replica-b");
}

TEST(PgSessionStore, APreviousVersionTakeoverLeavesTheHolder) {
  Fixture f;
  const int64_t ha = StartHolder(f.store, "replica-a");
  const int64_t hb = StartHolder(f.store, "replica-b");
  auto rec = f.store.Create(NewRecord("acme"), "replica-a", ha).value().first;
  // replica-a stops renewing; a replica of the previous version sees the lease's own expiry
  // pass and takes it as that version does (owner, token and expiry; holder untouched).
  ASSERT_THAT(f.store.RenewHolder(ha, kExpired), IsOk());
  Sql(*f.pool,
      "UPDATE session_leases SET expires_at = now() - interval '1 second'"
      " WHERE session_id = $1::uuid",
      rec.id);
  auto taken = Sql(*f.pool,
                   "INSERT INTO session_leases (session_id, owner, token, expires_at) SELECT"
                   " $1::uuid, 'replica-old', nextval('session_lease_tokens'),"
                   " now() + interval '1 minute' ON CONFLICT (session_id) DO UPDATE SET"
                   " owner = EXCLUDED.owner, token = EXCLUDED.token, acquired_at = now(),"
                   " expires_at = EXCLUDED.expires_at WHERE session_leases.expires_at <= now()"
                   " RETURNING token",
                   rec.id);
  ASSERT_EQ(taken.size(), 1u);
  // The lease left replica-a's holder with the takeover, so deleting that holder (as the next
  // claim does) keeps it, and it stays live while its own expiry is ahead.
  auto row =
      Sql(*f.pool, "SELECT holder IS NULL FROM session_leases WHERE session_id = $1::uuid", rec.id);
  ASSERT_EQ(row.size(), 1u);
  EXPECT_TRUE(row[0][0].as<bool>());
  EXPECT_TRUE(f.store.ClaimOrphans("replica-b", hb, 10).value().empty());
  EXPECT_THAT(f.store.RenewHolder(ha, absl::Minutes(1)).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(f.store.LeaseOwner(rec.id).value()->id, "replica-old");
  EXPECT_EQ(f.store.CountWanted().value().orphaned, 0);
  EXPECT_THAT(Write(f.store, rec, v1::SESSION_STATE_CONNECTING, taken[0][0].as<int64_t>()), IsOk());
}

TEST(PgSessionStore, RenewalKeepsLeasesUpForThePreviousVersionWhileItRuns) {
  Fixture f;
  const int64_t holder = StartHolder(f.store, "replica-a", "10.0.0.1:7001");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(f.store.Create(NewRecord("t" + std::to_string(i))).value().first.id);
  }
  ASSERT_EQ(f.store.AcquireLeases(ids, "replica-a", holder).value().size(), 5u);
  const std::string leases = "SELECT xmin::text FROM session_leases ORDER BY session_id";
  // The replicas beating in session_replicas.
  auto beats = [&] {
    std::vector<std::string> out;
    for (const auto& row :
         Sql(*f.pool, "SELECT replica_id FROM session_replicas ORDER BY replica_id")) {
      out.push_back(row[0].as<std::string>());
    }
    return out;
  };
  // This version's replicas alone (a heartbeat row of one with a live holder does not count):
  // the lease rows are not written, nor this replica's heartbeat.
  const int64_t other = StartHolder(f.store, "replica-b");
  PreviousVersionBeat(*f.pool, "replica-b", "");
  auto before = Writers(*f.pool, leases);
  auto renewed = f.store.RenewHolder(holder, absl::Minutes(1)).value();
  EXPECT_FALSE(renewed.previous_version_alive);
  EXPECT_EQ(renewed.leases, 5);
  EXPECT_EQ(Writers(*f.pool, leases), before);
  EXPECT_EQ(beats(), std::vector<std::string>{"replica-b"});

  // A replica of the previous version beats (it has no holder): each lease's own expiry
  // follows the holder's, and this replica beats where that version looks for it.
  PreviousVersionBeat(*f.pool, "replica-old", "10.0.0.5:7001");
  Sql(*f.pool, "UPDATE session_leases SET expires_at = now() - interval '1 second'");
  before = Writers(*f.pool, leases);
  renewed = f.store.RenewHolder(holder, absl::Minutes(1)).value();
  EXPECT_TRUE(renewed.previous_version_alive);
  EXPECT_EQ(renewed.leases, 5);
  auto after = Writers(*f.pool, leases);
  ASSERT_EQ(after.size(), 5u);
  for (size_t i = 0; i < after.size(); ++i) EXPECT_NE(after[i], before[i]);
  auto fresh = Sql(*f.pool,
                   "SELECT count(*) FROM session_leases l JOIN lease_holders h ON h.holder ="
                   " l.holder WHERE l.holder = $1 AND l.expires_at = h.expires_at"
                   " AND l.expires_at > now()",
                   holder);
  EXPECT_EQ(fresh[0][0].as<int64_t>(), 5);
  EXPECT_EQ(beats(), (std::vector<std::string>{"replica-a", "replica-b", "replica-old"}));
  auto beat = Sql(*f.pool,
                  "SELECT address, heartbeat_at > now() - interval '10 seconds' FROM"
                  " session_replicas WHERE replica_id = 'replica-a'");
  ASSERT_EQ(beat.size(), 1u);
  EXPECT_EQ(beat[0][0].as<std::string>(), "10.0.0.1:7001");
  EXPECT_TRUE(beat[0][1].as<bool>());
  // A replica of this version starting meanwhile beats at once too.
  StartHolder(f.store, "replica-c", "10.0.0.3:7001");
  EXPECT_EQ(beats(),
            (std::vector<std::string>{"replica-a", "replica-b", "replica-c", "replica-old"}));

  // Once its heartbeat is older than the ttl, renewal is the holder row alone again.
  PreviousVersionBeat(*f.pool, "replica-old", "10.0.0.5:7001", "2 minutes");
  before = Writers(*f.pool, leases);
  renewed = f.store.RenewHolder(holder, absl::Minutes(1)).value();
  EXPECT_FALSE(renewed.previous_version_alive);
  EXPECT_EQ(Writers(*f.pool, leases), before);
  // Ending a holder removes its replica's heartbeat too.
  ASSERT_THAT(f.store.EndHolder(other), IsOk());
  ASSERT_THAT(f.store.EndHolder(holder), IsOk());
  EXPECT_EQ(beats(), (std::vector<std::string>{"replica-c", "replica-old"}));
}

TEST(PgSessionStore, LiveReplicasCountThePreviousVersion) {
  Fixture f;
  const int64_t a = StartHolder(f.store, "replica-a", "10.0.0.1:7001");
  PreviousVersionBeat(*f.pool, "replica-old", "10.0.0.5:7001");
  auto live = f.store.LiveReplicas().value();
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].id, "replica-a");
  EXPECT_EQ(live[0].address, "10.0.0.1:7001");
  EXPECT_EQ(live[1].id, "replica-old");
  EXPECT_EQ(live[1].address, "10.0.0.5:7001");
  // replica-a beats in session_replicas too now (mixed versions): still one entry.
  ASSERT_TRUE(f.store.RenewHolder(a, absl::Minutes(1)).value().previous_version_alive);
  live = f.store.LiveReplicas().value();
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].id, "replica-a");
  EXPECT_EQ(live[1].id, "replica-old");
  // A heartbeat older than the ttl: that replica is gone.
  PreviousVersionBeat(*f.pool, "replica-old", "10.0.0.5:7001", "2 minutes");
  live = f.store.LiveReplicas().value();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].id, "replica-a");
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
