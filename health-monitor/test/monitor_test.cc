// The Monitor's decisions over hours of fake time, with a real PostgreSQL under its store:
// drops recovered at once, warning then critical alerts for one outage, endings that need a
// person, the hourly recovery budget, an outage of session-service, and a restart that neither
// alerts twice nor resets the budget. session-service and alert-service are in-memory fakes at
// their I/O seams (SessionSource, AlertSink); the e2e test runs the real ones.
#include "health/monitor.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "fakes.h"
#include "monitor_db.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"
#include "wasentinel/testing/test_database.h"

namespace wasentinel::monitor {
namespace {

const std::string kId = "6f1c1f1e-0000-4000-8000-000000000001";

struct Fixture : MonitorDb {
  wasentinel::testing::FakeClock clock;
  FakeSessions sessions;
  RecordingAlerts alerts;
  std::unique_ptr<Monitor> monitor;
  int64_t sequence = 0;

  Fixture() {
    sv1::Session s;
    s.set_id(kId);
    s.set_tenant_id("acme");
    s.set_account_name("Acme shop");
    s.set_phone_number("15551234567");
    s.set_owner_email("ops@acme.example");
    s.set_state(sv1::SESSION_STATE_CONNECTED);
    s.set_reason(sv1::STATE_REASON_LOGIN_SUCCESS);
    s.set_is_active(true);
    s.set_auto_connect(true);
    s.set_has_credentials(true);
    s.set_socket_alive(true);
    *s.mutable_created_at() = ToProto(clock.Now() - absl::Hours(48));
    *s.mutable_last_connected_at() = ToProto(clock.Now());
    sessions.sessions[kId] = s;
    Restart();
  }
  void Restart() {
    monitor = std::make_unique<Monitor>(clock, store, sessions, alerts, HealthPolicy{},
                                        MakeLogger("monitor", "warn"));
    EXPECT_TRUE(monitor->Load().ok());
  }
  // session-service moves the session and tells the watchers.
  void Event(sv1::SessionState to, sv1::StateReason reason) {
    sv1::Session& s = sessions.sessions[kId];
    sv1::SessionEvent e;
    e.set_sequence(++sequence);
    e.set_session_id(kId);
    e.set_tenant_id("acme");
    e.set_from_state(s.state());
    e.set_to_state(to);
    e.set_reason(reason);
    *e.mutable_at() = ToProto(clock.Now());
    *s.mutable_updated_at() = ToProto(clock.Now());
    if (s.state() == sv1::SESSION_STATE_CONNECTED && to != s.state()) {
      *s.mutable_last_disconnected_at() = ToProto(clock.Now());
    }
    if (to == sv1::SESSION_STATE_CONNECTED) *s.mutable_last_connected_at() = ToProto(clock.Now());
    s.set_state(to);
    s.set_reason(reason);
    s.set_socket_alive(to == sv1::SESSION_STATE_CONNECTED);
    monitor->OnEvent(e);
    monitor->Settle();  // as the watcher does when no more events wait
  }
  v1::HealthLevel Level() { return monitor->Health(kId)->level(); }
};

TEST(Monitor, ADropIsClassifiedAndRecoveredAtOnce) {
  Fixture f;
  auto first = f.monitor->DeepCheck();
  EXPECT_EQ(first.total(), 1);
  EXPECT_EQ(first.healthy(), 1);
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_HEALTHY);

