// session-service end to end in one process: PostgreSQL (fixture pg), wa-sim on loopback, the
// App with its gRPC server on 127.0.0.1:0, and a gRPC client.
#include <grpcpp/generic/generic_stub.h>

#include <pqxx/pqxx>

#include "absl/strings/numbers.h"
#include "absl/synchronization/notification.h"
#include "e2ee/journal_store.h"
#include "e2ee/message_content.h"
#include "e2ee/signal.h"
#include "pg_signal_store.h"
#include "session/stack.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/sealing.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::session {
namespace {

TEST(SessionService, CreatedSessionConnectsAndReportsEveryChange) {
  Stack s;
  Watcher w(*s.stub);
  auto session = s.Create("acme", s.sim.Device(15550001001)).value();
  EXPECT_EQ(session.phone_number(), "15550001001");
  EXPECT_EQ(session.device_jid(), "15550001001:5@s.whatsapp.net");
  EXPECT_TRUE(session.has_credentials());
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED, v1::STATE_REASON_LOGIN_SUCCESS));
  v1::Session got;
  ASSERT_THAT(s.Get(session.id(), &got), IsOk());
  EXPECT_EQ(got.state(), v1::SESSION_STATE_CONNECTED);
  EXPECT_TRUE(got.socket_alive());
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    v1::Session x;
    return s.Get(session.id(), &x).ok() && x.has_last_pong_at() && x.has_last_connected_at();
  }));

  // A dropped socket: DISCONNECTED, then a backoff retry, then CONNECTED again.
  ASSERT_THAT(s.sim.control().Post("/connections/15550001001:5/drop", {{"mode", "rst"}}), IsOk());
  ASSERT_TRUE(
      w.WaitFor(session.id(), v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_SOCKET_CLOSED));
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_RETRY));
  ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));

  // 515: reconnect at once, without DISCONNECTED in between.
  ASSERT_THAT(s.sim.control().Post("/connections/15550001001:5/stream-error", {{"code", 515}}),
              IsOk());
  ASSERT_TRUE(
      w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_RESTART_REQUIRED));

  // Keepalive timeout when wa-sim stops answering.
  ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));
  ASSERT_THAT(s.sim.control().Post("/connections/15550001001:5/blackhole"), IsOk());
  ASSERT_TRUE(
      w.WaitFor(session.id(), v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_KEEPALIVE_TIMEOUT));
  ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));

  // Every event has a strictly increasing sequence.
  auto events = w.events.Snapshot();
  for (size_t i = 1; i < events.size(); ++i)
    EXPECT_LT(events[i - 1].sequence(), events[i].sequence());
}

TEST(SessionService, LoggedOutAndReplacedAreNotRetried) {
  Stack s;
  Watcher w(*s.stub);
  auto a = s.Create("a", s.sim.Device(15550002001)).value();
  auto b = s.Create("b", s.sim.Device(15550002002)).value();
  ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_CONNECTED));
  ASSERT_TRUE(w.WaitFor(b.id(), v1::SESSION_STATE_CONNECTED));
  ASSERT_THAT(s.sim.control().Post("/connections/15550002001:5/stream-error", {{"code", 401}}),
              IsOk());
  ASSERT_THAT(s.sim.control().Post("/connections/15550002002:5/conflict"), IsOk());
  ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_LOGGED_OUT, v1::STATE_REASON_LOGGED_OUT));
  ASSERT_TRUE(w.WaitFor(b.id(), v1::SESSION_STATE_REPLACED, v1::STATE_REASON_REPLACED));
  v1::Session got;
  ASSERT_TRUE(wasentinel::testing::Eventually(
      [&] { return s.Get(a.id(), &got).ok() && !got.has_credentials(); }));
  EXPECT_EQ(got.state(), v1::SESSION_STATE_LOGGED_OUT);
  // Connect without credentials is refused clearly.
  grpc::ClientContext ctx;
  v1::ConnectRequest req;
  req.set_id(a.id());
  v1::ConnectResponse resp;
  EXPECT_EQ(s.stub->Connect(&ctx, req, &resp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_THAT(s.Get(b.id(), &got), IsOk());
  EXPECT_EQ(got.state(), v1::SESSION_STATE_REPLACED);
  EXPECT_FALSE(got.socket_alive());
  // An automatic recovery does not undo a conflict; a person may.
  v1::ReconnectRequest reconnect;
  reconnect.set_id(b.id());
  reconnect.set_recovery(true);
  v1::ReconnectResponse reconnected;
  grpc::ClientContext refused;
  const grpc::Status st = s.stub->Reconnect(&refused, reconnect, &reconnected);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("only a person may bring it back"), std::string::npos)
      << st.error_message();
  ASSERT_THAT(s.Get(b.id(), &got), IsOk());
  EXPECT_EQ(got.state(), v1::SESSION_STATE_REPLACED);
  reconnect.set_recovery(false);
  grpc::ClientContext person;
  ASSERT_TRUE(s.stub->Reconnect(&person, reconnect, &reconnected).ok());
  ASSERT_TRUE(w.WaitFor(b.id(), v1::SESSION_STATE_CONNECTED));
}

