// PgHealthStore against a real PostgreSQL (fixture pg): sessions, pages and stats, transitions
// with uptime, recovery attempts for the rate limiter, open alerts, jobs and the event cursor.
#include <gtest/gtest.h>

#include "monitor_db.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/status_matchers.h"
#include "wasentinel/testing/test_database.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::monitor {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

using Fixture = MonitorDb;

std::string Id(int n) {
  return absl::StrCat("6f1c1f1e-0000-4000-8000-", absl::Dec(n, absl::kZeroPad12));
}

MonitoredSession Session(int n, v1::HealthLevel level, sv1::SessionState state,
                         const std::string& tenant = "acme") {
  MonitoredSession s;
  s.health.set_session_id(Id(n));
  s.health.set_tenant_id(tenant);
  s.health.set_level(level);
  s.health.set_state(state);
  s.health.set_score(level == v1::HEALTH_LEVEL_HEALTHY ? 100 : 40);
  s.facts.set_id(Id(n));
  s.facts.set_state(state);
  s.first_seen_at = kT0;
  return s;
}

TEST(PgHealthStore, SavesLoadsPagesAndCounts) {
  Fixture f;
  ASSERT_THAT(f.store.Save(Session(1, v1::HEALTH_LEVEL_HEALTHY, sv1::SESSION_STATE_CONNECTED)),
              IsOk());
  ASSERT_THAT(f.store.Save(Session(2, v1::HEALTH_LEVEL_WARNING, sv1::SESSION_STATE_DISCONNECTED)),
              IsOk());
  auto third = Session(3, v1::HEALTH_LEVEL_CRITICAL, sv1::SESSION_STATE_DISCONNECTED, "other");
  third.health.set_manual_intervention_required(true);
  third.last_proof_of_life = kT0 + absl::Minutes(3);
  ASSERT_THAT(f.store.Save(third), IsOk());
  // Saving again replaces, keeping first_seen_at.
  auto again = Session(1, v1::HEALTH_LEVEL_HEALTHY, sv1::SESSION_STATE_CONNECTED);
  again.first_seen_at = kT0 + absl::Hours(1);
  again.health.set_score(95);
  ASSERT_THAT(f.store.Save(again), IsOk());

  auto all = f.store.LoadAll().value();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].health.score(), 95);
  EXPECT_EQ(all[0].first_seen_at, kT0);
  EXPECT_EQ(all[2].last_proof_of_life, kT0 + absl::Minutes(3));
  EXPECT_EQ(all[2].facts.state(), sv1::SESSION_STATE_DISCONNECTED);

  EXPECT_EQ(f.store.Get(Id(2)).value().health.level(), v1::HEALTH_LEVEL_WARNING);
  EXPECT_EQ(f.store.Get(Id(9)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(f.store.Get("nope").status().code(), absl::StatusCode::kInvalidArgument);

  auto page = f.store.List({}, 2, "").value();
  ASSERT_EQ(page.sessions.size(), 2u);
  auto rest = f.store.List({}, 2, page.next_page_token).value();
  ASSERT_EQ(rest.sessions.size(), 1u);
  EXPECT_TRUE(rest.next_page_token.empty());
  HealthFilter critical;
  critical.levels = {v1::HEALTH_LEVEL_CRITICAL, v1::HEALTH_LEVEL_WARNING};
  EXPECT_EQ(f.store.List(critical, 10, "").value().sessions.size(), 2u);
  HealthFilter manual;
  manual.manual_intervention_only = true;
  EXPECT_EQ(f.store.List(manual, 10, "").value().sessions.size(), 1u);
  HealthFilter acme;
  acme.tenant_id = "acme";
  EXPECT_EQ(f.store.List(acme, 10, "").value().sessions.size(), 2u);

  auto stats = f.store.Stats("").value();
  EXPECT_EQ(stats.total(), 3);
  EXPECT_EQ(stats.healthy(), 1);
  EXPECT_EQ(stats.warning(), 1);
  EXPECT_EQ(stats.critical(), 1);
  EXPECT_EQ(stats.manual_intervention(), 1);
  EXPECT_EQ(stats.counts_size(), 3);
  EXPECT_EQ(f.store.Stats("acme").value().total(), 2);

  ASSERT_THAT(f.store.Forget(Id(2)), IsOk());
  EXPECT_EQ(f.store.LoadAll().value().size(), 2u);
}

TEST(PgHealthStore, SavesABatchInOneTransaction) {
  Fixture f;
  auto a = Session(1, v1::HEALTH_LEVEL_HEALTHY, sv1::SESSION_STATE_CONNECTED);
  auto b = Session(2, v1::HEALTH_LEVEL_WARNING, sv1::SESSION_STATE_DISCONNECTED);
  v1::Transition t;
  t.set_session_id(Id(2));
  *t.mutable_at() = ToProto(kT0);
  t.set_to_level(v1::HEALTH_LEVEL_WARNING);
  t.set_cause("first seen");
  ASSERT_THAT(f.store.SaveBatch({&a, &b}, {t}), IsOk());
  EXPECT_EQ(f.store.LoadAll().value().size(), 2u);
  EXPECT_EQ(f.store.History(Id(2), kT0, kT0 + absl::Hours(1), 10).value().transitions_size(), 1);
  // A transition of a session that is nowhere fails the whole batch.
  auto c = Session(3, v1::HEALTH_LEVEL_HEALTHY, sv1::SESSION_STATE_CONNECTED);
  t.set_session_id(Id(4));
  EXPECT_THAT(f.store.SaveBatch({&c}, {t}), ::testing::Not(IsOk()));
  EXPECT_EQ(f.store.Get(Id(3)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.store.SaveBatch({}, {}), IsOk());
}

TEST(PgHealthStore, HistoryAndUptime) {
  Fixture f;
  ASSERT_THAT(f.store.Save(Session(1, v1::HEALTH_LEVEL_HEALTHY, sv1::SESSION_STATE_CONNECTED)),
              IsOk());
  auto add = [&](absl::Duration after, sv1::SessionState from, sv1::SessionState to,
                 v1::HealthLevel level_from, v1::HealthLevel level_to) {
    v1::Transition t;
    t.set_session_id(Id(1));
    *t.mutable_at() = ToProto(kT0 + after);
    t.set_from_state(from);
    t.set_to_state(to);
    t.set_from_level(level_from);
    t.set_to_level(level_to);
    t.set_cause("test");
    return f.store.AddTransition(t).value();
  };
  using S = sv1::SessionState;
  using L = v1::HealthLevel;
  add(absl::ZeroDuration(), S::SESSION_STATE_UNSPECIFIED, S::SESSION_STATE_CONNECTED,
      L::HEALTH_LEVEL_UNSPECIFIED, L::HEALTH_LEVEL_HEALTHY);
  add(absl::Hours(6), S::SESSION_STATE_CONNECTED, S::SESSION_STATE_DISCONNECTED,
      L::HEALTH_LEVEL_HEALTHY, L::HEALTH_LEVEL_WARNING);
  // A level-only transition does not change the state.
  add(absl::Hours(7), S::SESSION_STATE_UNSPECIFIED, S::SESSION_STATE_UNSPECIFIED,
      L::HEALTH_LEVEL_WARNING, L::HEALTH_LEVEL_CRITICAL);
  add(absl::Hours(9), S::SESSION_STATE_DISCONNECTED, S::SESSION_STATE_CONNECTED,
      L::HEALTH_LEVEL_CRITICAL, L::HEALTH_LEVEL_HEALTHY);

  // A day from first sight: connected 6 h + 15 h of 24 h.
  auto day = f.store.History(Id(1), kT0, kT0 + absl::Hours(24), 100).value();
  ASSERT_EQ(day.transitions_size(), 4);
  EXPECT_EQ(day.transitions(2).to_level(), v1::HEALTH_LEVEL_CRITICAL);
  EXPECT_EQ(day.transitions(2).to_state(), sv1::SESSION_STATE_UNSPECIFIED);
  EXPECT_NEAR(day.uptime_percent(), 100.0 * 21 / 24, 1e-9);
  // From 5 h to 10 h: connected 5–6 and 9–10.
  auto mid = f.store.History(Id(1), kT0 + absl::Hours(5), kT0 + absl::Hours(10), 100).value();
  EXPECT_EQ(mid.transitions_size(), 3);
  EXPECT_NEAR(mid.uptime_percent(), 40.0, 1e-9);
  EXPECT_EQ(mid.watched().seconds(), 5 * 3600);
  // Before first sight does not count as down.
  auto before = f.store.History(Id(1), kT0 - absl::Hours(24), kT0 + absl::Hours(6), 100).value();
  EXPECT_NEAR(before.uptime_percent(), 100.0, 1e-9);
  // The latest `limit` transitions.
  auto last = f.store.History(Id(1), kT0, kT0 + absl::Hours(24), 2).value();
  ASSERT_EQ(last.transitions_size(), 2);
  EXPECT_EQ(last.transitions(1).to_state(), sv1::SESSION_STATE_CONNECTED);
  EXPECT_EQ(f.store.History(Id(7), kT0, kT0 + absl::Hours(1), 10).status().code(),
            absl::StatusCode::kNotFound);

  // Pruning, one row per statement: the two transitions before 7 h go.
  EXPECT_EQ(f.store.PruneHistoryBefore(kT0 + absl::Hours(7), 1).value(), 2);
  EXPECT_EQ(f.store.History(Id(1), kT0, kT0 + absl::Hours(24), 100).value().transitions_size(), 2);
  EXPECT_EQ(f.store.PruneHistoryBefore(kT0 + absl::Hours(7), 1).value(), 0);
}

TEST(PgHealthStore, FindsSessionsByNameNumberIdAndState) {
  Fixture f;
  auto berlin = Session(1, v1::HEALTH_LEVEL_HEALTHY, sv1::SESSION_STATE_CONNECTED);
  berlin.health.set_account_name("Shop Berlin");
  berlin.facts.set_phone_number("4915112345678");
  berlin.facts.set_session_name("front-desk");
  auto paris = Session(2, v1::HEALTH_LEVEL_WARNING, sv1::SESSION_STATE_DISCONNECTED);
  paris.health.set_account_name("Shop Paris");
  paris.facts.set_phone_number("33612345678");
  ASSERT_THAT(f.store.Save(berlin), IsOk());
  ASSERT_THAT(f.store.Save(paris), IsOk());
  auto find = [&](std::string_view query, std::vector<sv1::SessionState> states = {}) {
    HealthFilter filter;
    filter.query = NormalizeQuery(query);
    filter.states = std::move(states);
    std::vector<std::string> ids;
    auto page = f.store.List(filter, 10, "").value();
    for (const auto& s : page.sessions) ids.push_back(s.health.session_id());
    return ids;
  };
  using ::testing::ElementsAre;
  using ::testing::IsEmpty;
  EXPECT_THAT(find("  SHOP "), ElementsAre(Id(1), Id(2)));
  EXPECT_THAT(find("berlin"), ElementsAre(Id(1)));
  EXPECT_THAT(find("front"), ElementsAre(Id(1)));
  EXPECT_THAT(find("+49 151-123"), ElementsAre(Id(1)));  // a number, as people type it
  EXPECT_THAT(find("(612) 345"), ElementsAre(Id(2)));
  EXPECT_THAT(find("12345678"), ElementsAre(Id(1), Id(2)));
  EXPECT_THAT(find(Id(2).substr(0, 8) + "-0000-4000-8000-000000000002"), ElementsAre(Id(2)));
  EXPECT_THAT(find("munich"), IsEmpty());
  EXPECT_THAT(find("%"), IsEmpty());  // no LIKE patterns
  EXPECT_THAT(find("shop", {sv1::SESSION_STATE_DISCONNECTED}), ElementsAre(Id(2)));
  EXPECT_THAT(find("", {sv1::SESSION_STATE_CONNECTED, sv1::SESSION_STATE_DISCONNECTED}),
              ElementsAre(Id(1), Id(2)));

  // A row saved before the search column existed is found once the store loads it again.
  ASSERT_THAT(f.pool->Run("forget the search key",
                          [](pqxx::connection& c) {
                            pqxx::nontransaction n(c);
                            n.exec("UPDATE monitor_sessions SET search = ''");
                          }),
              IsOk());
  EXPECT_THAT(find("berlin"), IsEmpty());
  ASSERT_EQ(f.store.LoadAll().value().size(), 2u);
  EXPECT_THAT(find("berlin"), ElementsAre(Id(1)));
}

TEST(PgHealthStore, FleetHistoryByDay) {
  Fixture f;
  using S = sv1::SessionState;
  using L = v1::HealthLevel;
  ASSERT_THAT(f.store.Save(Session(1, L::HEALTH_LEVEL_HEALTHY, S::SESSION_STATE_CONNECTED)),
              IsOk());
  ASSERT_THAT(f.store.Save(Session(2, L::HEALTH_LEVEL_HEALTHY, S::SESSION_STATE_CONNECTED)),
              IsOk());
  ASSERT_THAT(
      f.store.Save(Session(3, L::HEALTH_LEVEL_HEALTHY, S::SESSION_STATE_CONNECTED, "other")),
      IsOk());
  auto add = [&](int n, absl::Duration after, S from, S to, L level_from, L level_to,
                 bool drop = false) {
    v1::Transition t;
    t.set_session_id(Id(n));
    *t.mutable_at() = ToProto(kT0 + after);
    t.set_from_state(from);
    t.set_to_state(to);
    t.set_from_level(level_from);
    t.set_to_level(level_to);
    t.set_drop(drop);
    ASSERT_THAT(f.store.AddTransition(t).status(), IsOk());
  };
  auto recovery = [&](int n, absl::Duration after, v1::RecoveryAttempt::Outcome outcome) {
    v1::RecoveryAttempt r;
    r.set_session_id(Id(n));
    *r.mutable_at() = ToProto(kT0 + after);
    r.set_action(v1::RecoveryAttempt::ACTION_RECONNECT);
    r.set_outcome(outcome);
    ASSERT_THAT(f.store.AddRecovery(r).status(), IsOk());
  };
  const auto h = [](int hours) { return absl::Hours(hours); };
  // Day -1: all three first seen, healthy.
  for (int n = 1; n <= 3; ++n) {
    add(n, -h(20), S::SESSION_STATE_UNSPECIFIED, S::SESSION_STATE_CONNECTED,
        L::HEALTH_LEVEL_UNSPECIFIED, L::HEALTH_LEVEL_HEALTHY);
  }
  // Day 0: session 1 drops, is reconnected within a minute (a successful recovery); session
  // 2 drops and stays down (its recovery fails), critical by the end of the day.
  add(1, h(2), S::SESSION_STATE_CONNECTED, S::SESSION_STATE_DISCONNECTED, L::HEALTH_LEVEL_HEALTHY,
      L::HEALTH_LEVEL_WARNING, true);
  recovery(1, h(2) + absl::Seconds(10), v1::RecoveryAttempt::OUTCOME_STARTED);
  add(1, h(2) + absl::Seconds(40), S::SESSION_STATE_DISCONNECTED, S::SESSION_STATE_CONNECTED,
      L::HEALTH_LEVEL_WARNING, L::HEALTH_LEVEL_HEALTHY);
  add(2, h(3), S::SESSION_STATE_CONNECTED, S::SESSION_STATE_DISCONNECTED, L::HEALTH_LEVEL_HEALTHY,
      L::HEALTH_LEVEL_WARNING, true);
  recovery(2, h(3) + absl::Seconds(10), v1::RecoveryAttempt::OUTCOME_STARTED);
  add(2, h(10), S::SESSION_STATE_UNSPECIFIED, S::SESSION_STATE_UNSPECIFIED, L::HEALTH_LEVEL_WARNING,
      L::HEALTH_LEVEL_CRITICAL);
  // Day 1: a person disconnects session 3 (no drop); session 2's probe answers.
  add(3, h(30), S::SESSION_STATE_CONNECTED, S::SESSION_STATE_DISCONNECTED, L::HEALTH_LEVEL_HEALTHY,
      L::HEALTH_LEVEL_INACTIVE);
  recovery(2, h(31), v1::RecoveryAttempt::OUTCOME_SUCCEEDED);

  auto all = f.store.FleetHistory("", kT0, kT0 + h(36), h(24)).value();
  ASSERT_EQ(all.buckets_size(), 2);
  const auto& d0 = all.buckets(0);
  EXPECT_EQ(FromProto(d0.start()), kT0);
  EXPECT_EQ(FromProto(d0.end()), kT0 + h(24));
  EXPECT_EQ(d0.healthy(), 2);
  EXPECT_EQ(d0.critical(), 1);
  EXPECT_EQ(d0.drops(), 2);
  EXPECT_EQ(d0.reconnects(), 1);
  EXPECT_EQ(d0.recovery_attempts(), 2);
  EXPECT_EQ(d0.recoveries_succeeded(), 1);
  const auto& d1 = all.buckets(1);
  EXPECT_EQ(FromProto(d1.end()), kT0 + h(36));  // cut at `until`
  EXPECT_EQ(d1.healthy(), 1);
  EXPECT_EQ(d1.critical(), 1);
  EXPECT_EQ(d1.inactive(), 1);
  EXPECT_EQ(d1.drops(), 0);
  EXPECT_EQ(d1.recovery_attempts(), 1);
  EXPECT_EQ(d1.recoveries_succeeded(), 1);
  EXPECT_EQ(all.drops(), 2);
  EXPECT_EQ(all.recovery_attempts(), 3);
  EXPECT_NEAR(all.recovery_success_percent(), 200.0 / 3, 1e-9);

  // One tenant: session 3 alone.
  auto other = f.store.FleetHistory("other", kT0, kT0 + h(36), h(24)).value();
  EXPECT_EQ(other.buckets(0).healthy(), 1);
  EXPECT_EQ(other.buckets(1).inactive(), 1);
  EXPECT_EQ(other.drops(), 0);
  EXPECT_EQ(other.recovery_success_percent(), 0.0);
  // Before anyone was seen: no sessions.
  auto early = f.store.FleetHistory("", kT0 - h(48), kT0 - h(24), h(6)).value();
  ASSERT_EQ(early.buckets_size(), 4);
  EXPECT_EQ(early.buckets(3).healthy(), 0);
}

TEST(PgHealthStore, RecoveriesAlertsJobsAndCursor) {
  Fixture f;
  ASSERT_THAT(f.store.Save(Session(1, v1::HEALTH_LEVEL_WARNING, sv1::SESSION_STATE_DISCONNECTED)),
              IsOk());
  auto attempt = [&](absl::Duration after, v1::RecoveryAttempt::Action action) {
    v1::RecoveryAttempt a;
    a.set_session_id(Id(1));
    *a.mutable_at() = ToProto(kT0 + after);
    a.set_action(action);
    a.set_outcome(v1::RecoveryAttempt::OUTCOME_STARTED);
    a.set_trigger("offline");
    return f.store.AddRecovery(a).value();
  };
  attempt(absl::Minutes(0), v1::RecoveryAttempt::ACTION_RECONNECT);
  const int64_t probe = attempt(absl::Minutes(10), v1::RecoveryAttempt::ACTION_PROBE);
  attempt(absl::Minutes(70), v1::RecoveryAttempt::ACTION_RECONNECT);
  ASSERT_THAT(f.store.SetRecoveryOutcome(probe, v1::RecoveryAttempt::OUTCOME_FAILED, "no pong"),
              IsOk());
  auto recent = f.store.ReconnectsSince(kT0 + absl::Minutes(5)).value();
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].at().seconds(), absl::ToUnixSeconds(kT0 + absl::Minutes(70)));
  auto history = f.store.History(Id(1), kT0, kT0 + absl::Hours(2), 10).value();
  ASSERT_EQ(history.recoveries_size(), 3);
  EXPECT_EQ(history.recoveries(1).outcome(), v1::RecoveryAttempt::OUTCOME_FAILED);
  EXPECT_EQ(history.recoveries(1).error(), "no pong");

  OpenAlert alert{"session.offline/" + Id(1), Id(1), "session.warning", "SEVERITY_WARNING", kT0};
  ASSERT_THAT(f.store.RecordAlert(alert), IsOk());
  alert.event_type = "session.critical";  // escalated: same key, raised_at kept
  alert.severity = "SEVERITY_CRITICAL";
  alert.raised_at = kT0 + absl::Hours(6);
  ASSERT_THAT(f.store.RecordAlert(alert), IsOk());
  ASSERT_THAT(f.store.RecordAlert({"session_service.unreachable", "", "session_service.unreachable",
                                   "SEVERITY_CRITICAL", kT0}),
              IsOk());
  auto open = f.store.OpenAlerts().value();
  ASSERT_EQ(open.size(), 2u);
  EXPECT_EQ(open[0].severity, "SEVERITY_CRITICAL");
  EXPECT_EQ(open[0].raised_at, kT0);
  ASSERT_THAT(f.store.CloseAlert(alert.dedup_key, kT0 + absl::Hours(7)), IsOk());
  EXPECT_EQ(f.store.OpenAlerts().value().size(), 1u);

  JobRecord job{"health-check-deep", false, 3, 1, kT0, {}};
  job.last_result.set_total(5);
  job.last_result.set_reconnected(1);
  ASSERT_THAT(f.store.SaveJob(job), IsOk());
  job.paused = true;
  ASSERT_THAT(f.store.SaveJob(job), IsOk());
  auto jobs = f.store.Jobs().value();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_TRUE(jobs[0].paused);
  EXPECT_EQ(jobs[0].last_result.reconnected(), 1);
  EXPECT_EQ(jobs[0].last_run_at, kT0);

  EXPECT_EQ(f.store.LastSequence().value(), 0);
  ASSERT_THAT(f.store.SetLastSequence(42), IsOk());
  ASSERT_THAT(f.store.SetLastSequence(41), IsOk());  // never backwards
  EXPECT_EQ(f.store.LastSequence().value(), 42);
}

}  // namespace
}  // namespace wasentinel::monitor
