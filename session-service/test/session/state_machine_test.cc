// The session state machine in one process, without PostgreSQL, sockets or wa-sim: fake
// connections (the ConnectionFactory seam), a store that records transitions, and a FakeClock
// for the transitions' times and ban ends. README "Architecture" › "Session states" is the
// reference for every expectation.
#include "state_machine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "fake_creds.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/testing/fake_clock.h"
#include "wasentinel/testing/recorder.h"
#include "wasentinel/testing/status_matchers.h"

namespace wasentinel::session {
namespace {

using ::testing::ElementsAre;
using ::wasentinel::testing::IsOk;
using ::wasentinel::testing::StatusIs;

// The `cursor`-th value `recorder` gets (waiting for it at most 10 s), then the cursor moves on.
template <class T>
std::optional<T> Take(wasentinel::testing::Recorder<T>& recorder, size_t& cursor) {
  if (!recorder.WaitForCount(cursor + 1)) return std::nullopt;
  return recorder.Snapshot()[cursor++];
}

constexpr char kKey[] = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

// Records the transitions the TransitionWriter stores.
class RecordingStore final : public TransitionStore {
 public:
  absl::StatusOr<EventRecord> RecordTransition(const Transition& t) override {
    transitions.Push(t);
    EventRecord e;
    e.sequence = ++sequence_;
    return e;
  }
  wasentinel::testing::Recorder<Transition> transitions;

 private:
  int64_t sequence_ = 0;
};

// A store that writes one transition at a time (the default RecordTransitions) and whose
// database does not answer the write of `unanswered` once.
class UnansweredOnceStore final : public TransitionStore {
 public:
  explicit UnansweredOnceStore(std::string unanswered) : unanswered_(std::move(unanswered)) {}
  absl::StatusOr<EventRecord> RecordTransition(const Transition& t) override {
    if (t.error == unanswered_ && !failed_) {
      failed_ = true;
      return absl::UnavailableError("the database did not answer");
    }
    written.Push(t.error);
    EventRecord e;
    e.sequence = ++sequence_;
    return e;
  }
  wasentinel::testing::Recorder<std::string> written;

 private:
  const std::string unanswered_;
  bool failed_ = false;  // the writer's thread only
  int64_t sequence_ = 0;
};

// An answer the database did not give is not a refusal: that transition and those after it are
// written again, in order, and none is dropped.
TEST(TransitionWriter, WritesAgainWhatTheDatabaseDidNotAnswer) {
  UnansweredOnceStore store("3");
  std::vector<absl::Status> answers;
  absl::Mutex mu;
  {
    TransitionWriter writer(store, MakeLogger("test", "off"), absl::Milliseconds(10));
    for (int i = 0; i < 6; ++i) {
      Transition t{"s",
                   "t",
                   v1::SESSION_STATE_DISCONNECTED,
                   v1::SESSION_STATE_CONNECTING,
                   v1::STATE_REASON_RETRY,
                   absl::StrCat(i),
                   absl::Now()};
      t.on_stored = [&](const absl::StatusOr<EventRecord>& e) {
        absl::MutexLock lock(&mu);
        answers.push_back(e.status());
      };
      writer.Post(std::move(t));
    }
    ASSERT_TRUE(writer.Drain(absl::Now() + absl::Seconds(10)));
  }
  EXPECT_THAT(store.written.Snapshot(), ElementsAre("0", "1", "2", "3", "4", "5"));
  ASSERT_EQ(answers.size(), 6u);
  for (const auto& a : answers) EXPECT_THAT(a, IsOk());
}

// A connection that does nothing by itself: the test plays WhatsApp through its observer.
class FakeConnection final : public wa::ConnectionHandle {
 public:
  FakeConnection(boost::asio::io_context& io, std::shared_ptr<wa::ConnectionObserver> observer)
      : observer(std::move(observer)), io_(io) {}
  // Reports the close later, on the connection thread, as a real connection does.
  void Close() override {
    closed = true;
    boost::asio::post(io_, [observer = observer] {
      wa::CloseInfo info;
      info.cause = wa::CloseCause::kClosedByUs;
      observer->OnClosed(info);
    });
  }
  void Abort() override { aborted = true; }
  void Probe(std::function<void(absl::StatusOr<absl::Duration>)> done, absl::Duration) override {
    done(absl::Milliseconds(7));
  }
  void Logout(std::function<void(absl::Status)> done, absl::Duration) override {
    done(absl::OkStatus());
  }
  const wa::ConnectionStats& stats() const override { return stats_; }