TEST(SessionService, ARecoveryReconnectIsMarkedAsSuch) {
  Stack s;
  Watcher w(*s.stub);
  auto a = s.Create("a", s.sim.Device(15550002101)).value();
  ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_CONNECTED));
  v1::ReconnectRequest reconnect;
  reconnect.set_id(a.id());
  reconnect.set_recovery(true);
  v1::ReconnectResponse reconnected;
  grpc::ClientContext ctx;
  ASSERT_TRUE(s.stub->Reconnect(&ctx, reconnect, &reconnected).ok());
  ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_RECOVERY));
  ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_CONNECTED));
}

TEST(SessionService, ConnectAndDisconnectAreIdempotent) {
  Stack s;
  Watcher w(*s.stub);
  auto session = s.Create("acme", s.sim.Device(15550003001), /*auto_connect=*/false).value();
  EXPECT_EQ(session.state(), v1::SESSION_STATE_DISCONNECTED);
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    v1::ConnectRequest req;
    req.set_id(session.id());
    v1::ConnectResponse resp;
    ASSERT_TRUE(s.stub->Connect(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.session().state() == v1::SESSION_STATE_CONNECTING ||
                resp.session().state() == v1::SESSION_STATE_CONNECTED);
  }
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    v1::DisconnectRequest req;
    req.set_id(session.id());
    v1::DisconnectResponse resp;
    ASSERT_TRUE(s.stub->Disconnect(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.session().state(), v1::SESSION_STATE_DISCONNECTED);
    EXPECT_EQ(resp.session().reason(), v1::STATE_REASON_USER);
  }
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_USER));
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    auto c = s.sim.control().Get("/connections");
    return c.ok() && (*c)["connections"].empty();
  }));
  int connecting = 0;
  for (const auto& e : w.Of(session.id()))
    connecting += e.to_state() == v1::SESSION_STATE_CONNECTING;
  EXPECT_EQ(connecting, 1);
}

// GetSession of a held session is answered from a read cache off the io thread: every answer
// must still show what the last call or event left, never an older view.
TEST(SessionService, GetSessionAlwaysShowsTheLatestChange) {
  Stack s;
  Watcher w(*s.stub);
  auto session = s.Create("fresh", s.sim.Device(15550003101), /*auto_connect=*/false).value();
  auto get = [&] {
    v1::Session got;
    EXPECT_THAT(s.Get(session.id(), &got), IsOk());
    return got;
  };
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 3; ++i) (void)get();  // warm the cache
    grpc::ClientContext cc;
    v1::ConnectRequest creq;
    creq.set_id(session.id());
    v1::ConnectResponse cresp;
    ASSERT_TRUE(s.stub->Connect(&cc, creq, &cresp).ok());
    const auto after_connect = get().state();
    EXPECT_TRUE(after_connect == v1::SESSION_STATE_CONNECTING ||
                after_connect == v1::SESSION_STATE_CONNECTED)
        << v1::SessionState_Name(after_connect);
    const int64_t seen = w.events.Snapshot().size();
    ASSERT_TRUE(w.events.WaitFor([&](const std::vector<v1::SessionEvent>& all) {
      for (size_t i = seen; i < all.size(); ++i) {
        if (all[i].to_state() == v1::SESSION_STATE_CONNECTED) return true;
      }
      return false;
    }));
    // The event reached a watcher, so the io thread had recorded it before.
    auto connected = get();
    EXPECT_EQ(connected.state(), v1::SESSION_STATE_CONNECTED);
    EXPECT_TRUE(connected.socket_alive());
    for (int i = 0; i < 3; ++i) (void)get();
    grpc::ClientContext dc;
    v1::DisconnectRequest dreq;
    dreq.set_id(session.id());
    v1::DisconnectResponse dresp;
    ASSERT_TRUE(s.stub->Disconnect(&dc, dreq, &dresp).ok());
    auto disconnected = get();
    EXPECT_EQ(disconnected.state(), v1::SESSION_STATE_DISCONNECTED);
    EXPECT_EQ(disconnected.reason(), v1::STATE_REASON_USER);
    EXPECT_FALSE(disconnected.socket_alive());
  }
}

