// AlertService over gRPC on loopback with a real PostgreSQL: raise, fold, resolve, get, list,
// and the errors (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND); every method
// with bad input of each class; tenant-scoped keys that see their own tenant's alerts,
// endpoints, silences and deliveries only.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <cmath>
#include <functional>
#include <set>

#include "alert_db.h"
#include "alert_service.h"
#include "wasentinel/common/grpc_server.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::alert {
namespace {

constexpr char kReader[] = "reader-key-0123456789";
constexpr char kOperator[] = "operator-key-0123456789";
constexpr char kAdmin[] = "admin-key-0123456789abc";
constexpr char kAcmeOperator[] = "acme-operate-key-0123456789";
constexpr char kAcmeAdmin[] = "acme-admin-key-0123456789";
constexpr char kGlobexAdmin[] = "globex-admin-key-0123456789";

struct Api : AlertDb {
  wasentinel::testing::FakeClock clock;
  ApiKeys keys =
      ApiKeys::FromConfig(absl::StrCat("r:read:", kReader, ",o:operate:", kOperator,
                                       ",a:admin:", kAdmin, ",acme-o:operate:acme:", kAcmeOperator,
                                       ",acme-a:admin:acme:", kAcmeAdmin,
                                       ",globex-a:admin:globex:", kGlobexAdmin))
          .value();
  Sealer sealer = Sealer::FromConfig(std::string(64, 'b')).value();
  AlertServiceImpl service{store, keys, clock, sealer,
                           AlertServiceOptions{{"oncall@ops.example"}, /*allow_private=*/false}};
  prometheus::Registry registry;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::AlertService::Stub> stub;
  Api() {
    // As the service starts it (common/grpc_server.h): unparsable requests are INVALID_ARGUMENT.
    auto started =
        StartGrpcServer("127.0.0.1:0", grpc::InsecureServerCredentials(), {&service}, registry)
            .value();
    server = std::move(started.server);
    stub = v1::AlertService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(started.port), grpc::InsecureChannelCredentials()));
  }
  ~Api() { server->Shutdown(std::chrono::system_clock::now()); }

  template <class Req, class Resp>
  grpc::Status Call(grpc::Status (v1::AlertService::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                   Resp*),
                    const Req& req, Resp* resp, const char* key = kOperator) {
    grpc::ClientContext ctx;
    if (key) ctx.AddMetadata("x-api-key", key);
    return ((*stub).*method)(&ctx, req, resp);
  }
};

v1::RaiseAlertRequest Raise(v1::Severity severity) {
  v1::RaiseAlertRequest r;
  r.set_dedup_key("session.manual_intervention/s9");
  r.set_event_type("session.manual_intervention");
  r.set_severity(severity);
  r.set_summary("Shop (155******67) ended as REPLACED");
  r.mutable_session()->set_session_id("s9");
  r.mutable_session()->set_owner_email("owner@acme.example");
  return r;
}

TEST(AlertApi, RaiseFoldResolveGetList) {
  Api api;
  v1::RaiseAlertResponse raised;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::RaiseAlert, Raise(v1::SEVERITY_CRITICAL), &raised),
              IsOk());
  EXPECT_TRUE(raised.created());
  EXPECT_EQ(raised.alert().deliveries_size(), 2) << "owner and on-call";
  v1::RaiseAlertResponse again;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::RaiseAlert, Raise(v1::SEVERITY_CRITICAL), &again),
              IsOk());
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.alert().raise_count(), 2);

  v1::ResolveAlertRequest resolve;
  resolve.set_dedup_key(raised.alert().dedup_key());
  resolve.set_note("a person linked the device again");
  v1::ResolveAlertResponse resolved;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::ResolveAlert, resolve, &resolved), IsOk());
  EXPECT_EQ(resolved.alert().status(), v1::Alert::STATUS_RESOLVED);
  EXPECT_EQ(resolved.alert().deliveries_size(), 4);

  v1::GetAlertRequest get;
  get.set_id(raised.alert().id());
  v1::GetAlertResponse got;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::GetAlert, get, &got, kReader), IsOk());
  EXPECT_EQ(got.alert().status(), v1::Alert::STATUS_RESOLVED);
  v1::ListAlertsRequest list;
  list.add_statuses(v1::Alert::STATUS_RESOLVED);
  v1::ListAlertsResponse listed;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::ListAlerts, list, &listed, kReader), IsOk());
  ASSERT_EQ(listed.alerts_size(), 1);
  EXPECT_EQ(listed.alerts(0).id(), raised.alert().id());
}