  std::shared_ptr<wa::ConnectionObserver> observer;
  bool closed = false;
  bool aborted = false;

 private:
  boost::asio::io_context& io_;
  wa::ConnectionStats stats_;
};

class StateMachineTest : public ::testing::Test {
 protected:
  explicit StateMachineTest(int restore_concurrency = 0)
      : sealer_(Sealer::FromConfig(kKey).value()) {
    ManagerOptions o;
    o.replica_id = "r1";
    o.backoff = {absl::Milliseconds(1), absl::Milliseconds(1)};
    o.restore_per_second = 0;
    o.restore_concurrency = restore_concurrency;
    sm_ = std::make_shared<StateMachine>(
        io_, tls_, sealer_, writer_, o, clock_, MakeLogger("state-machine-test", "warn"), nullptr,
        [this](const wa::ConnectionOptions&, const wa::DeviceCredentials&,
               std::shared_ptr<wa::ConnectionObserver> observer) {
          auto conn = std::make_shared<FakeConnection>(io_, std::move(observer));
          connections_.Push(conn);
          return conn;
        });
    thread_ = std::thread([this] { io_.run(); });
  }
  ~StateMachineTest() override {
    work_.reset();
    io_.stop();
    thread_.join();
  }

  // A stored row with paired credentials, as the lease keeper hands it over.
  SessionRecord Row(const std::string& id) {
    SessionRecord rec;
    rec.id = id;
    rec.tenant_id = "acme";
    rec.state = v1::SESSION_STATE_DISCONNECTED;
    const std::string creds =
        wasentinel::testing::BaileysCredsJson(wa::KeyPair::Generate(), 15550001000, 5);
    auto sealed = sealer_.Seal(AsBytes(creds));
    rec.credentials = SealedCredentials{sealed.key_id, sealed.blob};
    return rec;
  }

  // Adopts `rec` under lease token 7 and connects it (a person's Connect).
  std::shared_ptr<FakeConnection> Connected(const SessionRecord& rec) {
    sm_->OnIo([&] { sm_->Adopt(rec, 7); });
    EXPECT_THAT(sm_->OnIo([&] { return sm_->Connect(rec); }), IsOk());
    auto conn = Take(connections_, connections_seen_);
    EXPECT_TRUE(conn.has_value());
    sm_->Post([conn = *conn] { conn->observer->OnLoggedIn(wa::LoginInfo{}); });
    return *conn;
  }

  // Connected, with its CONNECTING and CONNECTED transitions stored and checked.
  std::shared_ptr<FakeConnection> Online(const SessionRecord& rec) {
    auto conn = Connected(rec);
    EXPECT_EQ(NextTransition().first, v1::SESSION_STATE_CONNECTING);
    EXPECT_EQ(NextTransition().first, v1::SESSION_STATE_CONNECTED);
    return conn;
  }

  // The next stored transition's (to, reason).
  std::pair<v1::SessionState, v1::StateReason> NextTransition() {
    auto t = Take(store_.transitions, transitions_seen_);
    if (!t) return {v1::SESSION_STATE_UNSPECIFIED, v1::STATE_REASON_UNSPECIFIED};
    last_ = *t;
    return {t->to, t->reason};
  }

  void Close(const std::shared_ptr<FakeConnection>& conn, wa::CloseInfo info) {
    sm_->Post([conn, info] { conn->observer->OnClosed(info); });
  }