TEST(SessionService, RestartRestoresSessions) {
  Stack s;
  auto a = s.Create("a", s.sim.Device(15550004001)).value();
  auto b = s.Create("b", s.sim.Device(15550004002)).value();
  {
    Watcher w(*s.stub);
    ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_CONNECTED));
    ASSERT_TRUE(w.WaitFor(b.id(), v1::SESSION_STATE_CONNECTED));
  }
  s.Stop();
  // Shutdown wrote DISCONNECTED / SHUTDOWN for both; nothing is connected at wa-sim.
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    auto c = s.sim.control().Get("/connections");
    return c.ok() && (*c)["connections"].empty();
  }));
  s.Start();
  Watcher w(*s.stub, /*after=*/0);
  ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_SHUTDOWN));
  ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_STARTUP_RESTORE));
  ASSERT_TRUE(w.WaitForLatest(a.id(), v1::SESSION_STATE_CONNECTED));
  ASSERT_TRUE(w.WaitForLatest(b.id(), v1::SESSION_STATE_CONNECTED));
}

TEST(SessionService, RetriesEndInRetriesExhausted) {
  Stack s([](Options& o) { o.manager.connection.url = "ws://127.0.0.1:1/ws/chat"; });
  Watcher w(*s.stub);
  auto session = s.Create("acme", s.sim.Device(15550005001)).value();
  ASSERT_TRUE(
      w.WaitFor(session.id(), v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_RETRIES_EXHAUSTED));
  int retries = 0;
  for (const auto& e : w.Of(session.id())) retries += e.reason() == v1::STATE_REASON_RETRY;
  EXPECT_EQ(retries, 3);
  v1::Session got;
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    return s.Get(session.id(), &got).ok() && got.reason() == v1::STATE_REASON_RETRIES_EXHAUSTED;
  }));
  EXPECT_FALSE(got.last_error().empty());
}

