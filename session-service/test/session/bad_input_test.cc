// Hostile and careless input to every SessionService method, end to end against a real
// PostgreSQL and wa-sim (README "Security"): each class of bad value (empty, huge, invalid
// UTF-8, NUL, control characters, CRLF, out of range) gets a clear status that names the field
// and quotes at most a short prefix of the value, and the service stays healthy. Then tenant
// isolation: a tenant-scoped key sees and changes its own tenant's sessions only, and another
// tenant's session answers exactly as a missing one.
#include <functional>

#include "session/stack.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::session {
namespace {

const std::string kHuge(1 << 20, 'x');
const std::string kInjection =
    "o@x.example>\r\nDATA\r\nFrom: IT <it@x.example>\r\nSubject: pay\r\n.\r\nRSET\r\nMAIL "
    "FROM:<a@x.example>\r\nRCPT TO:<o@x.example";

struct Case {
  std::string name;
  std::function<grpc::Status(v1::SessionService::Stub&, grpc::ClientContext*)> call;
  grpc::StatusCode want;
};

template <class Req>
Req With(std::function<void(Req&)> fill) {
  Req r;
  fill(r);
  return r;
}

grpc::Status Create(v1::SessionService::Stub& stub, grpc::ClientContext* ctx,
                    std::function<void(v1::CreateSessionRequest&)> fill) {
  v1::CreateSessionRequest req;
  req.set_tenant_id("acme");
  fill(req);
  v1::CreateSessionResponse resp;
  return stub.CreateSession(ctx, req, &resp);
}

std::vector<Case> Cases() {
  using C = grpc::StatusCode;
  const auto invalid = C::INVALID_ARGUMENT;
  std::vector<Case> cases;
  auto create = [&](std::string name, std::function<void(v1::CreateSessionRequest&)> fill) {
    cases.push_back({"CreateSession " + name,
                     [fill](auto& stub, auto* ctx) { return Create(stub, ctx, fill); }, invalid});
  };
  create("empty tenant", [](auto& r) { r.set_tenant_id(""); });
  create("tenant with spaces", [](auto& r) { r.set_tenant_id(" acme "); });
  create("tenant with a control character", [](auto& r) { r.set_tenant_id("ac\x01me"); });
  create("huge tenant", [](auto& r) { r.set_tenant_id(std::string(100 * 1024, 't')); });
  create("huge account name", [](auto& r) { r.set_account_name(kHuge); });
  create("account name with NUL", [](auto& r) { r.set_account_name(std::string("a\0b", 3)); });
  create("account name invalid UTF-8", [](auto& r) { r.set_account_name("Shop \xff\xfe"); });
  create("session name with CRLF", [](auto& r) { r.set_session_name("a\r\nb"); });
  create("owner e-mail SMTP injection", [](auto& r) { r.set_owner_email(kInjection); });
  create("owner e-mail in angle brackets", [](auto& r) { r.set_owner_email("<o@x.example>"); });
  create("owner e-mail without a domain", [](auto& r) { r.set_owner_email("o@"); });
  create("creds over 1 MiB", [](auto& r) { r.set_creds_json(kHuge + "{}"); });

  auto get = [&](std::string name, std::string id, C want) {
    cases.push_back({"GetSession " + name,
                     [id](auto& stub, auto* ctx) {
                       v1::GetSessionRequest req;
                       req.set_id(id);
                       v1::GetSessionResponse resp;
                       return stub.GetSession(ctx, req, &resp);
                     },
                     want});
  };
  get("empty id", "", invalid);
  get("100 KB id", std::string(100 * 1024, 'i'), invalid);
  get("id with NUL", std::string("ab\0cd", 5), invalid);
  get("id with CRLF", "ab\r\ncd", invalid);
  get("unknown id", "00000000-0000-0000-0000-000000000000", C::NOT_FOUND);

  auto list = [&](std::string name, std::function<void(v1::ListSessionsRequest&)> fill) {
    cases.push_back({"ListSessions " + name,
                     [fill](auto& stub, auto* ctx) {
                       auto req = With<v1::ListSessionsRequest>(fill);
                       v1::ListSessionsResponse resp;
                       return stub.ListSessions(ctx, req, &resp);
                     },
                     invalid});
  };
  list("negative page size", [](auto& r) { r.set_page_size(-1); });
  list("page size 10000", [](auto& r) { r.set_page_size(10000); });
  list("tenant with spaces", [](auto& r) { r.set_tenant_id("a b"); });
  list("10 KB page token", [](auto& r) { r.set_page_token(std::string(10 * 1024, 'p')); });
  list("unknown state", [](auto& r) { r.add_states(static_cast<v1::SessionState>(99)); });
  list("many states", [](auto& r) {
    for (int i = 0; i < 1000; ++i) r.add_states(v1::SESSION_STATE_CONNECTED);
  });

  cases.push_back({"BulkGetSessions 501 ids",
                   [](auto& stub, auto* ctx) {
                     v1::BulkGetSessionsRequest req;
                     for (int i = 0; i < 501; ++i) req.add_ids("x");
                     v1::BulkGetSessionsResponse resp;
                     return stub.BulkGetSessions(ctx, req, &resp);
                   },
                   invalid});
  cases.push_back({"BulkGetSessions an id with a control character",
                   [](auto& stub, auto* ctx) {
                     v1::BulkGetSessionsRequest req;
                     req.add_ids("a\x1b[2J");
                     v1::BulkGetSessionsResponse resp;
                     return stub.BulkGetSessions(ctx, req, &resp);
                   },
                   invalid});
  auto update = [&](std::string name, std::function<void(v1::UpdateSessionRequest&)> fill, C want) {
    cases.push_back({"UpdateSession " + name,
                     [fill](auto& stub, auto* ctx) {
                       auto req = With<v1::UpdateSessionRequest>(fill);
                       v1::UpdateSessionResponse resp;
                       return stub.UpdateSession(ctx, req, &resp);
                     },
                     want});
  };
  update(
      "owner e-mail SMTP injection",
      [](auto& r) {
        r.set_id("00000000-0000-0000-0000-000000000000");
        r.set_owner_email(kInjection);
      },
      invalid);
  update(
      "huge account name",
      [](auto& r) {
        r.set_id("00000000-0000-0000-0000-000000000000");
        r.set_account_name(kHuge);
      },
      invalid);
  update(
      "unknown id",
      [](auto& r) {
        r.set_id("00000000-0000-0000-0000-000000000000");
        r.set_account_name("ok");
      },
      C::NOT_FOUND);
  auto probe = [&](std::string name, int64_t seconds, int32_t nanos) {
    cases.push_back({"ProbeSession " + name,
                     [=](auto& stub, auto* ctx) {
                       v1::ProbeSessionRequest req;
                       req.set_id("00000000-0000-0000-0000-000000000000");
                       req.mutable_timeout()->set_seconds(seconds);
                       req.mutable_timeout()->set_nanos(nanos);
                       v1::ProbeSessionResponse resp;
                       return stub.ProbeSession(ctx, req, &resp);
                     },
                     invalid});
  };
  probe("timeout of 2^62 s", int64_t{1} << 62, 0);
  probe("negative timeout", -5, 0);
  probe("timeout with bad nanos", 1, 2'000'000'000);
  for (const char* method : {"Connect", "Disconnect", "Reconnect", "Logout", "DeleteSession"}) {
    cases.push_back({std::string(method) + " 100 KB id",
                     [m = std::string(method)](auto& stub, auto* ctx) {
                       const std::string id(100 * 1024, 'i');
                       if (m == "Connect") {
                         v1::ConnectRequest q;
                         q.set_id(id);
                         v1::ConnectResponse r;
                         return stub.Connect(ctx, q, &r);
                       }
                       if (m == "Disconnect") {
                         v1::DisconnectRequest q;
                         q.set_id(id);
                         v1::DisconnectResponse r;
                         return stub.Disconnect(ctx, q, &r);
                       }
                       if (m == "Reconnect") {
                         v1::ReconnectRequest q;
                         q.set_id(id);
                         v1::ReconnectResponse r;
                         return stub.Reconnect(ctx, q, &r);
                       }
                       if (m == "Logout") {
                         v1::LogoutRequest q;
                         q.set_id(id);
                         v1::LogoutResponse r;
                         return stub.Logout(ctx, q, &r);
                       }
                       v1::DeleteSessionRequest q;
                       q.set_id(id);
                       v1::DeleteSessionResponse r;
                       return stub.DeleteSession(ctx, q, &r);
                     },
                     invalid});
  }
  cases.push_back({"ImportCredentials empty creds",
                   [](auto& stub, auto* ctx) {
                     v1::ImportCredentialsRequest req;
                     req.set_id("00000000-0000-0000-0000-000000000000");
                     v1::ImportCredentialsResponse resp;
                     return stub.ImportCredentials(ctx, req, &resp);
                   },
                   invalid});
  cases.push_back({"WatchSessionEvents tenant with CRLF",
                   [](auto& stub, auto* ctx) {
                     v1::WatchSessionEventsRequest req;
                     req.set_tenant_id("acme\r\n");
                     auto reader = stub.WatchSessionEvents(ctx, req);
                     v1::SessionEvent e;
                     while (reader->Read(&e)) {
                     }
                     return reader->Finish();
                   },
                   invalid});
  cases.push_back({"StartPairing huge account name",
                   [](auto& stub, auto* ctx) {
                     v1::StartPairingRequest req;
                     req.set_tenant_id("acme");
                     req.set_account_name(kHuge);
                     auto reader = stub.StartPairing(ctx, req);
                     v1::PairingUpdate u;
                     while (reader->Read(&u)) {
                     }
                     return reader->Finish();
                   },
                   invalid});
  cases.push_back({"StartPairing owner e-mail SMTP injection",
                   [](auto& stub, auto* ctx) {
                     v1::StartPairingRequest req;
                     req.set_tenant_id("acme");
                     req.set_owner_email(kInjection);
                     auto reader = stub.StartPairing(ctx, req);
                     v1::PairingUpdate u;
                     while (reader->Read(&u)) {
                     }
                     return reader->Finish();
                   },
                   invalid});
  cases.push_back({"GetDeepHealth tenant with NUL",
                   [](auto& stub, auto* ctx) {
                     v1::GetDeepHealthRequest req;
                     req.set_tenant_id(std::string("ac\0me", 5));
                     v1::GetDeepHealthResponse resp;
                     return stub.GetDeepHealth(ctx, req, &resp);
                   },
                   invalid});
  return cases;
}

TEST(BadInput, EveryMethodRefusesEveryClassWithAClearShortError) {
  Stack s;
  const auto cases = Cases();
  for (const auto& c : cases) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const grpc::Status st = c.call(*s.stub, &ctx);
    EXPECT_EQ(st.error_code(), c.want) << c.name << ": " << st.error_message();
    EXPECT_FALSE(st.error_message().empty()) << c.name;
    EXPECT_LT(st.error_message().size(), 400u) << c.name << ": the error quotes the value whole";
    EXPECT_EQ(st.error_message().find('\r'), std::string::npos) << c.name;
  }
  // Still healthy, and a good request still works.
  grpc::ClientContext ctx;
  v1::GetHealthResponse health;
  ASSERT_TRUE(s.stub->GetHealth(&ctx, v1::GetHealthRequest(), &health).ok());
  EXPECT_TRUE(health.database_reachable());
  auto created = s.Create("acme", "", /*auto_connect=*/false);
  ASSERT_THAT(created, IsOk()) << created.status();
  std::cout << cases.size() << " bad requests, each refused as expected\n";
}

TEST(BadInput, AnUpdateCannotPlantAnSmtpInjection) {
  Stack s;
  auto created = s.Create("acme", "", /*auto_connect=*/false);
  ASSERT_THAT(created, IsOk()) << created.status();
  grpc::ClientContext ctx;
  v1::UpdateSessionRequest req;
  req.set_id(created->id());
  req.set_owner_email(kInjection);
  v1::UpdateSessionResponse resp;
  EXPECT_EQ(s.stub->UpdateSession(&ctx, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::Session now;
  ASSERT_THAT(s.Get(created->id(), &now), IsOk());
  EXPECT_EQ(now.owner_email(), "ops@example.com") << "the stored address is unchanged";
}

// Calls a unary method with `key`.
template <class Req, class Resp, class Method>
grpc::Status As(v1::SessionService::Stub& stub, const std::string& key, Method method,
                const Req& req, Resp* resp) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-api-key", key);
  return (stub.*method)(&ctx, req, resp);
}

TEST(TenantKeys, EachTenantSeesAndChangesOnlyItsOwn) {
  const std::string op = "operator-key-0123456789", acme_admin = "acme-admin-key-0123456789",
                    acme_read = "acme-read-key-0123456789",
                    globex_op = "globex-operate-key-0123456789";
  Stack s([&](Options& o) {
    o.runtime.api_keys = "ops:admin:" + op + ",acme-admin:admin:acme:" + acme_admin +
                         ",acme-read:read:acme:" + acme_read +
                         ",globex-op:operate:globex:" + globex_op;
  });
  using Stub = v1::SessionService::Stub;
  auto create = [&](const std::string& key, const std::string& tenant, v1::Session* out) {
    v1::CreateSessionRequest req;
    req.set_tenant_id(tenant);
    req.set_session_name("s" + std::to_string(absl::ToUnixNanos(absl::Now())));
    req.set_auto_connect(false);
    v1::CreateSessionResponse resp;
    grpc::Status st = As(*s.stub, key, &Stub::CreateSession, req, &resp);
    if (out) *out = resp.session();
    return st;
  };
  v1::Session acme, globex, acme2;
  ASSERT_THAT(create(op, "acme", &acme), IsOk());
  ASSERT_THAT(create(op, "globex", &globex), IsOk());
  // A tenant admin creates in its own tenant, by default or by name, never in another.
  ASSERT_THAT(create(acme_admin, "", &acme2), IsOk());
  EXPECT_EQ(acme2.tenant_id(), "acme");
  EXPECT_EQ(create(acme_admin, "globex", nullptr).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Lists and deep health are narrowed to the key's tenant; asking for another is refused.
  v1::ListSessionsResponse listed;
  ASSERT_THAT(As(*s.stub, acme_read, &Stub::ListSessions, v1::ListSessionsRequest(), &listed),
              IsOk());
  EXPECT_EQ(listed.sessions_size(), 2);
  for (const auto& x : listed.sessions()) EXPECT_EQ(x.tenant_id(), "acme");
  v1::ListSessionsRequest other;
  other.set_tenant_id("globex");
  EXPECT_EQ(As(*s.stub, acme_read, &Stub::ListSessions, other, &listed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::GetDeepHealthResponse deep;
  ASSERT_THAT(As(*s.stub, acme_read, &Stub::GetDeepHealth, v1::GetDeepHealthRequest(), &deep),
              IsOk());
  EXPECT_EQ(deep.sessions_size(), 2);
  ASSERT_THAT(As(*s.stub, op, &Stub::ListSessions, v1::ListSessionsRequest(), &listed), IsOk());
  EXPECT_EQ(listed.sessions_size(), 3) << "an operator's key sees every tenant";

  // Another tenant's session answers as a missing one: same code, same words.
  v1::GetSessionRequest get;
  v1::GetSessionResponse got;
  get.set_id(globex.id());
  const grpc::Status theirs = As(*s.stub, acme_read, &Stub::GetSession, get, &got);
  get.set_id("00000000-0000-0000-0000-000000000000");
  const grpc::Status missing = As(*s.stub, acme_read, &Stub::GetSession, get, &got);
  EXPECT_EQ(theirs.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto without_id = [](std::string m, const std::string& id) {
    return m.replace(m.find(id), id.size(), "ID");
  };
  EXPECT_EQ(without_id(theirs.error_message(), globex.id()),
            without_id(missing.error_message(), "00000000-0000-0000-0000-000000000000"));
  get.set_id(acme.id());
  EXPECT_THAT(As(*s.stub, acme_read, &Stub::GetSession, get, &got), IsOk());

  // Acting on another tenant's session is refused, and nothing changes.
  v1::DisconnectRequest disconnect;
  disconnect.set_id(acme.id());
  v1::DisconnectResponse disconnected;
  EXPECT_EQ(As(*s.stub, globex_op, &Stub::Disconnect, disconnect, &disconnected).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::UpdateSessionRequest update;
  update.set_id(acme.id());
  update.set_owner_email("attacker@globex.example");
  v1::UpdateSessionResponse updated;
  EXPECT_EQ(As(*s.stub, globex_op, &Stub::UpdateSession, update, &updated).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  update.set_id(globex.id());
  EXPECT_THAT(As(*s.stub, globex_op, &Stub::UpdateSession, update, &updated), IsOk())
      << "its own tenant's session it may change";

  // Other tenants' ids in a bulk read are reported as not found.
  v1::BulkGetSessionsRequest bulk;
  bulk.add_ids(acme.id());
  bulk.add_ids(globex.id());
  v1::BulkGetSessionsResponse bulked;
  ASSERT_THAT(As(*s.stub, acme_read, &Stub::BulkGetSessions, bulk, &bulked), IsOk());
  ASSERT_EQ(bulked.sessions_size(), 1);
  EXPECT_EQ(bulked.sessions(0).id(), acme.id());
  ASSERT_EQ(bulked.not_found_size(), 1);
  EXPECT_EQ(bulked.not_found(0), globex.id());

  // Creating through StartPairing needs what CreateSession needs; key rotation every tenant.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-api-key", globex_op);
    v1::StartPairingRequest pair;
    pair.set_tenant_id("globex");
    auto reader = s.stub->StartPairing(&ctx, pair);
    v1::PairingUpdate u;
    while (reader->Read(&u)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  v1::RotateSealingKeyResponse rotated;
  EXPECT_EQ(
      As(*s.stub, acme_admin, &Stub::RotateSealingKey, v1::RotateSealingKeyRequest(), &rotated)
          .error_code(),
      grpc::StatusCode::PERMISSION_DENIED);

  // A watch of another tenant is refused.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-api-key", acme_read);
    v1::WatchSessionEventsRequest watch;
    watch.set_tenant_id("globex");
    auto reader = s.stub->WatchSessionEvents(&ctx, watch);
    v1::SessionEvent e;
    while (reader->Read(&e)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
}

TEST(Watchers, OneKeyHoldsAtMostItsLimitOfOpenWatches) {
  const std::string reader_key = "reader-key-0123456789", other_key = "other-key-0123456789";
  Stack s([&](Options& o) {
    o.runtime.api_keys = "dash:read:" + reader_key + ",other:read:" + other_key;
    o.watch_limits.per_key = 2;
  });
  auto open = [&](const std::string& key) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("x-api-key", key);
    auto reader = s.stub->WatchSessionEvents(ctx.get(), v1::WatchSessionEventsRequest());
    return std::make_pair(std::move(ctx), std::move(reader));
  };
  // An accepted watch's headers name the replica serving it; a refusal has none.
  auto accepted = [](auto& w) {
    w.second->WaitForInitialMetadata();
    return w.first->GetServerInitialMetadata().count("x-watch-replica") > 0;
  };
  auto a = open(reader_key), b = open(reader_key);
  ASSERT_TRUE(accepted(a));
  ASSERT_TRUE(accepted(b));
  auto c = open(reader_key);
  v1::SessionEvent e;
  EXPECT_FALSE(c.second->Read(&e));
  const grpc::Status refused = c.second->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  auto d = open(other_key);
  EXPECT_TRUE(accepted(d)) << "another key has limits of its own";
  // One ends: its place is free again.
  a.first->TryCancel();
  (void)a.second->Finish();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool reopened = false;
  while (!reopened && absl::Now() < deadline) {
    auto again = open(reader_key);
    if (accepted(again)) {
      reopened = true;
      again.first->TryCancel();
    }
    (void)again.second->Finish();
  }
  EXPECT_TRUE(reopened);
  for (auto* w : {&b, &d}) {
    w->first->TryCancel();
    (void)w->second->Finish();
  }
}

}  // namespace
}  // namespace wasentinel::session