  f.Event(sv1::SESSION_STATE_DISCONNECTED, sv1::STATE_REASON_KEEPALIVE_TIMEOUT);
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_WARNING);
  EXPECT_EQ(f.sessions.reconnects, std::vector<std::string>{kId});
  EXPECT_EQ(f.monitor->Health(kId)->recovery_attempts_last_hour(), 1);
  f.clock.Advance(absl::Seconds(2));
  f.Event(sv1::SESSION_STATE_CONNECTED, sv1::STATE_REASON_LOGIN_SUCCESS);
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_HEALTHY);
  EXPECT_TRUE(f.alerts.raised.empty()) << "a drop recovered in seconds alerts nobody";

  auto history =
      f.store.History(kId, f.clock.Now() - absl::Hours(1), f.clock.Now() + absl::Seconds(1), 50)
          .value();
  EXPECT_GE(history.transitions_size(), 3);
  int drops = 0;
  for (const auto& t : history.transitions()) {
    if (t.drop()) {
      ++drops;
      EXPECT_EQ(t.to_state(), sv1::SESSION_STATE_DISCONNECTED);
    }
  }
  EXPECT_EQ(drops, 1) << "the keepalive timeout is the one drop";
  ASSERT_EQ(history.recoveries_size(), 1);
  EXPECT_EQ(history.recoveries(0).action(), v1::RecoveryAttempt::ACTION_RECONNECT);
  EXPECT_EQ(f.store.LastSequence().value(), 2);
}

TEST(Monitor, OneOutageIsOneAlertThatEscalatesAndResolves) {
  Fixture f;
  f.monitor->DeepCheck();
  f.sessions.up = true;
  f.Event(sv1::SESSION_STATE_DISCONNECTED, sv1::STATE_REASON_SOCKET_CLOSED);
  // session-service keeps failing: each reconnect ends DISCONNECTED again.
  f.sessions.sessions[kId].set_state(sv1::SESSION_STATE_DISCONNECTED);
  for (int minute = 1; minute <= 6 * 60; ++minute) {
    f.clock.Advance(absl::Minutes(1));
    f.sessions.sessions[kId].set_state(sv1::SESSION_STATE_DISCONNECTED);
    if (minute % 5 == 0) {
      f.monitor->DeepCheck();
    } else {
      f.monitor->LightCheck();
    }
  }
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_CRITICAL);
  const auto types = f.alerts.Types();
  // session.warning after 5 minutes, session.critical at 6 hours, and manual intervention
  // once the recovery budget was spent.
  EXPECT_EQ(std::count(types.begin(), types.end(), "session.warning"), 1);
  EXPECT_EQ(std::count(types.begin(), types.end(), "session.critical"), 1);
  for (const auto& a : f.alerts.raised) {
    if (a.event_type() == "session.critical" || a.event_type() == "session.warning") {
      EXPECT_EQ(a.dedup_key(), "session.offline/" + kId);
      EXPECT_EQ(a.session().phone_number_masked(), "155******67");
      EXPECT_EQ(a.session().owner_email(), "ops@acme.example");
      EXPECT_TRUE(a.session().has_offline_since());
      EXPECT_EQ(a.summary().find("15551234567"), std::string::npos);
    }
  }
  EXPECT_LE(f.sessions.reconnects.size(), 3u * 6) << "at most 3 per hour";
  // Back: the outage's alerts are resolved.
  f.monitor->Acknowledge(kId, "checked the phone").IgnoreError();
  f.Event(sv1::SESSION_STATE_CONNECTED, sv1::STATE_REASON_LOGIN_SUCCESS);
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_HEALTHY);
  EXPECT_NE(std::find(f.alerts.resolved.begin(), f.alerts.resolved.end(), "session.offline/" + kId),
            f.alerts.resolved.end());
  EXPECT_TRUE(f.store.OpenAlerts().value().empty());
}

TEST(Monitor, ReplacedAndLoggedOutNeedAPersonAndAreNeverReconnected) {
  Fixture f;
  f.monitor->DeepCheck();
  f.Event(sv1::SESSION_STATE_REPLACED, sv1::STATE_REASON_REPLACED);  // 440
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_CRITICAL);
  EXPECT_TRUE(f.sessions.reconnects.empty());
  ASSERT_EQ(f.alerts.Types(), std::vector<std::string>{"session.manual_intervention"});
  EXPECT_EQ(f.alerts.raised[0].severity(), av1::SEVERITY_CRITICAL);
  f.clock.Advance(absl::Hours(1));
  f.monitor->DeepCheck();
  EXPECT_EQ(f.alerts.raised.size(), 1u) << "raised once";
  EXPECT_TRUE(f.sessions.reconnects.empty());
}