TEST(SessionService, BadInputGetsClearErrors) {
  Stack s;
  auto create = [&](const std::string& tenant, const std::string& creds) {
    grpc::ClientContext ctx;
    v1::CreateSessionRequest req;
    req.set_tenant_id(tenant);
    req.set_creds_json(creds);
    v1::CreateSessionResponse resp;
    return s.stub->CreateSession(&ctx, req, &resp);
  };
  EXPECT_EQ(create("", "{}").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(create("unpaired", ""), IsOk());  // a session to pair later
  EXPECT_EQ(create("t", "not json").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create("t", R"({"noiseKey":{"private":"AA==","public":"AA=="}})").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  const std::string creds = s.sim.Device(15550006001);
  EXPECT_THAT(create("t", creds), IsOk());
  EXPECT_EQ(create("t", creds).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(s.Get("nope", nullptr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.Get("6f1c1f1e-0000-4000-8000-000000000000", nullptr).error_code(),
            grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext ctx;
  v1::ListSessionsRequest list;
  list.set_page_size(100000);
  v1::ListSessionsResponse resp;
  EXPECT_EQ(s.stub->ListSessions(&ctx, list, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(SessionService, HealthAndWatchReplay) {
  Stack s;
  auto a = s.Create("a", s.sim.Device(15550007001)).value();
  {
    Watcher w(*s.stub);
    ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_CONNECTED));
  }
  grpc::ClientContext ctx;
  v1::GetHealthResponse health;
  ASSERT_TRUE(s.stub->GetHealth(&ctx, {}, &health).ok());
  EXPECT_TRUE(health.database_reachable());
  EXPECT_EQ(health.total_sessions(), 1);
  EXPECT_EQ(health.status(), v1::OVERALL_STATUS_OK);
  // Replay from the start: CREATED, CONNECTING, CONNECTED in order.
  Watcher replay(*s.stub, 0);
  ASSERT_TRUE(replay.events.WaitForCount(3));
  auto ev = replay.Of(a.id());
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev[0].reason(), v1::STATE_REASON_CREATED);
  EXPECT_EQ(ev[1].to_state(), v1::SESSION_STATE_CONNECTING);
  EXPECT_EQ(ev[2].to_state(), v1::SESSION_STATE_CONNECTED);

  // A live watch's headers name the last sequence stored when it was subscribed (a client
  // that saw no event yet resumes from it); a replay's do not.
  {
    grpc::ClientContext live;
    auto reader = s.stub->WatchSessionEvents(&live, v1::WatchSessionEventsRequest());
    reader->WaitForInitialMetadata();
    const auto& md = live.GetServerInitialMetadata();
    auto it = md.find("x-watch-after");
    ASSERT_NE(it, md.end());
    int64_t stored = 0;
    ASSERT_TRUE(absl::SimpleAtoi(std::string(it->second.data(), it->second.size()), &stored));
    EXPECT_GE(stored, ev[2].sequence()) << "the session's CONNECTED was stored before";
    live.TryCancel();
    (void)reader->Finish();
    grpc::ClientContext from_start;
    v1::WatchSessionEventsRequest after;
    after.set_after_sequence(0);
    auto replaying = s.stub->WatchSessionEvents(&from_start, after);
    replaying->WaitForInitialMetadata();
    EXPECT_EQ(from_start.GetServerInitialMetadata().count("x-watch-after"), 0u);
    from_start.TryCancel();
    (void)replaying->Finish();
  }

  // grpc.health.v1.Health/Check, spoken as raw protobuf: an empty HealthCheckRequest
  // (service ""), answered HealthCheckResponse{status: SERVING} = bytes 08 01.
  grpc::GenericStub generic(s.channel);
  grpc::ClientContext hctx;
  grpc::ByteBuffer request, response;
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  absl::Notification done;
  grpc::Status hstatus;
  generic.UnaryCall(&hctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status st) {
                      hstatus = st;
                      done.Notify();
                    });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_THAT(hstatus, IsOk()) << hstatus.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_THAT(response.Dump(&slices), IsOk());
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

// Events are numbered in commit order (docs/architecture.md, "The event log, LISTEN/NOTIFY
// and WatchSessionEvents"): a live watcher keeps its place by the last sequence it sent, so with
// many writers at once an event that became visible after a larger sequence would be skipped for
// good. 400 creations from 16 threads: the live watcher gets all 400, in increasing sequence.
TEST(SessionService, ConcurrentWritersEventsReachALiveWatcherInSequenceOrder) {
  Stack s;
  Watcher live(*s.stub, std::nullopt);
  ASSERT_TRUE(live.started.WaitForCount(1));
  constexpr int kThreads = 16, kEach = 25;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        grpc::ClientContext ctx;
        v1::CreateSessionRequest req;
        req.set_tenant_id("acme");
        req.set_session_name(absl::StrCat("w", t, "-", i));
        req.set_auto_connect(false);
        v1::CreateSessionResponse resp;
        EXPECT_TRUE(s.stub->CreateSession(&ctx, req, &resp).ok());
      }
    });
  }
  for (auto& w : writers) w.join();
  ASSERT_TRUE(live.events.WaitForCount(kThreads * kEach));
  const auto events = live.events.Snapshot();
  EXPECT_EQ(events.size(), static_cast<size_t>(kThreads * kEach));
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_LT(events[i - 1].sequence(), events[i].sequence()) << "at " << i;
  }
}