TEST(AlertApi, ErrorsAreClear) {
  Api api;
  v1::RaiseAlertResponse raised;
  EXPECT_EQ(
      api.Call(&v1::AlertService::Stub::RaiseAlert, Raise(v1::SEVERITY_WARNING), &raised, nullptr)
          .error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      api.Call(&v1::AlertService::Stub::RaiseAlert, Raise(v1::SEVERITY_WARNING), &raised, kReader)
          .error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(api.Call(&v1::AlertService::Stub::RaiseAlert, Raise(v1::SEVERITY_UNSPECIFIED), &raised)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::ResolveAlertRequest resolve;
  resolve.set_dedup_key("never/raised");
  v1::ResolveAlertResponse resolved;
  EXPECT_EQ(api.Call(&v1::AlertService::Stub::ResolveAlert, resolve, &resolved).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::GetAlertRequest get;
  get.set_id("not-a-uuid");
  v1::GetAlertResponse got;
  EXPECT_EQ(api.Call(&v1::AlertService::Stub::GetAlert, get, &got).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::ListAlertsRequest list;
  list.set_page_size(501);
  v1::ListAlertsResponse listed;
  EXPECT_EQ(api.Call(&v1::AlertService::Stub::ListAlerts, list, &listed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  list.set_page_size(0);
  list.add_statuses(static_cast<v1::Alert::Status>(42));
  EXPECT_EQ(api.Call(&v1::AlertService::Stub::ListAlerts, list, &listed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(AlertApi, WebhookEndpointsSilencesAndDeliveries) {
  Api api;
  v1::CreateWebhookEndpointRequest create;
  create.set_url("http://127.0.0.1:8080/hook");
  v1::CreateWebhookEndpointResponse created;
  EXPECT_EQ(api.Call(&v1::AlertService::Stub::CreateWebhookEndpoint, create, &created, kAdmin)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT)
      << "loopback is refused unless allowed (SSRF)";
  create.set_url("https://hooks.example.com/wa");
  create.add_event_types("session.manual_intervention");
  EXPECT_EQ(api.Call(&v1::AlertService::Stub::CreateWebhookEndpoint, create, &created, kOperator)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::CreateWebhookEndpoint, create, &created, kAdmin),
              IsOk());
  EXPECT_EQ(created.secret().rfind("whsec_", 0), 0u);
  const std::string endpoint = created.endpoint().id();

  v1::RaiseAlertResponse raised;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::RaiseAlert, Raise(v1::SEVERITY_CRITICAL), &raised),
              IsOk());
  ASSERT_EQ(raised.alert().deliveries_size(), 3);  // owner, on-call, the endpoint
  EXPECT_EQ(raised.alert().deliveries(2).target(), endpoint);

  v1::ListDeliveriesRequest list;
  list.set_alert_id(raised.alert().id());
  list.set_channel(v1::Delivery::CHANNEL_WEBHOOK);
  v1::ListDeliveriesResponse listed;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::ListDeliveries, list, &listed, kReader), IsOk());
  ASSERT_EQ(listed.deliveries_size(), 1);
  v1::RedeliverDeliveryRequest redeliver;
  redeliver.set_id(listed.deliveries(0).id());
  v1::RedeliverDeliveryResponse redelivered;
  EXPECT_EQ(
      api.Call(&v1::AlertService::Stub::RedeliverDelivery, redeliver, &redelivered).error_code(),
      grpc::StatusCode::FAILED_PRECONDITION)
      << "it is still pending";
  v1::GetDeliveryStatsResponse stats;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::GetDeliveryStats, v1::GetDeliveryStatsRequest(),
                       &stats, kReader),
              IsOk());
  EXPECT_EQ(stats.outbox_depth(), 3);

  v1::RotateWebhookSecretRequest rotate;
  rotate.set_id(endpoint);
  v1::RotateWebhookSecretResponse rotated;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::RotateWebhookSecret, rotate, &rotated, kAdmin),
              IsOk());
  EXPECT_NE(rotated.secret(), created.secret());
  EXPECT_EQ(FromProto(rotated.previous_valid_until()), api.clock.Now() + absl::Hours(24));

  v1::UpdateWebhookEndpointRequest update;
  update.set_id(endpoint);
  update.set_enabled(false);
  v1::UpdateWebhookEndpointResponse updated;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::UpdateWebhookEndpoint, update, &updated, kAdmin),
              IsOk());
  EXPECT_FALSE(updated.endpoint().enabled());
  EXPECT_EQ(updated.endpoint().event_types_size(), 1) << "untouched";

  // A silence for the tenant: the next alert is recorded, not delivered.
  v1::CreateSilenceRequest silence;
  v1::CreateSilenceResponse silenced;
  EXPECT_EQ(
      api.Call(&v1::AlertService::Stub::CreateSilence, silence, &silenced, kAdmin).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  silence.set_tenant_id("acme");
  *silence.mutable_until() = ToProto(api.clock.Now() + absl::Hours(1));
  silence.set_comment("maintenance");
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::CreateSilence, silence, &silenced, kAdmin), IsOk());
  auto quiet = Raise(v1::SEVERITY_WARNING);
  quiet.set_dedup_key("session.offline/s9");
  quiet.mutable_session()->set_tenant_id("acme");
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::RaiseAlert, quiet, &raised), IsOk());
  EXPECT_EQ(raised.alert().status(), v1::Alert::STATUS_SUPPRESSED);
  v1::ListSilencesResponse silences;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::ListSilences, v1::ListSilencesRequest(), &silences,
                       kReader),
              IsOk());
  ASSERT_EQ(silences.silences_size(), 1);
  v1::DeleteSilenceRequest unsilence;
  unsilence.set_id(silenced.silence().id());
  v1::DeleteSilenceResponse unsilenced;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::DeleteSilence, unsilence, &unsilenced, kAdmin),
              IsOk());

  v1::DeleteWebhookEndpointRequest del;
  del.set_id(endpoint);
  v1::DeleteWebhookEndpointResponse deleted;
  ASSERT_THAT(api.Call(&v1::AlertService::Stub::DeleteWebhookEndpoint, del, &deleted, kAdmin),
              IsOk());
  EXPECT_EQ(
      api.Call(&v1::AlertService::Stub::DeleteWebhookEndpoint, del, &deleted, kAdmin).error_code(),
      grpc::StatusCode::NOT_FOUND);
}

