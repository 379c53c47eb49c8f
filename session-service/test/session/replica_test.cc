// Several session-service replicas over one PostgreSQL and one wa-sim, in one process: leases,
// forwarding to the holder, events from every replica at every watcher, hand-over when a
// replica leaves, and a lease lost to another owner cutting the socket at once
// (README "Architecture" › "More than one replica"). The SIGKILL takeover runs in
// tests/e2e/replicas.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "stack.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::session {
namespace {

using ::wasentinel::testing::Eventually;

constexpr absl::Duration kLeaseTtl = absl::Milliseconds(1500);

struct Replica {
  std::string id;
  std::unique_ptr<App> app;
  std::unique_ptr<v1::SessionService::Stub> stub;
};

struct Cluster {
  wasentinel::testing::TestDatabase db;
  Sim sim;
  std::unique_ptr<PgPool> pool = PgPool::Create(db.url(), 1).value();
  std::map<std::string, Replica> replicas;

  Replica& Start(const std::string& id) {
    Options o = StackOptions(db.url(), sim);
    o.runtime.replica_id = id;
    o.manager.lease_ttl = kLeaseTtl;
    Replica& r = replicas[id];
    r.id = id;
    r.app = std::move(App::Create(o).value());
    EXPECT_TRUE(r.app->Start().ok());
    r.stub = v1::SessionService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(r.app->grpc_port()), grpc::InsecureChannelCredentials()));
    return r;
  }
  void Stop(const std::string& id) {
    replicas[id].app->Shutdown(absl::Seconds(5));
    replicas.erase(id);
  }
  int64_t LoggedIn() { return sim.control().Get("/stats").value()["logged_in"].get<int64_t>(); }
};

v1::Session CreateOn(Replica& r, const std::string& tenant, const std::string& creds) {
  grpc::ClientContext ctx;
  v1::CreateSessionRequest req;
  req.set_tenant_id(tenant);
  req.set_creds_json(creds);
  v1::CreateSessionResponse resp;
  grpc::Status st = r.stub->CreateSession(&ctx, req, &resp);
  EXPECT_THAT(st, IsOk()) << st.error_message();
  return resp.session();
}

template <class Req, class Resp, class Method>
grpc::Status Call(Replica& r, Method method, const std::string& id, Resp* resp) {
  grpc::ClientContext ctx;
  Req req;
  req.set_id(id);
  return ((*r.stub).*method)(&ctx, req, resp);
}

TEST(Replicas, CallsReachTheHolderAndEventsReachEveryWatcher) {
  Cluster c;
  Replica& a = c.Start("replica-a");
  Replica& b = c.Start("replica-b");
  Watcher on_b(*b.stub, std::nullopt);
  const auto session = CreateOn(a, "acme", c.sim.Device(15550003001));
  // Stored by replica-a, seen by a watcher of replica-b (LISTEN/NOTIFY).
  ASSERT_TRUE(on_b.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));

  // replica-b forwards: the answer carries replica-a's live view.
  v1::GetSessionResponse got;
  ASSERT_THAT(
      (Call<v1::GetSessionRequest>(b, &v1::SessionService::Stub::GetSession, session.id(), &got)),
      IsOk());
  EXPECT_EQ(got.session().owner(), "replica-a");
  EXPECT_TRUE(got.session().socket_alive());

  v1::DisconnectResponse down;
  ASSERT_THAT(
      (Call<v1::DisconnectRequest>(b, &v1::SessionService::Stub::Disconnect, session.id(), &down)),
      IsOk());
  EXPECT_EQ(down.session().state(), v1::SESSION_STATE_DISCONNECTED);
  ASSERT_TRUE(on_b.WaitFor(session.id(), v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_USER));
  v1::ConnectResponse up;
  ASSERT_THAT((Call<v1::ConnectRequest>(b, &v1::SessionService::Stub::Connect, session.id(), &up)),
              IsOk());
  EXPECT_EQ(up.session().owner(), "replica-a");
  ASSERT_TRUE(on_b.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));
  EXPECT_EQ(c.LoggedIn(), 1);

  v1::ProbeSessionResponse probe;
  ASSERT_THAT((Call<v1::ProbeSessionRequest>(b, &v1::SessionService::Stub::ProbeSession,
                                             session.id(), &probe)),
              IsOk());
  EXPECT_TRUE(probe.ok()) << probe.error();

  // Deep health on replica-b gathers replica-a's live facts.
  grpc::ClientContext ctx;
  v1::GetDeepHealthResponse deep;
  ASSERT_TRUE(b.stub->GetDeepHealth(&ctx, {}, &deep).ok());
  ASSERT_EQ(deep.sessions_size(), 1);
  EXPECT_EQ(deep.sessions(0).owner(), "replica-a");
  EXPECT_TRUE(deep.sessions(0).socket_alive());
  EXPECT_EQ(deep.status(), v1::OVERALL_STATUS_OK);

  // A list from the database names the holder too.
  grpc::ClientContext lctx;
  v1::ListSessionsResponse list;
  ASSERT_TRUE(b.stub->ListSessions(&lctx, {}, &list).ok());
  ASSERT_EQ(list.sessions_size(), 1);
  EXPECT_EQ(list.sessions(0).owner(), "replica-a");
}