TEST(SessionService, WrongSealingKeyIsAStartupError) {
  Stack s;
  ASSERT_THAT(s.Create("a", s.sim.Device(15550008001)), IsOk());
  s.Stop();
  Options o = StackOptions(s.db.url(), s.sim);
  o.auth_state_keys = "k1:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
  auto app = App::Create(o);
  EXPECT_EQ(app.status().code(), absl::StatusCode::kFailedPrecondition) << app.status();
  o.auth_state_keys = "k2:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
  EXPECT_EQ(App::Create(o).status().code(), absl::StatusCode::kFailedPrecondition);
}

// The account's phone shows itself by what it sends from device 0 (receipts, its own messages,
// notifications), dated by their `t`; other numbers and the account's other linked devices do
// not count. The time is kept in PostgreSQL and outlives a restart.
TEST(SessionService, ThePhoneIsSeenByWhatItsDeviceZeroSends) {
  Stack s;
  Watcher w(*s.stub);
  auto session = s.Create("phone", s.sim.Device(15550090001)).value();
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
  const std::string path = "/connections/15550090001:5/stanza";
  const int64_t hour_ago = absl::ToUnixSeconds(absl::Now() - absl::Hours(1));
  auto send = [&](nlohmann::json stanza) {
    ASSERT_THAT(s.sim.control().Post(path, stanza), IsOk());
  };
  auto seen = [&](absl::Time want) {
    v1::Session got;
    return wasentinel::testing::Eventually([&] {
      return s.Get(session.id(), &got).ok() && got.has_phone_last_seen_at() &&
             FromProto(got.phone_last_seen_at()) == want;
    });
  };
  // Not the phone: another number, another linked device of the account.
  send({{"tag", "receipt"}, {"from", "15550001111@s.whatsapp.net"}, {"t", hour_ago}});
  send({{"tag", "receipt"}, {"from", "15550090001:3@s.whatsapp.net"}, {"t", hour_ago}});
  // The phone, an hour ago: a read receipt of a chat it read.
  send({{"tag", "receipt"},
        {"from", "15550090001@s.whatsapp.net"},
        {"recipient", "15550001111@s.whatsapp.net"},
        {"type", "read"},
        {"t", hour_ago}});
  ASSERT_TRUE(seen(absl::FromUnixSeconds(hour_ago)));
  // Then a message it sent to a group (participant: device 0), a minute ago.
  const int64_t minute_ago = absl::ToUnixSeconds(absl::Now() - absl::Minutes(1));
  send({{"tag", "message"},
        {"from", "120363000000000001@g.us"},
        {"participant", "15550090001:0@s.whatsapp.net"},
        {"type", "text"},
        {"t", minute_ago}});
  ASSERT_TRUE(seen(absl::FromUnixSeconds(minute_ago)));
  // An older sighting does not move it back.
  send({{"tag", "receipt"}, {"from", "15550090001@s.whatsapp.net"}, {"t", hour_ago}});
  ASSERT_THAT(s.sim.control().Post("/connections/15550090001:5/drop"), IsOk());
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_DISCONNECTED));
  s.Stop();
  s.Start();
  v1::Session got;
  ASSERT_THAT(s.Get(session.id(), &got), IsOk());
  ASSERT_TRUE(got.has_phone_last_seen_at());
  EXPECT_EQ(FromProto(got.phone_last_seen_at()), absl::FromUnixSeconds(minute_ago));
}