const std::string kHuge(1 << 20, 'x');
const std::string kInjection = "o@x.example>\r\nDATA\r\nSubject: pay\r\n.\r\nRSET";

TEST(AlertApi, EveryMethodRefusesBadInputWithAShortClearError) {
  Api api;
  using S = v1::AlertService::Stub;
  struct Case {
    std::string name;
    std::function<grpc::Status()> call;
  };
  std::vector<Case> cases;
  auto raise = [&](std::string name, std::function<void(v1::RaiseAlertRequest&)> edit) {
    cases.push_back({"RaiseAlert " + name, [&api, edit] {
                       auto r = Raise(v1::SEVERITY_WARNING);
                       edit(r);
                       v1::RaiseAlertResponse resp;
                       return api.Call(&S::RaiseAlert, r, &resp);
                     }});
  };
  raise("empty dedup key", [](auto& r) { r.set_dedup_key(""); });
  raise("huge dedup key", [](auto& r) { r.set_dedup_key(kHuge); });
  raise("dedup key with NUL", [](auto& r) { r.set_dedup_key(std::string("a\0b", 3)); });
  raise("1 MiB event type", [](auto& r) { r.set_event_type(kHuge); });
  raise("event type that breaks a metric label", [](auto& r) { r.set_event_type("a\"} 1\nx{"); });
  raise("1 MiB summary", [](auto& r) { r.set_summary(kHuge); });
  raise("summary with an escape sequence", [](auto& r) { r.set_summary("\x1b[2Jboo"); });
  raise("summary invalid UTF-8", [](auto& r) { r.set_summary("\xc0\xaf"); });
  raise("owner e-mail SMTP injection",
        [](auto& r) { r.mutable_session()->set_owner_email(kInjection); });
  raise("tenant with spaces", [](auto& r) { r.mutable_session()->set_tenant_id("a b"); });
  raise("1 MiB account name", [](auto& r) { r.mutable_session()->set_account_name(kHuge); });
  raise("offline since year 10000",
        [](auto& r) { r.mutable_session()->mutable_offline_since()->set_seconds(253402300800); });
  raise("unknown severity", [](auto& r) { r.set_severity(static_cast<v1::Severity>(77)); });
  cases.push_back({"ResolveAlert 1 MiB note", [&] {
                     v1::ResolveAlertRequest r;
                     r.set_dedup_key("k");
                     r.set_note(kHuge);
                     v1::ResolveAlertResponse resp;
                     return api.Call(&S::ResolveAlert, r, &resp);
                   }});
  cases.push_back({"GetAlert 100 KB id", [&] {
                     v1::GetAlertRequest r;
                     r.set_id(std::string(100 * 1024, 'i'));
                     v1::GetAlertResponse resp;
                     return api.Call(&S::GetAlert, r, &resp);
                   }});
  cases.push_back({"ListAlerts event type with CRLF", [&] {
                     v1::ListAlertsRequest r;
                     r.set_event_type("a\r\nb");
                     v1::ListAlertsResponse resp;
                     return api.Call(&S::ListAlerts, r, &resp);
                   }});
  auto endpoint = [&](std::string name, std::function<void(v1::CreateWebhookEndpointRequest&)> e) {
    cases.push_back({"CreateWebhookEndpoint " + name, [&api, e] {
                       v1::CreateWebhookEndpointRequest r;
                       r.set_url("https://hooks.example.com/wa");
                       e(r);
                       v1::CreateWebhookEndpointResponse resp;
                       return api.Call(&S::CreateWebhookEndpoint, r, &resp, kAdmin);
                     }});
  };
  endpoint("NaN rate", [](auto& r) { r.set_rate_limit_per_second(std::nan("")); });
  endpoint("infinite rate", [](auto& r) { r.set_rate_limit_per_second(INFINITY); });
  endpoint("100 000 event types", [](auto& r) {
    for (int i = 0; i < 100000; ++i) r.add_event_types("t" + std::to_string(i));
  });
  endpoint("1 MiB event type", [](auto& r) { r.add_event_types(kHuge); });
  endpoint("2 MB URL", [](auto& r) { r.set_url("https://hooks.example.com/" + kHuge + kHuge); });
  endpoint("1 MiB description", [](auto& r) { r.set_description(kHuge); });
  for (const char* url :
       {"https://[::127.0.0.1]/h", "https://[64:ff9b::7f00:1]/h", "https://[2002:7f00:1::]/h",
        "https://198.18.0.1/h", "https://192.0.0.1/h", "https:///nohost", "https://localhost./h",
        "https://x.localhost/h", "https://2130706433/h"}) {
    endpoint(std::string("SSRF ") + url, [url](auto& r) { r.set_url(url); });
  }
  cases.push_back({"RotateWebhookSecret grace of 2^62 s", [&] {
                     v1::RotateWebhookSecretRequest r;
                     r.set_id("00000000-0000-0000-0000-000000000000");
                     r.mutable_grace()->set_seconds(int64_t{1} << 62);
                     v1::RotateWebhookSecretResponse resp;
                     return api.Call(&S::RotateWebhookSecret, r, &resp, kAdmin);
                   }});
  cases.push_back({"GetDeliveryStats window of 2^62 s", [&] {
                     v1::GetDeliveryStatsRequest r;
                     r.mutable_window()->set_seconds(int64_t{1} << 62);
                     v1::GetDeliveryStatsResponse resp;
                     return api.Call(&S::GetDeliveryStats, r, &resp);
                   }});
  auto silence = [&](std::string name, std::function<void(v1::CreateSilenceRequest&)> e) {
    cases.push_back({"CreateSilence " + name, [&api, e] {
                       v1::CreateSilenceRequest r;
                       r.set_tenant_id("acme");
                       *r.mutable_until() = ToProto(api.clock.Now() + absl::Hours(1));
                       e(r);
                       v1::CreateSilenceResponse resp;
                       return api.Call(&S::CreateSilence, r, &resp, kAdmin);
                     }});
  };
  silence("1 MiB comment", [](auto& r) { r.set_comment(kHuge); });
  silence("until in year 10000", [](auto& r) { r.mutable_until()->set_seconds(253402300800); });
  silence("until with bad nanos", [](auto& r) { r.mutable_until()->set_nanos(-1); });
  silence("event type with NUL", [](auto& r) { r.set_event_type(std::string("a\0", 2)); });
  cases.push_back({"RedeliverDelivery id with spaces", [&] {
                     v1::RedeliverDeliveryRequest r;
                     r.set_id("1 OR 1=1");
                     v1::RedeliverDeliveryResponse resp;
                     return api.Call(&S::RedeliverDelivery, r, &resp);
                   }});
  for (const auto& c : cases) {
    const grpc::Status st = c.call();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name << ": " << st.error_message();
    EXPECT_FALSE(st.error_message().empty()) << c.name;
    EXPECT_LT(st.error_message().size(), 400u) << c.name;
  }
  // Still healthy: a good alert goes through.
  v1::RaiseAlertResponse raised;
  EXPECT_THAT(api.Call(&S::RaiseAlert, Raise(v1::SEVERITY_WARNING), &raised), IsOk());
  std::cout << cases.size() << " bad requests, each INVALID_ARGUMENT\n";
}

