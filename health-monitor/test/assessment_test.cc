// The classifier, score and recovery decisions (assessment.h) and the sliding-window rate
// limiter, on a fake clock: six hours pass in no time.
#include "health/assessment.h"

#include <gtest/gtest.h>

#include "health/recovery_limiter.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"

namespace wasentinel::monitor {
namespace {

class AssessTest : public ::testing::Test {
 protected:
  sv1::Session Connected() {
    sv1::Session s;
    s.set_id("6f1c1f1e-0000-4000-8000-000000000001");
    s.set_state(sv1::SESSION_STATE_CONNECTED);
    s.set_reason(sv1::STATE_REASON_LOGIN_SUCCESS);
    s.set_is_active(true);
    s.set_auto_connect(true);
    s.set_has_credentials(true);
    s.set_socket_alive(true);
    *s.mutable_created_at() = ToProto(clock.Now() - absl::Hours(24));
    *s.mutable_last_connected_at() = ToProto(clock.Now());
    s.mutable_keepalive_rtt()->set_nanos(40'000'000);
    return s;
  }
  sv1::Session Dropped(sv1::StateReason reason = sv1::STATE_REASON_SOCKET_CLOSED) {
    sv1::Session s = Connected();
    s.set_state(sv1::SESSION_STATE_DISCONNECTED);
    s.set_reason(reason);
    s.set_socket_alive(false);
    *s.mutable_last_disconnected_at() = ToProto(clock.Now());
    return s;
  }
  Assessment Run(const sv1::Session& s, bool live = true) {
    return Assess(s, memory, clock.Now(), policy, live);
  }

  testing::FakeClock clock;
  HealthPolicy policy;
  SessionMemory memory;
};

TEST_F(AssessTest, ConnectedWithALiveSocketIsHealthyAndScoresFull) {
  auto a = Run(Connected());
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_HEALTHY);
  EXPECT_EQ(a.score, 100);
  EXPECT_EQ(a.band, v1::QUALITY_BAND_EXCELLENT);
  EXPECT_TRUE(a.factors.empty());
  EXPECT_EQ(a.action, Action::kNone);
  EXPECT_FALSE(a.offline_since);
}

TEST_F(AssessTest, OfflineIsWarningUntilTheCriticalWindowThenCritical) {
  const sv1::Session s = Dropped();
  auto a = Run(s);
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_WARNING);
  EXPECT_EQ(a.action, Action::kNone) << "session-service's own retries come first";
  EXPECT_EQ(a.score, 60);
  clock.Advance(absl::Hours(6) - absl::Seconds(1));
  a = Run(s);
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_WARNING);
  EXPECT_EQ(a.action, Action::kReconnect);
  clock.Advance(absl::Seconds(1));
  a = Run(s);
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_CRITICAL);
  EXPECT_EQ(a.cause, "offline for 6h");
  EXPECT_EQ(a.score, 20);  // state 40, offline 40
  EXPECT_EQ(a.band, v1::QUALITY_BAND_CRITICAL);
}

TEST_F(AssessTest, TheMonitorsOwnOfflineTimeWins) {
  memory.offline_since = clock.Now() - absl::Hours(7);
  auto a = Run(Dropped());  // session-service says it dropped just now
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_CRITICAL);
  EXPECT_EQ(*a.offline_since, *memory.offline_since);
}

TEST_F(AssessTest, DeadSocketWhileStoredConnectedIsReconnectedWhenItStaysDead) {
  sv1::Session s = Connected();
  s.set_socket_alive(false);
  // Just seen: session-service may be storing the drop this very moment. Look again.
  memory.socket_dead_since = clock.Now();
  auto a = Run(s);
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_WARNING);
  EXPECT_EQ(a.action, Action::kRecheck);
  EXPECT_EQ(a.score, 70);
  // Still dead after the grace: reconnect.
  memory.socket_dead_since = clock.Now() - HealthPolicy{}.socket_dead_grace;
  a = Run(s);
  EXPECT_EQ(a.action, Action::kReconnect);
  EXPECT_NE(a.trigger.find("socket is dead for 5s"), std::string::npos) << a.trigger;
  // From an event alone (no live facts) nothing is decided about the socket.
  EXPECT_EQ(Run(s, /*live=*/false).action, Action::kNone);
  EXPECT_EQ(Run(s, /*live=*/false).level, v1::HEALTH_LEVEL_HEALTHY);
}