  boost::asio::io_context io_{1};
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_ =
      std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
          io_.get_executor());
  boost::asio::ssl::context tls_{boost::asio::ssl::context::tls_client};
  Sealer sealer_;
  wasentinel::testing::FakeClock clock_;
  RecordingStore store_;
  TransitionWriter writer_{store_, MakeLogger("writer", "warn")};
  wasentinel::testing::Recorder<std::shared_ptr<FakeConnection>> connections_;
  std::shared_ptr<StateMachine> sm_;
  std::thread thread_;
  Transition last_;
  size_t connections_seen_ = 0;
  size_t transitions_seen_ = 0;
};

using State = std::pair<v1::SessionState, v1::StateReason>;

class BoundedRestoreTest : public StateMachineTest {
 protected:
  BoundedRestoreTest() : StateMachineTest(/*restore_concurrency=*/3) {}
};

// With the rate lifted, the start-up restore still has at most 3 connection attempts under
// way: the next starts when one logs in or ends.
TEST_F(BoundedRestoreTest, StartsTheNextAttemptWhenOneEnds) {
  std::vector<SessionRecord> rows;
  absl::flat_hash_map<std::string, int64_t> tokens;
  for (int i = 0; i < 6; ++i) {
    rows.push_back(Row(absl::StrCat("s", i)));
    tokens[rows.back().id] = 7;
  }
  sm_->OnIo([&] { sm_->AdoptAndRestore(rows, tokens, v1::STATE_REASON_STARTUP_RESTORE); });
  // The pacer runs on the connection thread: by now it started what it may.
  EXPECT_EQ(sm_->OnIo([&] { return connections_.Snapshot().size(); }), 3u);
  std::vector<std::shared_ptr<FakeConnection>> conns;
  for (int i = 0; i < 3; ++i) conns.push_back(*Take(connections_, connections_seen_));
  sm_->Post([conn = conns[0]] { conn->observer->OnLoggedIn(wa::LoginInfo{}); });
  auto fourth = Take(connections_, connections_seen_);
  ASSERT_TRUE(fourth.has_value());
  wa::CloseInfo refused;
  refused.cause = wa::CloseCause::kLoginRefused;
  Close(conns[1], refused);
  ASSERT_TRUE(Take(connections_, connections_seen_).has_value());
  EXPECT_EQ(sm_->OnIo([&] { return connections_.Snapshot().size(); }), 5u);
  // The last waits for room; the one that logged in and the refused one do not hold any.
  sm_->Post([conn = *fourth] { conn->observer->OnLoggedIn(wa::LoginInfo{}); });
  ASSERT_TRUE(Take(connections_, connections_seen_).has_value());
  EXPECT_EQ(connections_.Snapshot().size(), 6u);
}

TEST_F(StateMachineTest, ConnectLogsInAndStampsTheFakeClock) {
  Connected(Row("s1"));
  EXPECT_EQ(NextTransition(), State(v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_USER));
  EXPECT_EQ(last_.lease_token, 7);  // fenced by the session's lease
  EXPECT_EQ(NextTransition(), State(v1::SESSION_STATE_CONNECTED, v1::STATE_REASON_LOGIN_SUCCESS));
  EXPECT_EQ(last_.at, clock_.Now());
  auto live = sm_->OnIo([&] { return sm_->LiveOf("s1"); });
  ASSERT_TRUE(live.has_value());
  EXPECT_TRUE(live->socket_alive);
  EXPECT_EQ(live->owner, "r1");
}

TEST_F(StateMachineTest, ADropIsRetriedUntilTheScheduleIsUsedUp) {
  auto conn = Online(Row("s1"));
  wa::CloseInfo drop;
  drop.cause = wa::CloseCause::kSocketClosed;
  drop.detail = "reset by peer";
  for (int retry = 1; retry <= 2; ++retry) {
    Close(conn, drop);
    EXPECT_EQ(NextTransition(),
              State(v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_SOCKET_CLOSED));
    EXPECT_TRUE(last_.count_error);
    auto next =
        Take(connections_, connections_seen_);  // the retry's connection, after its backoff step
    ASSERT_TRUE(next.has_value()) << "retry " << retry;
    conn = *next;
    EXPECT_EQ(NextTransition(), State(v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_RETRY));
    EXPECT_TRUE(last_.count_reconnect);
  }
  Close(conn, drop);
  EXPECT_EQ(NextTransition(),
            State(v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_SOCKET_CLOSED));
  EXPECT_EQ(NextTransition(),
            State(v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_RETRIES_EXHAUSTED));
  EXPECT_EQ(last_.error, "reset by peer");
}

TEST_F(StateMachineTest, LoggedOutForgetsTheCredentialsAndRefusesAnAutomaticRecovery) {
  const SessionRecord rec = Row("s1");
  auto conn = Online(rec);
  wa::CloseInfo info;
  info.cause = wa::CloseCause::kLoggedOut;
  info.code = 401;
  Close(conn, info);
  EXPECT_EQ(NextTransition(), State(v1::SESSION_STATE_LOGGED_OUT, v1::STATE_REASON_LOGGED_OUT));
  EXPECT_TRUE(last_.clear_credentials);
  EXPECT_EQ(last_.failure_code, 401);
  EXPECT_THAT(sm_->OnIo([&] { return sm_->Reconnect(rec, /*recovery=*/true); }),
              StatusIs(absl::StatusCode::kFailedPrecondition, "only a person"));
}

TEST_F(StateMachineTest, ATemporaryBanEndsOnTheFakeClocksTime) {
  auto conn = Online(Row("s1"));
  wa::CloseInfo ban;
  ban.cause = wa::CloseCause::kTemporaryBan;
  ban.code = 402;
  ban.ban_code = 101;
  ban.ban_expires_in = absl::Hours(6);
  Close(conn, ban);
  EXPECT_EQ(NextTransition(), State(v1::SESSION_STATE_BANNED, v1::STATE_REASON_BANNED));
  ASSERT_TRUE(last_.ban_expires_at.has_value());
  EXPECT_EQ(*last_.ban_expires_at, clock_.Now() + absl::Hours(6));
  EXPECT_EQ(last_.ban_code, 101);
  auto live = sm_->OnIo([&] { return sm_->LiveOf("s1"); });
  EXPECT_TRUE(live->retry_pending);  // connects again when the ban ends
}

TEST_F(StateMachineTest, ALostLeaseCutsTheSocketAndForgetsTheSession) {
  auto conn = Online(Row("s1"));
  sm_->OnIo([&] { sm_->LoseLease("s1", 7, "the database was unreachable", /*record=*/true); });
  EXPECT_EQ(NextTransition(), State(v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_LEASE_LOST));
  EXPECT_TRUE(conn->aborted);
  EXPECT_FALSE(sm_->OnIo([&] { return sm_->Holds("s1"); }));
  // A stale token changes nothing.
  sm_->OnIo([&] { sm_->LoseLease("s1", 6, "stale", true); });
}

TEST_F(StateMachineTest, ShutdownClosesEverySocketAndRecordsShutdown) {
  auto a = Online(Row("a"));
  std::promise<void> closed;
  sm_->Post([&] { sm_->ShutdownAll([&] { closed.set_value(); }); });
  ASSERT_EQ(closed.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(a->closed);
  EXPECT_EQ(NextTransition(), State(v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_SHUTDOWN));
  EXPECT_THAT(sm_->OnIo([&] { return sm_->Connect(Row("b")); }),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(StateMachineTest, ConnectionThreadMethodsRefuseOtherThreads) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH((void)sm_->LiveOf("s1"), "off the connection thread");
}

}  // namespace
}  // namespace wasentinel::session