TEST(AlertApi, TenantKeysSeeTheirOwnTenantOnly) {
  Api api;
  using S = v1::AlertService::Stub;
  // Endpoints: an operator's gets every tenant's alerts, a tenant's only its own.
  v1::CreateWebhookEndpointRequest ep;
  ep.set_url("https://hooks.acme.example/wa");
  v1::CreateWebhookEndpointResponse acme_ep, globex_ep;
  ASSERT_THAT(api.Call(&S::CreateWebhookEndpoint, ep, &acme_ep, kAcmeAdmin), IsOk());
  EXPECT_EQ(acme_ep.endpoint().tenant_id(), "acme");
  ep.set_url("https://hooks.globex.example/wa");
  ASSERT_THAT(api.Call(&S::CreateWebhookEndpoint, ep, &globex_ep, kGlobexAdmin), IsOk());

  // A tenant key raises under its own tenant and "<tenant>/" dedup keys only.
  auto acme_alert = Raise(v1::SEVERITY_CRITICAL);
  acme_alert.set_dedup_key("acme/printer-offline");
  acme_alert.mutable_session()->clear_tenant_id();
  v1::RaiseAlertResponse raised_acme;
  ASSERT_THAT(api.Call(&S::RaiseAlert, acme_alert, &raised_acme, kAcmeOperator), IsOk());
  EXPECT_EQ(raised_acme.alert().session().tenant_id(), "acme");
  std::set<std::string> targets;
  for (const auto& d : raised_acme.alert().deliveries()) targets.insert(d.target());
  EXPECT_TRUE(targets.count(acme_ep.endpoint().id()));
  EXPECT_FALSE(targets.count(globex_ep.endpoint().id())) << "another tenant's endpoint";
  v1::RaiseAlertResponse refused;
  auto unscoped = acme_alert;
  unscoped.set_dedup_key("printer-offline");
  EXPECT_EQ(api.Call(&S::RaiseAlert, unscoped, &refused, kAcmeOperator).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  auto elsewhere = acme_alert;
  elsewhere.mutable_session()->set_tenant_id("globex");
  EXPECT_EQ(api.Call(&S::RaiseAlert, elsewhere, &refused, kAcmeOperator).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // The operator (health-monitor) raises one for globex.
  auto globex_alert = Raise(v1::SEVERITY_CRITICAL);
  globex_alert.set_dedup_key("session.offline/g1");
  globex_alert.mutable_session()->set_tenant_id("globex");
  v1::RaiseAlertResponse raised_globex;
  ASSERT_THAT(api.Call(&S::RaiseAlert, globex_alert, &raised_globex), IsOk());
  targets.clear();
  for (const auto& d : raised_globex.alert().deliveries()) targets.insert(d.target());
  EXPECT_FALSE(targets.count(acme_ep.endpoint().id()));
  EXPECT_TRUE(targets.count(globex_ep.endpoint().id()));

  // Reads: lists narrowed, another tenant's alert answers as a missing one.
  v1::ListAlertsResponse listed;
  ASSERT_THAT(api.Call(&S::ListAlerts, v1::ListAlertsRequest(), &listed, kAcmeOperator), IsOk());
  ASSERT_EQ(listed.alerts_size(), 1);
  EXPECT_EQ(listed.alerts(0).id(), raised_acme.alert().id());
  v1::GetAlertRequest get;
  v1::GetAlertResponse got;
  get.set_id(raised_globex.alert().id());
  const grpc::Status theirs = api.Call(&S::GetAlert, get, &got, kAcmeOperator);
  get.set_id("00000000-0000-0000-0000-000000000000");
  const grpc::Status missing = api.Call(&S::GetAlert, get, &got, kAcmeOperator);
  EXPECT_EQ(theirs.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::ListWebhookEndpointsResponse endpoints;
  ASSERT_THAT(
      api.Call(&S::ListWebhookEndpoints, v1::ListWebhookEndpointsRequest(), &endpoints, kAcmeAdmin),
      IsOk());
  ASSERT_EQ(endpoints.endpoints_size(), 1);
  ASSERT_THAT(
      api.Call(&S::ListWebhookEndpoints, v1::ListWebhookEndpointsRequest(), &endpoints, kReader),
      IsOk());
  EXPECT_EQ(endpoints.endpoints_size(), 2) << "an operator's key sees every tenant";
  v1::ListDeliveriesResponse deliveries;
  ASSERT_THAT(api.Call(&S::ListDeliveries, v1::ListDeliveriesRequest(), &deliveries, kAcmeOperator),
              IsOk());
  EXPECT_EQ(deliveries.deliveries_size(), raised_acme.alert().deliveries_size());
  for (const auto& d : deliveries.deliveries()) EXPECT_EQ(d.alert_id(), raised_acme.alert().id());
  v1::GetDeliveryStatsResponse stats;
  ASSERT_THAT(api.Call(&S::GetDeliveryStats, v1::GetDeliveryStatsRequest(), &stats, kAcmeOperator),
              IsOk());
  EXPECT_EQ(stats.outbox_depth(), raised_acme.alert().deliveries_size());

  // Changes to another tenant's objects are refused and change nothing.
  v1::ResolveAlertRequest resolve;
  resolve.set_dedup_key("session.offline/g1");
  v1::ResolveAlertResponse resolved;
  EXPECT_EQ(api.Call(&S::ResolveAlert, resolve, &resolved, kAcmeOperator).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::DeleteWebhookEndpointRequest del;
  del.set_id(acme_ep.endpoint().id());
  v1::DeleteWebhookEndpointResponse deleted;
  EXPECT_EQ(api.Call(&S::DeleteWebhookEndpoint, del, &deleted, kGlobexAdmin).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::RedeliverDeliveryRequest redeliver;
  redeliver.set_id(raised_globex.alert().deliveries(0).id());
  v1::RedeliverDeliveryResponse redelivered;
  EXPECT_EQ(api.Call(&S::RedeliverDelivery, redeliver, &redelivered, kAcmeOperator).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Silences: in the key's own tenant; listed for it alone.
  v1::CreateSilenceRequest silence;
  silence.set_event_type("session.critical");
  *silence.mutable_until() = ToProto(api.clock.Now() + absl::Hours(1));
  v1::CreateSilenceResponse silenced;
  ASSERT_THAT(api.Call(&S::CreateSilence, silence, &silenced, kAcmeAdmin), IsOk());
  EXPECT_EQ(silenced.silence().tenant_id(), "acme") << "never every tenant's";
  silence.set_tenant_id("globex");
  EXPECT_EQ(api.Call(&S::CreateSilence, silence, &silenced, kAcmeAdmin).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ListSilencesResponse silences;
  ASSERT_THAT(api.Call(&S::ListSilences, v1::ListSilencesRequest(), &silences, kGlobexAdmin),
              IsOk());
  EXPECT_EQ(silences.silences_size(), 0);
}

}  // namespace
}  // namespace wasentinel::alert