TEST(Monitor, APersonConnectingAReplacedSessionRaisesNothingNew) {
  Fixture f;
  f.monitor->DeepCheck();
  f.Event(sv1::SESSION_STATE_REPLACED, sv1::STATE_REASON_REPLACED);
  f.clock.Advance(absl::Hours(7));  // past the critical window, still REPLACED
  f.monitor->DeepCheck();
  ASSERT_EQ(f.alerts.Types(), std::vector<std::string>{"session.manual_intervention"});
  // The other client was stopped; a person connects it.
  f.Event(sv1::SESSION_STATE_CONNECTING, sv1::STATE_REASON_USER);
  f.monitor->LightCheck();
  EXPECT_EQ(f.alerts.Types(), std::vector<std::string>{"session.manual_intervention"})
      << "no session.critical for the 7 hours while a person brings it back";
  f.clock.Advance(absl::Seconds(1));
  f.Event(sv1::SESSION_STATE_CONNECTED, sv1::STATE_REASON_LOGIN_SUCCESS);
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_HEALTHY);
  EXPECT_EQ(f.alerts.resolved, std::vector<std::string>{"session.manual_intervention/" + kId});
}

TEST(Monitor, FourDropsInAnHourEndInManualInterventionAcrossARestart) {
  Fixture f;
  f.monitor->DeepCheck();
  for (int i = 0; i < 3; ++i) {
    f.Event(sv1::SESSION_STATE_DISCONNECTED, sv1::STATE_REASON_SOCKET_CLOSED);
    f.clock.Advance(absl::Seconds(3));
    f.Event(sv1::SESSION_STATE_CONNECTED, sv1::STATE_REASON_LOGIN_SUCCESS);
    f.clock.Advance(absl::Minutes(10));
  }
  EXPECT_EQ(f.sessions.reconnects.size(), 3u);
  EXPECT_FALSE(f.monitor->Health(kId)->manual_intervention_required());
  // The monitor restarts: its window and its open alerts come back from the database.
  f.Restart();
  f.Event(sv1::SESSION_STATE_DISCONNECTED, sv1::STATE_REASON_SOCKET_CLOSED);
  EXPECT_EQ(f.sessions.reconnects.size(), 3u) << "a fourth in the hour is not made";
  auto h = f.monitor->Health(kId).value();
  EXPECT_TRUE(h.manual_intervention_required());
  EXPECT_EQ(h.level(), v1::HEALTH_LEVEL_CRITICAL);
  ASSERT_EQ(f.alerts.Types(), std::vector<std::string>{"session.manual_intervention"});
  // Another restart: no second alert.
  f.Restart();
  f.monitor->DeepCheck();
  EXPECT_EQ(f.alerts.raised.size(), 1u);
  // An operator acknowledges: a fresh window, the alert resolved.
  auto acked = f.monitor->Acknowledge(kId, "replaced the phone's SIM").value();
  EXPECT_FALSE(acked.manual_intervention_required());
  EXPECT_EQ(f.alerts.resolved, std::vector<std::string>{"session.manual_intervention/" + kId});
  f.clock.Advance(absl::Minutes(5));
  f.monitor->DeepCheck();
  EXPECT_EQ(f.sessions.reconnects.size(), 4u) << "recovery resumes after the acknowledgement";
}

TEST(Monitor, SilentSessionsAreProbedAndReconnectedWhenTheProbeFails) {
  Fixture f;
  f.monitor->DeepCheck();
  f.clock.Advance(absl::Minutes(31));
  f.monitor->DeepCheck();
  EXPECT_EQ(f.sessions.probes.size(), 1u);
  EXPECT_TRUE(f.sessions.reconnects.empty());
  f.clock.Advance(absl::Minutes(5));
  f.monitor->DeepCheck();
  EXPECT_EQ(f.sessions.probes.size(), 1u) << "a good probe is proof of life for 30 minutes";
  f.clock.Advance(absl::Minutes(30));
  f.sessions.probe_ok = false;
  f.monitor->DeepCheck();
  EXPECT_EQ(f.sessions.probes.size(), 2u);
  EXPECT_EQ(f.sessions.reconnects.size(), 1u);
}

