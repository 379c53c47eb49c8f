// What WhatsApp says when it ends a connection, walked code by code through session-service and
// wa-sim (README "Session states" › "What WhatsApp says"): the state and reason each lands in,
// whether it is retried, whether the credentials are kept, and what GetSession shows.
#include "absl/strings/str_cat.h"
#include "session/stack.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;
using ::wasentinel::testing::StatusIs;

namespace wasentinel::session {
namespace {

using nlohmann::json;

// How long a session that must not be retried is watched for a retry: 10 backoff delays.
constexpr std::chrono::milliseconds kNoRetryWindow{500};

struct Row {
  std::string name;
  std::string action;  // "fail-login" (next login) or "stream-error" (live connection)
  json body;
  v1::SessionState state;
  v1::StateReason reason;
  bool retried;      // a backoff retry follows, and the session connects again
  bool creds_kept;   // has_credentials afterwards
  int failure_code;  // GetSession.failure_code once ended
};

// The health-monitor's Reconnect (ReconnectRequest.recovery) of session `id`.
grpc::Status Recover(Stack& s, const std::string& id) {
  grpc::ClientContext ctx;
  v1::ReconnectRequest req;
  req.set_id(id);
  req.set_recovery(true);
  v1::ReconnectResponse resp;
  return s.stub->Reconnect(&ctx, req, &resp);
}

std::vector<Row> Table() {
  const v1::SessionState kDisc = v1::SESSION_STATE_DISCONNECTED;
  std::vector<Row> rows = {
      {"failure_401",
       "fail-login",
       {{"reason", 401}},
       v1::SESSION_STATE_LOGGED_OUT,
       v1::STATE_REASON_LOGGED_OUT,
       false,
       false,
       401},
      {"failure_403",
       "fail-login",
       {{"reason", 403}},
       v1::SESSION_STATE_LOGGED_OUT,
       v1::STATE_REASON_LOGGED_OUT,
       false,
       false,
       403},
      {"failure_406",
       "fail-login",
       {{"reason", 406}},
       v1::SESSION_STATE_LOGGED_OUT,
       v1::STATE_REASON_LOGGED_OUT,
       false,
       false,
       406},
      {"failure_402",
       "fail-login",
       {{"reason", 402}, {"code", 101}, {"expire", 3600}},
       v1::SESSION_STATE_BANNED,
       v1::STATE_REASON_BANNED,
       false,
       true,
       402},
      {"failure_500",
       "fail-login",
       {{"reason", 500}},
       kDisc,
       v1::STATE_REASON_SERVER_ERROR,
       true,
       true,
       500},
      {"failure_503",
       "fail-login",
       {{"reason", 503}},
       kDisc,
       v1::STATE_REASON_SERVER_ERROR,
       true,
       true,
       503},
      {"stream_515",
       "stream-error",
       {{"code", 515}},
       v1::SESSION_STATE_CONNECTING,
       v1::STATE_REASON_RESTART_REQUIRED,
       true,
       true,
       0},
      {"stream_401_device_removed",
       "stream-error",
       {{"code", 401}, {"conflict", "device_removed"}},
       v1::SESSION_STATE_LOGGED_OUT,
       v1::STATE_REASON_LOGGED_OUT,
       false,
       false,
       401},
      {"stream_conflict_replaced",
       "stream-error",
       {{"code", 0}, {"conflict", "replaced"}},
       v1::SESSION_STATE_REPLACED,
       v1::STATE_REASON_REPLACED,
       false,
       true,
       440},
      {"stream_503",
       "stream-error",
       {{"code", 503}},
       kDisc,
       v1::STATE_REASON_SERVER_ERROR,
       true,
       true,
       503},
      // Without device_removed a 401 is not a logout (whatsmeow reconnects, and a real logout
      // then shows as <failure reason="401">); another conflict type is not a replacement.
      {"stream_401_bare",
       "stream-error",
       {{"code", 401}, {"conflict", ""}},
       kDisc,
       v1::STATE_REASON_SERVER_ERROR,
       true,
       true,
       401},
      {"stream_conflict_other",
       "stream-error",
       {{"code", 409}, {"conflict", "unknown"}},
       kDisc,
       v1::STATE_REASON_SERVER_ERROR,
       true,
       true,
       409},
  };
  // Refused logins are not repeated: repeating them invites flagging.
  for (int code : {400, 409, 413, 414, 415, 418, 501, 999}) {
    rows.push_back({absl::StrCat("failure_", code),
                    "fail-login",
                    {{"reason", code}},
                    kDisc,
                    v1::STATE_REASON_LOGIN_REFUSED,
                    false,
                    true,
                    code});
  }
  // 405 with nothing newer to read (no version page): CLIENT_OUTDATED, not retried.
  rows.push_back({"failure_405",
                  "fail-login",
                  {{"reason", 405}},
                  kDisc,
                  v1::STATE_REASON_CLIENT_OUTDATED,
                  false,
                  true,
                  405});
  return rows;
}

TEST(FailureTable, EveryCodeEndsAsWhatsmeowTreatsIt) {
  Stack s;
  Watcher w(*s.stub);
  uint64_t phone = 15550070000;
  for (const Row& row : Table()) {
    SCOPED_TRACE(row.name);
    const std::string creds = s.sim.Device(++phone);
    const std::string jid = absl::StrCat(phone, ":5");
    auto session = s.Create(row.name, creds).value();
    ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
    const size_t before = w.Of(session.id()).size();
    if (row.action == "fail-login") {
      // The next login meets the failure: drop the socket so that the session logs in again.
      ASSERT_THAT(s.sim.control().Post("/devices/" + jid + "/fail-login", row.body), IsOk());
      ASSERT_THAT(s.sim.control().Post("/connections/" + jid + "/drop", {{"mode", "close"}}),
                  IsOk());
    } else {
      ASSERT_THAT(s.sim.control().Post("/connections/" + jid + "/stream-error", row.body), IsOk());
    }
    // The state the code leads to, after the drop's own passage through DISCONNECTED.
    auto reached = [&](const std::vector<v1::SessionEvent>& all) {
      auto mine = Watcher::Of(all, session.id());
      for (size_t i = before; i < mine.size(); ++i) {
        if (mine[i].to_state() == row.state && mine[i].reason() == row.reason) return true;
      }
      return false;
    };
    ASSERT_TRUE(w.events.WaitFor(reached, std::chrono::seconds(15)));
    if (row.retried) {
      ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));
      v1::Session got;
      ASSERT_THAT(s.Get(session.id(), &got), IsOk());
      EXPECT_EQ(got.failure_code(), 0) << "cleared once connected again";
      EXPECT_TRUE(got.has_credentials());
      continue;
    }
    // Not retried: no CONNECTING follows within many backoff delays.
    const size_t ended = w.Of(session.id()).size();
    EXPECT_FALSE(w.events.WaitFor(
        [&](const std::vector<v1::SessionEvent>& all) {
          return Watcher::Of(all, session.id()).size() > ended;
        },
        kNoRetryWindow))
        << "retried: " << w.Of(session.id()).back().DebugString();
    v1::Session got;
    ASSERT_TRUE(wasentinel::testing::Eventually([&] {
      return s.Get(session.id(), &got).ok() && got.has_credentials() == row.creds_kept &&
             got.failure_code() == row.failure_code;
    })) << got.DebugString();
    EXPECT_EQ(got.state(), row.state);
    EXPECT_EQ(got.reason(), row.reason);
    EXPECT_FALSE(got.socket_alive());
    EXPECT_NE(got.last_error().find(std::to_string(row.failure_code)), std::string::npos)
        << got.last_error();
    if (row.state == v1::SESSION_STATE_BANNED) {
      EXPECT_EQ(got.ban_code(), 101);
      ASSERT_TRUE(got.has_ban_expires_at());
      const absl::Duration left = FromProto(got.ban_expires_at()) - absl::Now();
      EXPECT_GT(left, absl::Minutes(59));
      EXPECT_LE(left, absl::Minutes(60));
      EXPECT_NE(got.last_error().find("too many messages"), std::string::npos) << got.last_error();
      // A person who disconnects a banned session ends its wait for the ban's end.
      grpc::ClientContext ctx;
      v1::DisconnectRequest req;
      req.set_id(session.id());
      v1::DisconnectResponse resp;
      ASSERT_TRUE(s.stub->Disconnect(&ctx, req, &resp).ok());
      ASSERT_THAT(s.Get(session.id(), &got), IsOk());
      EXPECT_EQ(got.state(), v1::SESSION_STATE_DISCONNECTED);
      EXPECT_EQ(got.reason(), v1::STATE_REASON_USER);
      EXPECT_FALSE(got.has_ban_expires_at());
    } else {
      EXPECT_EQ(got.ban_code(), 0);
      EXPECT_FALSE(got.has_ban_expires_at());
    }
    if (row.state == v1::SESSION_STATE_DISCONNECTED) {
      // An automatic recovery does not repeat what WhatsApp refused.
      EXPECT_THAT(Recover(s, session.id()),
                  StatusIs(grpc::StatusCode::FAILED_PRECONDITION, "only a person"));
    }
  }
}