TEST_F(AssessTest, SilenceForThirtyMinutesIsProbed) {
  sv1::Session s = Connected();
  clock.Advance(absl::Minutes(29));
  EXPECT_EQ(Run(s).action, Action::kNone);
  clock.Advance(absl::Minutes(1));
  auto a = Run(s);
  EXPECT_EQ(a.action, Action::kProbe);
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_HEALTHY);
  EXPECT_EQ(a.score, 95);
  // A successful probe is proof of life: no new probe for another 30 minutes.
  memory.last_proof_of_life = clock.Now();
  EXPECT_EQ(Run(s).action, Action::kNone);
  // Inbound traffic is proof of life too.
  clock.Advance(absl::Minutes(40));
  *s.mutable_last_inbound_message_at() = ToProto(clock.Now() - absl::Minutes(1));
  EXPECT_EQ(Run(s).action, Action::kNone);
}

TEST_F(AssessTest, EndedByWhatsAppNeedsAPersonAndIsNeverReconnected) {
  for (auto [state, reason] :
       {std::pair{sv1::SESSION_STATE_LOGGED_OUT, sv1::STATE_REASON_LOGGED_OUT},
        std::pair{sv1::SESSION_STATE_REPLACED, sv1::STATE_REASON_REPLACED},
        std::pair{sv1::SESSION_STATE_BANNED, sv1::STATE_REASON_BANNED},
        std::pair{sv1::SESSION_STATE_DISCONNECTED, sv1::STATE_REASON_CLIENT_OUTDATED},
        std::pair{sv1::SESSION_STATE_DISCONNECTED, sv1::STATE_REASON_LOGIN_REFUSED}}) {
    sv1::Session s = Dropped(reason);
    s.set_state(state);
    if (state == sv1::SESSION_STATE_LOGGED_OUT) s.set_has_credentials(false);
    clock.Advance(absl::Hours(1));
    auto a = Run(s);
    EXPECT_EQ(a.level, v1::HEALTH_LEVEL_CRITICAL) << sv1::SessionState_Name(state);
    EXPECT_TRUE(a.needs_person);
    EXPECT_EQ(a.action, Action::kNone);
    EXPECT_EQ(a.score, 0);
  }
}

TEST_F(AssessTest, APhoneAwayIsJudgedOnlyWhereTheSessionIsKept) {
  sv1::Session s = Connected();
  EXPECT_FALSE(PhoneAway(s, clock.Now())) << "never seen: not judged";
  *s.mutable_phone_last_seen_at() = ToProto(clock.Now() - absl::Hours(24 * 12 + 1));
  ASSERT_TRUE(PhoneAway(s, clock.Now()));
  EXPECT_EQ(*PhoneAway(s, clock.Now()), absl::Hours(24 * 12 + 1));
  auto a = Run(s);
  ASSERT_FALSE(a.factors.empty());
  EXPECT_EQ(a.factors.back().name(), "phone");
  EXPECT_EQ(a.factors.back().penalty(), 15);
  // Stopped by a person, or by WhatsApp: its phone cannot be seen, so it is not judged.
  s.set_state(sv1::SESSION_STATE_DISCONNECTED);
  s.set_reason(sv1::STATE_REASON_USER);
  EXPECT_FALSE(PhoneAway(s, clock.Now()));
  s.set_state(sv1::SESSION_STATE_BANNED);
  s.set_reason(sv1::STATE_REASON_BANNED);
  EXPECT_FALSE(PhoneAway(s, clock.Now()));
}

TEST_F(AssessTest, ATemporaryBanSaysUntilWhen) {
  sv1::Session s = Dropped(sv1::STATE_REASON_BANNED);
  s.set_state(sv1::SESSION_STATE_BANNED);
  s.set_ban_code(101);
  *s.mutable_ban_expires_at() = ToProto(absl::FromUnixSeconds(1800000000));
  auto a = Run(s);
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_CRITICAL);
  EXPECT_EQ(a.action, Action::kNone);
  EXPECT_EQ(a.cause, "temporarily banned until 2027-01-15 08:00:00 UTC");
}

TEST_F(AssessTest, StoppedOnPurposeIsInactive) {
  sv1::Session by_user = Dropped(sv1::STATE_REASON_USER);
  clock.Advance(absl::Hours(10));
  EXPECT_EQ(Run(by_user).level, v1::HEALTH_LEVEL_INACTIVE);
  EXPECT_EQ(Run(by_user).action, Action::kNone);
  sv1::Session inactive = Dropped();
  inactive.set_is_active(false);
  EXPECT_EQ(Run(inactive).level, v1::HEALTH_LEVEL_INACTIVE);
  sv1::Session unpaired = Dropped(sv1::STATE_REASON_CREATED);
  unpaired.set_has_credentials(false);
  EXPECT_EQ(Run(unpaired).cause, "waiting to be paired");
}