// docs/wa-protocol.md §11: a device whose one-time pre-keys run out at the server cannot be
// written to by anyone new; the session keeps them stocked.
TEST(SessionService, UploadsOneTimePreKeysWhenWhatsAppRunsLow) {
  Stack s;
  Watcher w(*s.stub);
  auto session = s.Create("keys", s.sim.Device(15550091001)).value();
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
  auto at_server = [&]() -> int64_t {
    auto devices = s.sim.control().Get("/devices");
    if (!devices.ok()) return -2;
    for (const auto& d : (*devices)["devices"]) {
      if (d["jid"] == "15550091001:5")
        return d["prekeys"].is_null() ? -1 : d["prekeys"].get<int64_t>();
    }
    return -2;
  };
  // The private halves, sealed in PostgreSQL, and the highest id handed out.
  auto stored = [&] {
    pqxx::connection c(s.db.url());
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params(
        "SELECT count(*), coalesce(max(key_id), 0) FROM signal_pre_keys WHERE session_id = "
        "$1::uuid",
        session.id());
    return std::pair<int64_t, int64_t>(r[0][0].as<int64_t>(), r[0][1].as<int64_t>());
  };
  // The first login finds none at the server: the first batch is whatsmeow's 812.
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return at_server() == 812; })) << at_server();
  EXPECT_EQ(stored(), std::make_pair(int64_t{812}, int64_t{812}));

  // Bundles used them up: the count notification brings a top-up of 50, with fresh ids.
  ASSERT_THAT(s.sim.control().Post("/devices/15550091001:5/drain-prekeys"), IsOk());
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return at_server() == 50; })) << at_server();
  EXPECT_EQ(stored(), std::make_pair(int64_t{862}, int64_t{862}));

  // A login that finds enough at the server uploads nothing.
  ASSERT_THAT(s.sim.control().Post("/connections/15550091001:5/drop"), IsOk());
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_DISCONNECTED));
  ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));
  EXPECT_EQ(at_server(), 50);
  EXPECT_EQ(stored().first, 862);
}