// A connected session of `phone` whose next login meets a temporary ban (`code`, `expire`
// seconds): answers it as GetSession shows it once BANNED.
v1::Session Banned(Stack& s, Watcher& w, uint64_t phone, int code, int expire) {
  const std::string jid = absl::StrCat(phone, ":5");
  auto session = s.Create(absl::StrCat("ban-", phone), s.sim.Device(phone)).value();
  EXPECT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
  EXPECT_THAT(s.sim.control().Post("/devices/" + jid + "/fail-login",
                                   {{"reason", 402}, {"code", code}, {"expire", expire}}),
              IsOk());
  EXPECT_THAT(s.sim.control().Post("/connections/" + jid + "/drop", {{"mode", "close"}}), IsOk());
  EXPECT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_BANNED, v1::STATE_REASON_BANNED));
  v1::Session got;
  EXPECT_THAT(s.Get(session.id(), &got), IsOk());
  return got;
}

TEST(FailureTable, ATemporaryBanEndsAndTheSessionConnectsAgainByItself) {
  Stack s;
  Watcher w(*s.stub);
  v1::Session got = Banned(s, w, 15550071001, 104, 5);
  const v1::Session session = got;
  ASSERT_EQ(got.state(), v1::SESSION_STATE_BANNED);
  EXPECT_EQ(got.ban_code(), 104);
  ASSERT_TRUE(got.has_ban_expires_at());
  const absl::Time ends = FromProto(got.ban_expires_at());
  // An automatic recovery may not cut the ban short.
  EXPECT_THAT(Recover(s, session.id()),
              StatusIs(grpc::StatusCode::FAILED_PRECONDITION, "only a person"));
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_BAN_ENDED));
  EXPECT_GE(absl::Now(), ends - absl::Milliseconds(50)) << "connected before the ban ended";
  ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));
  ASSERT_THAT(s.Get(session.id(), &got), IsOk());
  EXPECT_EQ(got.ban_code(), 0);
  EXPECT_FALSE(got.has_ban_expires_at());
  EXPECT_EQ(got.failure_code(), 0);
}

TEST(FailureTable, ATemporaryBanOutlivesARestart) {
  Stack s;
  Watcher w(*s.stub);
  const v1::Session session = Banned(s, w, 15550071002, 102, 8);
  ASSERT_EQ(session.state(), v1::SESSION_STATE_BANNED);
  v1::Session got = session;
  const absl::Time ends = FromProto(got.ban_expires_at());
  s.Stop();
  s.Start();
  Watcher after(*s.stub);
  // Restored as banned, with the same end; connected when it comes.
  ASSERT_THAT(s.Get(session.id(), &got), IsOk());
  EXPECT_EQ(got.state(), v1::SESSION_STATE_BANNED);
  EXPECT_EQ(FromProto(got.ban_expires_at()), ends);
  ASSERT_TRUE(
      after.WaitFor(session.id(), v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_BAN_ENDED));
  EXPECT_GE(absl::Now(), ends - absl::Milliseconds(50));
  ASSERT_TRUE(after.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));
}

}  // namespace
}  // namespace wasentinel::session
