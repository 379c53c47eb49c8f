// The session API beyond the walking skeleton, end to end in one process against a real
// PostgreSQL and wa-sim: pairing by QR code with wa-sim as the phone, the lifecycle methods,
// API keys and scopes, key rotation and deep health.
#include "session/stack.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::session {
namespace {

using Failure = v1::PairingUpdate::Failure;

// A StartPairing stream read on its own thread.
class Pairing : public StreamRecorder<v1::PairingUpdate> {
 public:
  Pairing(v1::SessionService::Stub& stub, const v1::StartPairingRequest& req)
      : StreamRecorder([&](grpc::ClientContext* ctx) { return stub.StartPairing(ctx, req); }) {}

  // The first update of kind `which` (QR codes: the `n`-th).
  std::optional<v1::PairingUpdate> Await(v1::PairingUpdate::UpdateCase which, int n = 1) {
    std::optional<v1::PairingUpdate> found;
    const bool ok = messages.WaitFor([&](const std::vector<v1::PairingUpdate>& all) {
      int seen = 0;
      for (const auto& u : all) {
        if (u.update_case() == which && ++seen == n) {
          found = u;
          return true;
        }
      }
      return false;
    });
    return ok ? found : std::nullopt;
  }
};

v1::StartPairingRequest PairIn(const std::string& tenant) {
  v1::StartPairingRequest req;
  req.set_tenant_id(tenant);
  req.set_account_name("Shop " + tenant);
  req.set_owner_email("ops@example.com");
  return req;
}

// Calls a unary method with optional metadata; answers the status.
template <class Req, class Resp, class Method>
grpc::Status Call(v1::SessionService::Stub& stub, Method method, const Req& req, Resp* resp,
                  const std::string& key = "", bool bearer = false) {
  grpc::ClientContext ctx;
  if (!key.empty()) {
    if (bearer) {
      ctx.AddMetadata("authorization", "Bearer " + key);
    } else {
      ctx.AddMetadata("x-api-key", key);
    }
  }
  return (stub.*method)(&ctx, req, resp);
}

TEST(SessionApi, PairingByQrLinksADeviceThatLogsInAndIsRestored) {
  Stack s;
  Watcher w(*s.stub);
  Pairing p(*s.stub, PairIn("pairco"));
  auto first = p.Await(v1::PairingUpdate::kSession);
  ASSERT_TRUE(first);
  const std::string id = first->session().id();
  EXPECT_EQ(first->session().state(), v1::SESSION_STATE_QR_PENDING);
  EXPECT_FALSE(first->session().has_credentials());
  auto qr = p.Await(v1::PairingUpdate::kQr);
  ASSERT_TRUE(qr);
  EXPECT_EQ(qr->qr().index(), 1);
  EXPECT_EQ(qr->qr().total(), 6);
  EXPECT_GT(qr->qr().expires_at().seconds(), absl::ToUnixSeconds(absl::Now()));

  auto scanned = s.sim.control().Post("/pair", {{"qr", qr->qr().code()}, {"phone", "15558880001"}});
  ASSERT_THAT(scanned, IsOk()) << scanned.status();
  EXPECT_EQ((*scanned)["result"], "paired") << scanned->dump();

  auto success = p.Await(v1::PairingUpdate::kSuccess);
  ASSERT_TRUE(success);
  EXPECT_EQ(success->success().phone_number(), "15558880001");
  EXPECT_EQ(success->success().device_jid(), (*scanned)["jid"]);
  EXPECT_EQ(success->success().platform(), "android");
  EXPECT_EQ(success->success().session().state(), v1::SESSION_STATE_CONNECTED);
  ASSERT_TRUE(p.done.WaitForCount(1));
  EXPECT_THAT(p.status(), IsOk()) << p.status().error_message();
  ASSERT_TRUE(w.WaitFor(id, v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_PAIRED));
  ASSERT_TRUE(w.WaitFor(id, v1::SESSION_STATE_CONNECTED, v1::STATE_REASON_LOGIN_SUCCESS));

  v1::Session got;
  auto got_st = s.Get(id, &got);
  ASSERT_THAT(got_st, IsOk()) << got_st.error_code() << " " << got_st.error_message();
  EXPECT_TRUE(got.has_credentials());
  EXPECT_EQ(got.phone_number(), "15558880001");

  // The credentials were sealed and stored: a restarted service logs in with them.
  // Resumed from the last event seen: the restore may finish before the watch is in place.
  const int64_t seen = w.events.Snapshot().back().sequence();
  s.Stop();
  s.Start();
  Watcher after(*s.stub, seen);
  ASSERT_TRUE(after.WaitFor(id, v1::SESSION_STATE_CONNECTED));
  auto devices = s.sim.control().Get("/devices");
  ASSERT_THAT(devices, IsOk());
  bool found = false;
  for (const auto& d : (*devices)["devices"]) found |= d["logins"].get<int>() >= 2;
  EXPECT_TRUE(found) << devices->dump();

  // Pairing a session that has credentials is refused.
  v1::StartPairingRequest again;
  again.set_session_id(id);
  Pairing refused(*s.stub, again);
  ASSERT_TRUE(refused.done.WaitForCount(1));
  EXPECT_EQ(refused.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST(SessionApi, PairingByPhoneNumberCodeLinksADevice) {
  Stack s;
  Watcher w(*s.stub);
  {  // A number that is not one.
    auto req = PairIn("badphone");
    req.set_phone_number("12ab");
    Pairing p(*s.stub, req);
    ASSERT_TRUE(p.done.WaitForCount(1));
    EXPECT_EQ(p.status().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  auto req = PairIn("codeco");
  req.set_phone_number("+1 555 888-0002");
  Pairing p(*s.stub, req);
  auto first = p.Await(v1::PairingUpdate::kSession);
  ASSERT_TRUE(first);
  const std::string id = first->session().id();
  auto code = p.Await(v1::PairingUpdate::kPairingCode);
  ASSERT_TRUE(code);
  const std::string typed = code->pairing_code().code();
  ASSERT_EQ(typed.size(), 9u);  // ABCD-EFGH
  EXPECT_EQ(typed[4], '-');
  EXPECT_GT(code->pairing_code().expires_at().seconds(), absl::ToUnixSeconds(absl::Now()) + 60);

  // No QR codes in this mode; a wrong code is refused by the phone and the right one still
  // works afterwards.
  std::string wrong = typed;
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  auto refused = s.sim.control().Post("/pair-code", {{"code", wrong}, {"phone", "15558880002"}});
  ASSERT_THAT(refused, IsOk()) << refused.status();
  EXPECT_EQ((*refused)["result"], "wrong_code") << refused->dump();
  auto other = s.sim.control().Post("/pair-code", {{"code", typed}, {"phone", "15558880003"}});
  EXPECT_THAT(other, ::testing::Not(IsOk())) << "no connection waits for a code for another number";

  auto paired = s.sim.control().Post("/pair-code", {{"code", typed}, {"phone", "15558880002"}});
  ASSERT_THAT(paired, IsOk()) << paired.status();
  EXPECT_EQ((*paired)["result"], "paired") << paired->dump();
  auto success = p.Await(v1::PairingUpdate::kSuccess);
  ASSERT_TRUE(success);
  EXPECT_EQ(success->success().phone_number(), "15558880002");
  EXPECT_EQ(success->success().device_jid(), (*paired)["jid"]);
  EXPECT_EQ(success->success().session().state(), v1::SESSION_STATE_CONNECTED);
  for (const auto& u : p.messages.Snapshot()) EXPECT_FALSE(u.has_qr()) << "QR codes shown";
  ASSERT_TRUE(w.WaitFor(id, v1::SESSION_STATE_CONNECTED, v1::STATE_REASON_LOGIN_SUCCESS));

  // The derived adv secret was stored with the credentials: a restart logs in with them.
  const int64_t seen = w.events.Snapshot().back().sequence();
  s.Stop();
  s.Start();
  Watcher after(*s.stub, seen);
  ASSERT_TRUE(after.WaitFor(id, v1::SESSION_STATE_CONNECTED));
}

TEST(SessionApi, PairingEndsWithTheReasonItFailed) {
  Stack s([](Options& o) {
    o.manager.connection.qr_first_timeout = absl::Milliseconds(150);
    o.manager.connection.qr_next_timeout = absl::Milliseconds(100);
  });
  Watcher w(*s.stub);
  {  // Every QR code expires.
    Pairing p(*s.stub, PairIn("timeout"));
    auto failure = p.Await(v1::PairingUpdate::kFailure);
    ASSERT_TRUE(failure);
    EXPECT_EQ(failure->failure().reason(), Failure::REASON_TIMEOUT);
    auto qr6 = p.Await(v1::PairingUpdate::kQr, 6);
    EXPECT_TRUE(qr6) << "every ref is shown before the timeout";
    const std::string id = p.Await(v1::PairingUpdate::kSession)->session().id();
    ASSERT_TRUE(w.WaitFor(id, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_PAIRING_TIMEOUT));
  }
}

TEST(SessionApi, PairingRejectsAForgedIdentityAndCanBeCancelled) {
  Stack s;
  Watcher w(*s.stub);
  {  // The phone's account signature does not verify: our client refuses, as whatsmeow does.
    Pairing p(*s.stub, PairIn("forged"));
    auto qr = p.Await(v1::PairingUpdate::kQr);
    ASSERT_TRUE(qr);
    auto scanned = s.sim.control().Post(
        "/pair", {{"qr", qr->qr().code()}, {"phone", "15558880002"}, {"corrupt", "signature"}});
    ASSERT_THAT(scanned, IsOk());
    EXPECT_EQ((*scanned)["result"], "rejected");
    EXPECT_EQ((*scanned)["text"], "signature-mismatch");
    auto failure = p.Await(v1::PairingUpdate::kFailure);
    ASSERT_TRUE(failure);
    EXPECT_EQ(failure->failure().reason(), Failure::REASON_REJECTED);
    const std::string id = p.Await(v1::PairingUpdate::kSession)->session().id();
    ASSERT_TRUE(w.WaitFor(id, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_PAIRING_REJECTED));
  }
  {  // A forged HMAC too.
    Pairing p(*s.stub, PairIn("forged-hmac"));
    auto qr = p.Await(v1::PairingUpdate::kQr);
    ASSERT_TRUE(qr);
    auto scanned = s.sim.control().Post(
        "/pair", {{"qr", qr->qr().code()}, {"phone", "15558880003"}, {"corrupt", "hmac"}});
    ASSERT_THAT(scanned, IsOk());
    EXPECT_EQ((*scanned)["text"], "hmac-mismatch");
  }
  {  // Cancelling the stream cancels the pairing; the session can be paired again later.
    auto p = std::make_unique<Pairing>(*s.stub, PairIn("cancel"));
    ASSERT_TRUE(p->Await(v1::PairingUpdate::kQr));
    const std::string id = p->Await(v1::PairingUpdate::kSession)->session().id();
    p->Cancel();
    ASSERT_TRUE(w.WaitFor(id, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_PAIRING_CANCELLED));
    p.reset();
    v1::StartPairingRequest again;
    again.set_session_id(id);
    Pairing second(*s.stub, again);
    auto qr = second.Await(v1::PairingUpdate::kQr);
    ASSERT_TRUE(qr);
    auto scanned =
        s.sim.control().Post("/pair", {{"qr", qr->qr().code()}, {"phone", "15558880004"}});
    ASSERT_THAT(scanned, IsOk());
    EXPECT_TRUE(second.Await(v1::PairingUpdate::kSuccess));
  }
}

TEST(SessionApi, LifecycleMethodsAnswerTheStateTheyLeft) {
  Stack s;
  Watcher w(*s.stub);
  const std::string creds = s.sim.Device(15559990001);
  auto session = s.Create("life", creds).value();
  const std::string id = session.id();
  ASSERT_TRUE(w.WaitFor(id, v1::SESSION_STATE_CONNECTED));

  {  // Probe: presence + ping now.
    v1::ProbeSessionRequest req;
    req.set_id(id);
    v1::ProbeSessionResponse resp;
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::ProbeSession, req, &resp), IsOk());
    EXPECT_TRUE(resp.ok()) << resp.error();
    EXPECT_GT(resp.round_trip().nanos() + resp.round_trip().seconds(), 0);
    req.mutable_timeout()->set_seconds(120);
    EXPECT_EQ(Call(*s.stub, &v1::SessionService::Stub::ProbeSession, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // Reconnect: closes and connects again, counted.
    v1::ReconnectRequest req;
    req.set_id(id);
    v1::ReconnectResponse resp;
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::Reconnect, req, &resp), IsOk());
    EXPECT_EQ(resp.session().state(), v1::SESSION_STATE_CONNECTING);
    ASSERT_TRUE(w.WaitForLatest(id, v1::SESSION_STATE_CONNECTED));
    v1::Session got;
    ASSERT_TRUE(wasentinel::testing::Eventually(
        [&] { return s.Get(id, &got).ok() && got.reconnect_count() >= 1; }));
  }
  {  // UpdateSession: inactive disconnects and refuses Connect; active again allows it.
    v1::UpdateSessionRequest req;
    req.set_id(id);
    req.set_is_active(false);
    req.set_account_name("Renamed");
    v1::UpdateSessionResponse resp;
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::UpdateSession, req, &resp), IsOk());
    EXPECT_EQ(resp.session().state(), v1::SESSION_STATE_DISCONNECTED);
    EXPECT_EQ(resp.session().account_name(), "Renamed");
    EXPECT_FALSE(resp.session().is_active());
    ASSERT_TRUE(w.WaitForLatest(id, v1::SESSION_STATE_DISCONNECTED));
    v1::ConnectRequest c;
    c.set_id(id);
    v1::ConnectResponse cr;
    EXPECT_EQ(Call(*s.stub, &v1::SessionService::Stub::Connect, c, &cr).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
    req.clear_account_name();
    req.set_is_active(true);
    req.set_owner_email("not-an-email");
    EXPECT_EQ(Call(*s.stub, &v1::SessionService::Stub::UpdateSession, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    req.clear_owner_email();
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::UpdateSession, req, &resp), IsOk());
    EXPECT_EQ(resp.session().account_name(), "Renamed");
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::Connect, c, &cr), IsOk());
    ASSERT_TRUE(w.WaitForLatest(id, v1::SESSION_STATE_CONNECTED));
  }
  {  // BulkGetSessions: known ones in order, unknown ones listed.
    auto other = s.Create("life2", "", false).value();
    v1::BulkGetSessionsRequest req;
    req.add_ids(other.id());
    req.add_ids("6f1c1f1e-0000-4000-8000-000000000000");
    req.add_ids(id);
    v1::BulkGetSessionsResponse resp;
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::BulkGetSessions, req, &resp), IsOk());
    ASSERT_EQ(resp.sessions_size(), 2);
    EXPECT_EQ(resp.sessions(0).id(), other.id());
    EXPECT_EQ(resp.sessions(1).id(), id);
    ASSERT_EQ(resp.not_found_size(), 1);
    req.add_ids("not-a-uuid");
    EXPECT_EQ(Call(*s.stub, &v1::SessionService::Stub::BulkGetSessions, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // GetDeepHealth: the database and the live facts of each session.
    v1::GetDeepHealthRequest req;
    v1::GetDeepHealthResponse resp;
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::GetDeepHealth, req, &resp), IsOk());
    EXPECT_TRUE(resp.database_reachable());
    EXPECT_FALSE(resp.replica().empty());
    ASSERT_EQ(resp.sessions_size(), 2);
    bool alive = false;
    for (const auto& h : resp.sessions()) {
      if (h.id() == id) alive = h.socket_alive() && h.has_last_connected_at();
    }
    EXPECT_TRUE(alive);
  }
  {  // Logout: WhatsApp is told, the credentials are forgotten.
    v1::LogoutRequest req;
    req.set_id(id);
    v1::LogoutResponse resp;
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::Logout, req, &resp), IsOk());
    EXPECT_EQ(resp.session().state(), v1::SESSION_STATE_LOGGED_OUT);
    EXPECT_EQ(resp.session().reason(), v1::STATE_REASON_USER);
    EXPECT_FALSE(resp.session().has_credentials());
    EXPECT_TRUE(resp.session().last_error().empty()) << resp.session().last_error();
    auto stats = s.sim.control().Get("/stats");
    ASSERT_THAT(stats, IsOk());
    EXPECT_EQ((*stats)["logouts"], 1);
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::Logout, req, &resp), IsOk())
        << "idempotent";
    v1::ReconnectRequest r;
    r.set_id(id);
    v1::ReconnectResponse rr;
    EXPECT_EQ(Call(*s.stub, &v1::SessionService::Stub::Reconnect, r, &rr).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  {  // ImportCredentials: a new device's creds.json, connected at once.
    v1::ImportCredentialsRequest req;
    req.set_id(id);
    req.set_creds_json("{\"noiseKey\": 1}");
    v1::ImportCredentialsResponse resp;
    EXPECT_EQ(Call(*s.stub, &v1::SessionService::Stub::ImportCredentials, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    req.set_creds_json(s.sim.Device(15559990002));
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::ImportCredentials, req, &resp), IsOk());
    EXPECT_TRUE(resp.session().has_credentials());
    EXPECT_EQ(resp.session().phone_number(), "15559990002");
    ASSERT_TRUE(
        w.WaitFor(id, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_CREDENTIALS_IMPORTED));
    ASSERT_TRUE(w.WaitForLatest(id, v1::SESSION_STATE_CONNECTED));
  }
  {  // DeleteSession: logged out at WhatsApp, the row gone, the event kept.
    v1::DeleteSessionRequest req;
    req.set_id(id);
    v1::DeleteSessionResponse resp;
    ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::DeleteSession, req, &resp), IsOk());
    ASSERT_TRUE(w.WaitFor(id, v1::SESSION_STATE_DELETED, v1::STATE_REASON_DELETED));
    EXPECT_EQ(s.Get(id, nullptr).error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(Call(*s.stub, &v1::SessionService::Stub::DeleteSession, req, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
    auto stats = s.sim.control().Get("/stats");
    ASSERT_THAT(stats, IsOk());
    EXPECT_EQ((*stats)["logouts"], 2);
  }
}

TEST(SessionApi, ApiKeysAndScopes) {
  const std::string read = "reader-key-0123456789", admin = "admin-key-0123456789";
  Stack s([&](Options& o) { o.runtime.api_keys = "dash:read:" + read + ",ops:admin:" + admin; });
  v1::CreateSessionRequest create;
  create.set_tenant_id("keys");
  v1::CreateSessionResponse created;
  auto call = [&](const std::string& key, bool bearer = false) {
    return Call(*s.stub, &v1::SessionService::Stub::CreateSession, create, &created, key, bearer)
        .error_code();
  };
  EXPECT_EQ(call(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("wrong-key-0123456789"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call(read), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call(admin, /*bearer=*/true), grpc::StatusCode::OK);
  v1::ListSessionsRequest list;
  v1::ListSessionsResponse listed;
  EXPECT_THAT(Call(*s.stub, &v1::SessionService::Stub::ListSessions, list, &listed, read), IsOk());
  EXPECT_EQ(listed.sessions_size(), 1);
  EXPECT_THAT(Call(*s.stub, &v1::SessionService::Stub::ListSessions, list, &listed, admin), IsOk());
  v1::GetHealthResponse health;
  EXPECT_THAT(Call(*s.stub, &v1::SessionService::Stub::GetHealth, v1::GetHealthRequest(), &health),
              IsOk())
      << "light health needs no key";
  // GetCaller: what a key is, for clients that show what it may not do as disabled.
  v1::GetCallerResponse who;
  EXPECT_THAT(
      Call(*s.stub, &v1::SessionService::Stub::GetCaller, v1::GetCallerRequest(), &who, read),
      IsOk());
  EXPECT_EQ(who.key_name(), "dash");
  EXPECT_EQ(who.scope(), "read");
  EXPECT_EQ(who.tenant_id(), "");
  EXPECT_TRUE(who.authentication_enabled());
  EXPECT_EQ(Call(*s.stub, &v1::SessionService::Stub::GetCaller, v1::GetCallerRequest(), &who,
                 "wrong-key-0123456789")
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST(SessionApi, RotateSealingKeyReSealsEveryCredential) {
  constexpr char kNew[] = "k2:2021222324252627282930313233343536373839404142434445464748494a4b";
  Stack s;
  auto a = s.Create("rot-a", s.sim.Device(15559990101)).value();
  auto b = s.Create("rot-b", s.sim.Device(15559990102)).value();
  s.Stop();
  s.Start([&](Options& o) { o.auth_state_keys = std::string(kNew) + "," + kKey; });
  v1::RotateSealingKeyResponse rotated;
  ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::RotateSealingKey,
                   v1::RotateSealingKeyRequest(), &rotated),
              IsOk());
  EXPECT_EQ(rotated.key_id(), "k2");
  EXPECT_EQ(rotated.resealed(), 2);
  ASSERT_THAT(Call(*s.stub, &v1::SessionService::Stub::RotateSealingKey,
                   v1::RotateSealingKeyRequest(), &rotated),
              IsOk());
  EXPECT_EQ(rotated.resealed(), 0);
  // The old key can go now: the service starts with the new one alone and logs in.
  s.Stop();
  s.Start([&](Options& o) { o.auth_state_keys = kNew; });
  Watcher w(*s.stub);
  ASSERT_TRUE(w.WaitFor(a.id(), v1::SESSION_STATE_CONNECTED));
  ASSERT_TRUE(w.WaitFor(b.id(), v1::SESSION_STATE_CONNECTED));
}

}  // namespace
}  // namespace wasentinel::session