TEST(Replicas, ALeavingReplicaHandsItsSessionsOver) {
  Cluster c;
  c.Start("replica-a");
  Replica& b = c.Start("replica-b");
  Watcher on_b(*b.stub, std::nullopt);
  const auto one = CreateOn(c.replicas["replica-a"], "one", c.sim.Device(15550003011));
  const auto two = CreateOn(c.replicas["replica-a"], "two", c.sim.Device(15550003012));
  ASSERT_TRUE(on_b.WaitFor(one.id(), v1::SESSION_STATE_CONNECTED));
  ASSERT_TRUE(on_b.WaitFor(two.id(), v1::SESSION_STATE_CONNECTED));

  c.Stop("replica-a");  // SIGTERM: SHUTDOWN written, leases given up, NOTIFY
  for (const auto& s : {one, two}) {
    ASSERT_TRUE(on_b.WaitFor(s.id(), v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_SHUTDOWN));
    // Taken over at once on the notification, well before any lease would expire.
    ASSERT_TRUE(on_b.WaitFor(s.id(), v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_TAKEOVER,
                             std::chrono::milliseconds(1000)));
    ASSERT_TRUE(on_b.WaitForLatest(s.id(), v1::SESSION_STATE_CONNECTED));
    v1::GetSessionResponse got;
    ASSERT_THAT(
        (Call<v1::GetSessionRequest>(b, &v1::SessionService::Stub::GetSession, s.id(), &got)),
        IsOk());
    EXPECT_EQ(got.session().owner(), "replica-b");
  }
  EXPECT_EQ(c.LoggedIn(), 2);
  EXPECT_EQ(c.sim.control().Get("/stats").value()["replaced"].get<int64_t>(), 0);
}