TEST(Monitor, AnUnreachableSessionServiceIsOneAlert) {
  Fixture f;
  f.monitor->DeepCheck();
  f.sessions.up = false;
  for (int i = 0; i < 5; ++i) {
    auto r = f.monitor->LightCheck();
    EXPECT_FALSE(r.error().empty());
    f.clock.Advance(absl::Seconds(30));
  }
  EXPECT_FALSE(f.monitor->session_service_reachable());
  ASSERT_EQ(f.alerts.Types(), std::vector<std::string>{"session_service.unreachable"});
  EXPECT_FALSE(f.monitor->DeepCheck().error().empty());
  f.sessions.up = true;
  f.monitor->LightCheck();
  EXPECT_TRUE(f.monitor->session_service_reachable());
  EXPECT_EQ(f.alerts.resolved, std::vector<std::string>{"session_service.unreachable"});
}

TEST(Monitor, TheDayCountersStartAfreshAndOldHistoryIsPruned) {
  Fixture f;
  f.monitor->DeepCheck();
  f.Event(sv1::SESSION_STATE_DISCONNECTED, sv1::STATE_REASON_SOCKET_CLOSED);
  f.Event(sv1::SESSION_STATE_CONNECTED, sv1::STATE_REASON_LOGIN_SUCCESS);
  EXPECT_EQ(f.monitor->Health(kId)->drops_today(), 1);
  EXPECT_EQ(f.monitor->Health(kId)->recoveries_today(), 1);

  f.clock.Advance(absl::Hours(24 * 91));
  f.monitor->DeepCheck();
  auto reset = f.monitor->ResetDailyCounters(absl::Hours(24 * 90));
  EXPECT_TRUE(reset.error().empty()) << reset.error();
  EXPECT_EQ(reset.total(), 1);
  EXPECT_EQ(f.monitor->Health(kId)->drops_today(), 0);
  EXPECT_EQ(f.monitor->Health(kId)->recoveries_today(), 0);
  f.Restart();  // stored, not only in memory
  EXPECT_EQ(f.monitor->Health(kId)->drops_today(), 0);
  auto history =
      f.store.History(kId, f.clock.Now() - absl::Hours(24 * 100), f.clock.Now(), 50).value();
  EXPECT_EQ(history.recoveries_size(), 0) << "91 days old: pruned";
}