// docs/wa-protocol.md §11: what WhatsApp delivers is decrypted and stored (sealed, with the
// Signal state it changed) before the receipt tells WhatsApp it may delete its copy.
TEST(SessionService, StoresAnEncryptedMessageBeforeItsReceipt) {
  Stack s;
  Watcher w(*s.stub);
  auto context = signal::Context::Create().value();
  auto session = s.Create("inbox", SignalCreds(s, 15550094001, *context).dump()).value();
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
  // (The control API's answers are kept in locals: a range-for over a member of a temporary
  // would read a destroyed object.)
  auto conn = [&] {
    const nlohmann::json all = s.sim.control().Get("/connections").value();
    for (const auto& c : all["connections"]) {
      if (c["jid"] == "15550094001:5" && c["logged_in"] == true) return c;
    }
    return nlohmann::json();
  };
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    const nlohmann::json all = s.sim.control().Get("/devices").value();
    for (const auto& d : all["devices"]) {
      if (d["jid"] == "15550094001:5") return d["prekeys"] == 812;
    }
    return false;
  })) << "the session's pre-keys uploaded";
  const Sealer sealer = Sealer::FromConfig(kKey).value();
  struct Row {
    std::string chat, sender, kind, text;
    bool from_me = false;
  };
  auto rows = [&] {
    std::vector<Row> out;
    pqxx::connection c(s.db.url());
    pqxx::nontransaction tx(c);
    for (const auto& r :
         tx.exec_params("SELECT chat_jid, sender_jid, kind, from_me, seal_key, body FROM messages"
                        " WHERE session_id = $1::uuid AND status IN ('RECEIVED', 'READ') AND"
                        " kind <> 'identity_changed' ORDER BY queued",
                        session.id())) {
      pqxx::binarystring blob(r[5]);
      auto body =
          sealer.Open(r[4].as<std::string>(), Bytes(blob.data(), blob.data() + blob.size()));
      EXPECT_TRUE(body.ok());
      auto content = signal::ParseMessageContent(body.value_or(Bytes()));
      out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
                     content.ok() ? content->text.value_or("") : "", r[3].as<bool>()});
    }
    return out;
  };

  // A customer's phone writes to the shop: a pkmsg, then a msg on the same session.
  ASSERT_THAT(s.sim.control().Post("/accounts/15550094999/send",
                                   {{"to", "15550094001"}, {"text", "hello shop"}}),
              IsOk());
  ASSERT_THAT(s.sim.control().Post("/accounts/15550094999/send",
                                   {{"to", "15550094001"}, {"text", "are you open?"}}),
              IsOk());
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return rows().size() == 2; }));
  auto got = rows();
  EXPECT_EQ(got[0].text, "hello shop");
  EXPECT_EQ(got[1].text, "are you open?");
  EXPECT_EQ(got[0].chat, "15550094999@s.whatsapp.net");
  EXPECT_EQ(got[0].sender, "15550094999@s.whatsapp.net");
  EXPECT_EQ(got[0].kind, "conversation");
  EXPECT_FALSE(got[0].from_me);
  // Each was answered with a receipt, which WhatsApp takes as the device's acknowledgement.
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    auto c = conn();
    return !c.is_null() && c["unacked"] == 0;
  })) << conn().dump();
  EXPECT_EQ(conn()["acks_mismatched"], 0);

  // The shop's own phone writes to the customer: the copy is the shop's message in that chat.
  ASSERT_THAT(s.sim.control().Post("/accounts/15550094001/send",
                                   {{"to", "15550094999"}, {"text", "yes, until six"}}),
              IsOk());
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return rows().size() == 3; }));
  got = rows();
  EXPECT_EQ(got[2].text, "yes, until six");
  EXPECT_EQ(got[2].chat, "15550094999@s.whatsapp.net");
  EXPECT_TRUE(got[2].from_me);

  // A message damaged on the way is not stored: a retry receipt goes back to its sender.
  const int64_t retries = s.sim.control().Get("/stats").value()["retries_routed"];
  ASSERT_THAT(s.sim.control().Post("/devices/15550094001:5/corrupt-next"), IsOk());
  ASSERT_THAT(s.sim.control().Post("/accounts/15550094999/send",
                                   {{"to", "15550094001"}, {"text", "garbled"}}),
              IsOk());
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    return s.sim.control().Get("/stats").value()["retries_routed"].get<int64_t>() > retries;
  }));
  EXPECT_EQ(rows().size(), 3u);
  auto notices = [&](const std::string& where) {
    pqxx::connection c(s.db.url());
    pqxx::nontransaction tx(c);
    return tx
        .exec_params1("SELECT count(*) FROM messages WHERE session_id = $1::uuid AND " + where,
                      session.id())[0]
        .as<int>();
  };
  // It is recorded, with the reason, as what could not be decrypted.
  EXPECT_EQ(notices("status = 'UNDECRYPTABLE' AND failure IS NOT NULL"), 1);
  // And counted in the session's facts for health-monitor's score.
  {
    grpc::ClientContext ctx;
    v1::GetDeepHealthResponse deep;
    ASSERT_TRUE(s.stub->GetDeepHealth(&ctx, v1::GetDeepHealthRequest(), &deep).ok());
    int counted = -1;
    for (const auto& one : deep.sessions()) {
      if (one.id() == session.id()) counted = one.undecryptable_last_hour();
    }
    EXPECT_EQ(counted, 1);
  }
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return conn()["unacked"] == 0; }));

  // After a restart the Signal state comes back from PostgreSQL: the session keeps decrypting.
  s.Stop();
  s.Start();
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return !conn().is_null(); }));
  ASSERT_THAT(s.sim.control().Post("/accounts/15550094999/send",
                                   {{"to", "15550094001"}, {"text", "still there?"}}),
              IsOk());
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return rows().size() == 4; }));
  EXPECT_EQ(rows()[3].text, "still there?");

  // The customer reinstalls WhatsApp: a new identity, announced by WhatsApp; the next message
  // starts a new session with it, and is stored like any other.
  ASSERT_THAT(s.sim.control().Post("/accounts/15550094999/reset-identity"), IsOk());
  ASSERT_THAT(s.sim.control().Post("/accounts/15550094999/send",
                                   {{"to", "15550094001"}, {"text", "new phone, same me"}}),
              IsOk());
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return rows().size() == 5; }));
  EXPECT_EQ(rows()[4].text, "new phone, same me");
  // And the chat notes the changed security code.
  EXPECT_GE(notices("kind = 'identity_changed' AND chat_jid = '15550094999@s.whatsapp.net'"), 1);
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return conn()["unacked"] == 0; }));
}