TEST(Replicas, ALostLeaseClosesTheSocketAtOnce) {
  Cluster c;
  Replica& a = c.Start("replica-a");
  Watcher w(*a.stub, std::nullopt);
  const auto session = CreateOn(a, "acme", c.sim.Device(15550003021));
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
  ASSERT_EQ(c.LoggedIn(), 1);
  // Another owner takes the lease (as a replica would after a partition), under a holder of
  // its own: replica-a finds out at its next renewal (its holder's lease count changed) and
  // cuts the socket without writing anything.
  ASSERT_TRUE(c.pool
                  ->Run("steal",
                        [&](pqxx::connection& conn) {
                          pqxx::nontransaction n(conn);
                          n.exec_params(
                              "WITH x AS (INSERT INTO lease_holders (replica_id, address,"
                              " expires_at) VALUES ('replica-x', '', now() + interval '1 minute')"
                              " RETURNING holder)"
                              " UPDATE session_leases SET owner = 'replica-x',"
                              " token = nextval('session_lease_tokens'),"
                              " holder = (SELECT holder FROM x) WHERE session_id = $1::uuid",
                              session.id());
                        })
                  .ok());
  ASSERT_TRUE(Eventually([&] { return c.LoggedIn() == 0; },
                         std::chrono::milliseconds(absl::ToInt64Milliseconds(kLeaseTtl))));
  // No transition of replica-a's: the row still says what the last holder wrote.
  EXPECT_EQ(w.Of(session.id()).back().to_state(), v1::SESSION_STATE_CONNECTED);
  // Calls now go to replica-x, whose address is unknown: UNAVAILABLE, retry later.
  v1::ConnectResponse up;
  grpc::Status st =
      Call<v1::ConnectRequest>(a, &v1::SessionService::Stub::Connect, session.id(), &up);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

// Expand step of migration 4 (pg_store.cc): while a replica of the previous version runs, each
// renewal also writes what that version reads (each lease's own expiry, this replica's
// heartbeat in session_replicas); once it is gone, renewal is the holder row alone again.
TEST(Replicas, WhileAPreviousVersionRunsEachLeaseIsRenewedForIt) {
  Cluster c;
  Replica& a = c.Start("replica-a");
  Watcher w(*a.stub, std::nullopt);
  const auto session = CreateOn(a, "acme", c.sim.Device(15550003031));
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
  auto run = [&](const std::string& sql) {
    EXPECT_TRUE(c.pool
                    ->Run("run",
                          [&](pqxx::connection& conn) {
                            pqxx::nontransaction n(conn);
                            n.exec(sql);
                          })
                    .ok());
  };
  auto ask = [&](const std::string& sql) {
    bool out = false;
    EXPECT_TRUE(c.pool
                    ->Run("ask",
                          [&](pqxx::connection& conn) {
                            pqxx::nontransaction n(conn);
                            out = n.exec1(sql)[0].as<bool>();
                          })
                    .ok());
    return out;
  };
  // The lease's own expiry, which only the previous version judges by, is ahead.
  const std::string lease_live = absl::StrCat(
      "SELECT COALESCE((SELECT expires_at > now() FROM session_leases WHERE session_id = '",
      session.id(), "'::uuid), false)");
  const auto ttl = std::chrono::milliseconds(absl::ToInt64Milliseconds(kLeaseTtl));

  // A replica of the previous version beats (ahead of now: fresh for the whole test).
  run("INSERT INTO session_replicas (replica_id, address, heartbeat_at) VALUES"
      " ('replica-old', '127.0.0.1:1', now() + interval '1 minute')");
  ASSERT_TRUE(Eventually(
      [&] {
        return ask("SELECT EXISTS (SELECT 1 FROM session_replicas WHERE replica_id = 'replica-a')");
      },
      2 * ttl));
  absl::SleepFor(2 * kLeaseTtl);  // long past the expiry the lease was taken with
  EXPECT_TRUE(ask(lease_live));
  EXPECT_EQ(c.LoggedIn(), 1);

  // It is gone: the lease's own expiry lapses, and replica-a still holds the session.
  run("DELETE FROM session_replicas WHERE replica_id = 'replica-old'");
  EXPECT_TRUE(Eventually([&] { return !ask(lease_live); }, 3 * ttl));
  EXPECT_EQ(c.LoggedIn(), 1);
  v1::GetSessionResponse got;
  ASSERT_THAT(
      (Call<v1::GetSessionRequest>(a, &v1::SessionService::Stub::GetSession, session.id(), &got)),
      IsOk());
  EXPECT_EQ(got.session().owner(), "replica-a");
  EXPECT_TRUE(got.session().socket_alive());
}

TEST(Replicas, PairingOnAnotherReplicaIsRelayedAndItsCancelCarriesOver) {
  Cluster c;
  Replica& a = c.Start("replica-a");
  Replica& b = c.Start("replica-b");
  Watcher w(*b.stub, std::nullopt);
  auto pair = [](Replica& r, const std::string& id) {
    return std::make_unique<StreamRecorder<v1::PairingUpdate>>([&r, id](grpc::ClientContext* ctx) {
      v1::StartPairingRequest req;
      if (id.empty()) req.set_tenant_id("acme");
      req.set_session_id(id);
      return r.stub->StartPairing(ctx, req);
    });
  };
  auto has_qr = [](const std::vector<v1::PairingUpdate>& v) {
    for (const auto& u : v) {
      if (u.has_qr()) return true;
    }
    return false;
  };
  // replica-a pairs a new session and keeps its lease after the stream is cancelled.
  auto on_a = pair(a, "");
  ASSERT_TRUE(on_a->messages.WaitFor(has_qr));
  const std::string id = on_a->messages.Snapshot().front().session().id();
  on_a->Cancel();
  ASSERT_TRUE(w.WaitFor(id, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_PAIRING_CANCELLED));
  // Pairing it through replica-b: replica-a pairs, its QR codes reach b's caller, and b's
  // caller leaving cancels the pairing on a.
  auto on_b = pair(b, id);
  ASSERT_TRUE(on_b->messages.WaitFor(has_qr));
  EXPECT_EQ(on_b->messages.Snapshot().front().session().owner(), "replica-a");
  on_b->Cancel();
  ASSERT_TRUE(w.events.WaitFor([&](const std::vector<v1::SessionEvent>& v) {
    int cancelled = 0;
    for (const auto& e : v) {
      cancelled += e.session_id() == id && e.reason() == v1::STATE_REASON_PAIRING_CANCELLED;
    }
    return cancelled == 2;
  }));
}

}  // namespace
}  // namespace wasentinel::session