TEST(Monitor, CleanupForgetsSessionsSessionServiceNoLongerHas) {
  Fixture f;
  const std::string other = "6f1c1f1e-0000-4000-8000-000000000002";
  f.sessions.sessions[other] = f.sessions.sessions[kId];
  f.sessions.sessions[other].set_id(other);
  f.monitor->DeepCheck();
  ASSERT_TRUE(f.monitor->Health(other));
  // Deleted while the monitor was not watching: the next cleanup forgets it.
  f.sessions.sessions.erase(other);
  auto result = f.monitor->CleanupInactive();
  EXPECT_TRUE(result.error().empty()) << result.error();
  EXPECT_EQ(result.total(), 1);
  EXPECT_FALSE(f.monitor->Health(other));
  EXPECT_EQ(f.store.Get(other).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(f.monitor->Health(kId));
  // A failed read forgets nothing.
  f.sessions.bulk_fails = true;
  EXPECT_FALSE(f.monitor->CleanupInactive().error().empty());
  EXPECT_TRUE(f.monitor->Health(kId));
}

TEST(Monitor, MetricsShowLevelsScoresRecoveriesAndAlerts) {
  Fixture f;
  prometheus::Registry registry;
  MonitorMetrics metrics(registry);
  f.monitor->set_metrics(&metrics);
  f.monitor->DeepCheck();
  f.Event(sv1::SESSION_STATE_DISCONNECTED, sv1::STATE_REASON_KEEPALIVE_TIMEOUT);
  f.clock.Advance(absl::Minutes(10));
  f.monitor->LightCheck();
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  auto has = [&](const std::string& line) {
    EXPECT_NE(text.find(line), std::string::npos) << line << " not in\n" << text;
  };
  has("wasentinel_monitor_sessions{level=\"warning\"} 1");
  has("wasentinel_monitor_sessions{level=\"healthy\"} 0");
  has("wasentinel_monitor_session_score_count 1");
  // The drop, then offline past reconnect_after (3 min) with nothing under way.
  has("wasentinel_monitor_recoveries_total{action=\"reconnect\",outcome=\"started\"} 2");
  has("wasentinel_monitor_alerts_total{action=\"raised\",event_type=\"session.warning\"} 1");
  has("wasentinel_monitor_check_duration_seconds_count{check=\"deep\"} 1");
  has("wasentinel_monitor_events_total 1");
  has("wasentinel_monitor_session_service_up 1");
}

TEST(Monitor, ADeadSocketIsLookedAtAgainBeforeItIsReconnected) {
  Fixture f;
  f.monitor->DeepCheck();
  // A deep check catches a socket closing before session-service stored the drop.
  f.sessions.sessions[kId].set_socket_alive(false);
  f.monitor->DeepCheck();
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_WARNING);
  EXPECT_TRUE(f.sessions.reconnects.empty()) << "not on one sighting";
  // Meanwhile WhatsApp ended it (replaced): the second look finds that, not a dead socket.
  f.Event(sv1::SESSION_STATE_REPLACED, sv1::STATE_REASON_REPLACED);
  f.clock.Advance(HealthPolicy{}.socket_dead_grace);
  f.monitor->RecheckDue();
  EXPECT_TRUE(f.sessions.reconnects.empty()) << "a replaced session is never reconnected";
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_CRITICAL);
}

TEST(Monitor, ASocketThatStaysDeadIsReconnected) {
  Fixture f;
  f.monitor->DeepCheck();
  f.sessions.sessions[kId].set_socket_alive(false);
  f.monitor->DeepCheck();
  f.clock.Advance(absl::Seconds(1));
  f.monitor->RecheckDue();
  EXPECT_TRUE(f.sessions.reconnects.empty()) << "not due yet";
  f.clock.Advance(HealthPolicy{}.socket_dead_grace);
  f.monitor->RecheckDue();
  EXPECT_EQ(f.sessions.reconnects, std::vector<std::string>{kId});
}

TEST(Monitor, AConflictRacingAProbeIsNotReconnected) {
  Fixture f;
  f.monitor->DeepCheck();
  // Silent for 30 min: probed. WhatsApp replaces the device just then (its event has not
  // arrived), so the probe fails and the reconnect meets a REPLACED session, which
  // session-service refuses to an automatic recovery.
  f.clock.Advance(absl::Minutes(31));
  f.sessions.probe_ok = false;
  f.sessions.on_probe = [&](const std::string& id) {
    f.sessions.sessions[id].set_state(sv1::SESSION_STATE_REPLACED);
  };
  f.monitor->DeepCheck();
  EXPECT_EQ(f.sessions.probes.size(), 1u);
  EXPECT_EQ(f.sessions.refused, std::vector<std::string>{kId});
  EXPECT_TRUE(f.sessions.reconnects.empty());
  EXPECT_EQ(f.monitor->Health(kId)->recovery_attempts_last_hour(), 0)
      << "a refused reconnect is not an attempt";
  // The second look finds it REPLACED: CRITICAL, a person is asked for.
  f.clock.Advance(HealthPolicy{}.socket_dead_grace);
  f.monitor->RecheckDue();
  EXPECT_EQ(f.Level(), v1::HEALTH_LEVEL_CRITICAL);
  EXPECT_EQ(f.alerts.Types(), std::vector<std::string>{"session.manual_intervention"});
}

}  // namespace
}  // namespace wasentinel::monitor