// Baileys' useMultiFileAuthState folder imported whole (wactl sessions create --creds FOLDER):
// the one-time pre-keys the device already uploaded are kept, so a sender who took one of them
// from WhatsApp's server reaches the imported session; its own batches take later ids.
TEST(SessionService, CreateKeepsTheImportedDevicesPreKeys) {
  Stack s;
  auto context = signal::Context::Create().value();
  signal::Identity identity;
  signal::SignedPreKey signed_key;
  auto creds = SignalCreds(s, 15550092001, *context, &identity, &signed_key);
  auto buffer = [](const Bytes& b) { return wasentinel::testing::BufferJson(b); };
  creds["nextPreKeyId"] = 31;
  const auto pre_keys = context->GeneratePreKeys(3, 28).value();  // ids 3..30

  v1::CreateSessionRequest req;
  req.set_tenant_id("import");
  req.set_creds_json(creds.dump());
  req.set_auto_connect(false);
  for (const auto& k : pre_keys) {
    (*req.mutable_pre_key_files())["pre-key-" + std::to_string(k.id) + ".json"] =
        nlohmann::json{{"private", buffer(k.key.priv)}, {"public", buffer(k.key.pub)}}.dump();
  }
  // A file that is not one is refused, naming it, and nothing is created.
  {
    v1::CreateSessionRequest bad = req;
    (*bad.mutable_pre_key_files())["pre-key-40.json"] = "{}";
    grpc::ClientContext ctx;
    v1::CreateSessionResponse resp;
    const grpc::Status st = s.stub->CreateSession(&ctx, bad, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(st.error_message(), ::testing::HasSubstr("pre-key-40.json"));
  }
  grpc::ClientContext ctx;
  v1::CreateSessionResponse resp;
  ASSERT_TRUE(s.stub->CreateSession(&ctx, req, &resp).ok());
  const std::string id = resp.session().id();

  // What the session keeps: the 28 keys sealed, and batches continuing at 31.
  const Sealer sealer = Sealer::FromConfig(kKey).value();
  pqxx::connection c(s.db.url());
  pqxx::work w(c);
  signal::Image image = LoadSignalImage(w, sealer, id).value();
  EXPECT_EQ(image.pre_keys.size(), 28u);
  EXPECT_EQ(w.exec_params("SELECT next_id FROM signal_pre_key_ids WHERE session_id = $1::uuid", id)
                .at(0)
                .at(0)
                .as<int64_t>(),
            31);
  w.commit();

  // A sender who fetched the device's bundle with pre-key 17 writes to it; the imported state
  // (plus the signed pre-key of the credentials) decrypts it.
  signal::MemoryStore sender_store(context->GenerateIdentity().value());
  auto sender = signal::Protocol::Create(*context, sender_store).value();
  signal::PreKeyBundle bundle;
  bundle.registration_id = identity.registration_id;
  bundle.device = 5;
  bundle.pre_key = pre_keys[14];  // id 17
  bundle.signed_pre_key_id = signed_key.id;
  bundle.signed_pre_key_pub = signed_key.key.pub;
  bundle.signed_pre_key_signature = signed_key.signature;
  bundle.identity_pub = identity.key.pub;
  ASSERT_TRUE(sender->ProcessBundle({"15550092001", 5}, bundle).ok());
  const Bytes text = {'h', 'e', 'l', 'l', 'o'};
  auto sent = sender->Encrypt({"15550092001", 5}, signal::Pad(text)).value();
  ASSERT_EQ(sent.type, signal::MessageType::kPreKey);
  image.signed_pre_keys[signed_key.id] =
      context->SignedPreKeyRecord(signed_key, absl::ToUnixMillis(absl::Now())).value();
  signal::JournalStore imported(identity, std::move(image));
  auto receiver = signal::Protocol::Create(*context, imported).value();
  auto got = receiver->Decrypt({"15550001234", 1}, sent.type, sent.bytes);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(signal::Unpad(*got).value(), text);
}

}  // namespace
}  // namespace wasentinel::session