TEST_F(AssessTest, RetriesExhaustedIsReconnectedAtOnceWithinTheBudget) {
  sv1::Session s = Dropped(sv1::STATE_REASON_RETRIES_EXHAUSTED);
  EXPECT_EQ(Run(s).action, Action::kReconnect);
  memory.recoveries_in_window = 3;
  auto a = Run(s);
  EXPECT_EQ(a.action, Action::kEscalate);
  memory.manual_intervention = true;
  memory.manual_intervention_reason = "3 recoveries in an hour failed";
  a = Run(s);
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_CRITICAL);
  EXPECT_EQ(a.action, Action::kNone);
  EXPECT_EQ(a.score, 30);  // state 40, recovery 30
}

TEST_F(AssessTest, ScoreFactorsAddUp) {
  sv1::Session s = Connected();
  s.mutable_keepalive_rtt()->set_seconds(4);
  s.set_missed_pings(2);
  memory.reconnects_last_hour = 2;
  memory.drops_last_hour = 1;
  auto a = Run(s);
  // rtt 10, missed pings 10, reconnects 10, errors 5.
  EXPECT_EQ(a.score, 65);
  EXPECT_EQ(a.band, v1::QUALITY_BAND_POOR);
  EXPECT_EQ(a.factors.size(), 4u);
  EXPECT_EQ(BandOf(90), v1::QUALITY_BAND_EXCELLENT);
  EXPECT_EQ(BandOf(70), v1::QUALITY_BAND_GOOD);
  EXPECT_EQ(BandOf(40), v1::QUALITY_BAND_POOR);
  EXPECT_EQ(BandOf(39), v1::QUALITY_BAND_CRITICAL);
}

TEST_F(AssessTest, MessagesInTroubleCostPointsButNoRecovery) {
  memory.undecryptable_last_hour = 2;
  memory.failed_sends_last_hour = 7;
  auto a = Run(Connected());
  // undecryptable 10, failed sends 15 (the most).
  EXPECT_EQ(a.score, 75);
  EXPECT_EQ(a.level, v1::HEALTH_LEVEL_HEALTHY) << "the socket is fine";
  EXPECT_EQ(a.action, Action::kNone) << "reconnecting would not mend a broken Signal session";
  ASSERT_EQ(a.factors.size(), 2u);
  EXPECT_EQ(a.factors[0].name(), "undecryptable");
  EXPECT_EQ(a.factors[0].detail(), "2 messages not decrypted in the last hour");
  EXPECT_EQ(a.factors[1].name(), "failed_sends");
  EXPECT_EQ(a.factors[1].penalty(), 15);
}

TEST(RecoveryLimiter, ThreePerSlidingHour) {
  testing::FakeClock clock;
  RecoveryLimiter limiter(3, absl::Hours(1));
  const std::string id = "s";
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(limiter.Allows(id, clock.Now()));
    limiter.Record(id, clock.Now());
    clock.Advance(absl::Minutes(10));
  }
  EXPECT_FALSE(limiter.Allows(id, clock.Now()));
  EXPECT_EQ(limiter.NextAllowed(id, clock.Now()), clock.Now() - absl::Minutes(30) + absl::Hours(1));
  clock.Advance(absl::Minutes(29));
  EXPECT_FALSE(limiter.Allows(id, clock.Now()));
  clock.Advance(absl::Minutes(1));  // the first attempt is an hour old: out of the window
  EXPECT_TRUE(limiter.Allows(id, clock.Now()));
  EXPECT_EQ(limiter.Count(id, clock.Now()), 2);
  EXPECT_EQ(limiter.Count("other", clock.Now()), 0);
  limiter.Reset(id);
  EXPECT_EQ(limiter.Count(id, clock.Now()), 0);
}

TEST(RecoveryLimiter, LoadedAttemptsCountInAnyOrder) {
  testing::FakeClock clock;
  RecoveryLimiter limiter(3, absl::Hours(1));
  limiter.Record("s", clock.Now() - absl::Minutes(5));
  limiter.Record("s", clock.Now() - absl::Minutes(50));
  limiter.Record("s", clock.Now() - absl::Minutes(20));
  limiter.Record("s", clock.Now() - absl::Minutes(90));  // outside
  EXPECT_EQ(limiter.Count("s", clock.Now()), 3);
  EXPECT_EQ(limiter.NextAllowed("s", clock.Now()), clock.Now() + absl::Minutes(10));
}

}  // namespace
}  // namespace wasentinel::monitor
