// AlertService over gRPC on loopback with a real PostgreSQL: raise, fold, resolve, get, list,
// and the errors (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "alert_db.h"
#include "alert_service.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"

namespace wasentinel::alert {
namespace {

constexpr char kReader[] = "reader-key-0123456789";
constexpr char kOperator[] = "operator-key-0123456789";
constexpr char kAdmin[] = "admin-key-0123456789abc";

struct Api : AlertDb {
  wasentinel::testing::FakeClock clock;
  ApiKeys keys = ApiKeys::FromConfig(absl::StrCat("r:read:", kReader, ",o:operate:", kOperator,
                                                  ",a:admin:", kAdmin))
                     .value();
  Sealer sealer = Sealer::FromConfig(std::string(64, 'b')).value();
  AlertServiceImpl service{store, keys, clock, sealer,
                           AlertServiceOptions{{"oncall@ops.example"}, /*allow_private=*/false}};
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::AlertService::Stub> stub;
  Api() {
    int port = 0;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    server = b.BuildAndStart();
    stub = v1::AlertService::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                         grpc::InsecureChannelCredentials()));
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
  ASSERT_TRUE(
      api.Call(&v1::AlertService::Stub::RaiseAlert, Raise(v1::SEVERITY_CRITICAL), &raised).ok());
  EXPECT_TRUE(raised.created());
  EXPECT_EQ(raised.alert().deliveries_size(), 2) << "owner and on-call";
  v1::RaiseAlertResponse again;
  ASSERT_TRUE(
      api.Call(&v1::AlertService::Stub::RaiseAlert, Raise(v1::SEVERITY_CRITICAL), &again).ok());
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.alert().raise_count(), 2);

  v1::ResolveAlertRequest resolve;
  resolve.set_dedup_key(raised.alert().dedup_key());
  resolve.set_note("a person linked the device again");
  v1::ResolveAlertResponse resolved;
  ASSERT_TRUE(api.Call(&v1::AlertService::Stub::ResolveAlert, resolve, &resolved).ok());
  EXPECT_EQ(resolved.alert().status(), v1::Alert::STATUS_RESOLVED);
  EXPECT_EQ(resolved.alert().deliveries_size(), 4);

  v1::GetAlertRequest get;
  get.set_id(raised.alert().id());
  v1::GetAlertResponse got;
  ASSERT_TRUE(api.Call(&v1::AlertService::Stub::GetAlert, get, &got, kReader).ok());
  EXPECT_EQ(got.alert().status(), v1::Alert::STATUS_RESOLVED);
  v1::ListAlertsRequest list;
  list.add_statuses(v1::Alert::STATUS_RESOLVED);
  v1::ListAlertsResponse listed;
  ASSERT_TRUE(api.Call(&v1::AlertService::Stub::ListAlerts, list, &listed, kReader).ok());
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
  ASSERT_TRUE(
      api.Call(&v1::AlertService::Stub::CreateWebhookEndpoint, create, &created, kAdmin).ok());
  EXPECT_EQ(created.secret().rfind("whsec_", 0), 0u);
  const std::string endpoint = created.endpoint().id();

  v1::RaiseAlertResponse raised;
  ASSERT_TRUE(
      api.Call(&v1::AlertService::Stub::RaiseAlert, Raise(v1::SEVERITY_CRITICAL), &raised).ok());
  ASSERT_EQ(raised.alert().deliveries_size(), 3);  // owner, on-call, the endpoint
  EXPECT_EQ(raised.alert().deliveries(2).target(), endpoint);

  v1::ListDeliveriesRequest list;
  list.set_alert_id(raised.alert().id());
  list.set_channel(v1::Delivery::CHANNEL_WEBHOOK);
  v1::ListDeliveriesResponse listed;
  ASSERT_TRUE(api.Call(&v1::AlertService::Stub::ListDeliveries, list, &listed, kReader).ok());
  ASSERT_EQ(listed.deliveries_size(), 1);
  v1::RedeliverDeliveryRequest redeliver;
  redeliver.set_id(listed.deliveries(0).id());
  v1::RedeliverDeliveryResponse redelivered;
  EXPECT_EQ(
      api.Call(&v1::AlertService::Stub::RedeliverDelivery, redeliver, &redelivered).error_code(),
      grpc::StatusCode::FAILED_PRECONDITION)
      << "it is still pending";
  v1::GetDeliveryStatsResponse stats;
  ASSERT_TRUE(api.Call(&v1::AlertService::Stub::GetDeliveryStats, v1::GetDeliveryStatsRequest(),
                       &stats, kReader)
                  .ok());
  EXPECT_EQ(stats.outbox_depth(), 3);

  v1::RotateWebhookSecretRequest rotate;
  rotate.set_id(endpoint);
  v1::RotateWebhookSecretResponse rotated;
  ASSERT_TRUE(
      api.Call(&v1::AlertService::Stub::RotateWebhookSecret, rotate, &rotated, kAdmin).ok());
  EXPECT_NE(rotated.secret(), created.secret());
  EXPECT_EQ(FromProto(rotated.previous_valid_until()), api.clock.Now() + absl::Hours(24));

  v1::UpdateWebhookEndpointRequest update;
  update.set_id(endpoint);
  update.set_enabled(false);
  v1::UpdateWebhookEndpointResponse updated;
  ASSERT_TRUE(
      api.Call(&v1::AlertService::Stub::UpdateWebhookEndpoint, update, &updated, kAdmin).ok());
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
  ASSERT_TRUE(api.Call(&v1::AlertService::Stub::CreateSilence, silence, &silenced, kAdmin).ok());
  auto quiet = Raise(v1::SEVERITY_WARNING);
  quiet.set_dedup_key("session.offline/s9");
  quiet.mutable_session()->set_tenant_id("acme");
  ASSERT_TRUE(api.Call(&v1::AlertService::Stub::RaiseAlert, quiet, &raised).ok());
  EXPECT_EQ(raised.alert().status(), v1::Alert::STATUS_SUPPRESSED);
  v1::ListSilencesResponse silences;
  ASSERT_TRUE(
      api.Call(&v1::AlertService::Stub::ListSilences, v1::ListSilencesRequest(), &silences, kReader)
          .ok());
  ASSERT_EQ(silences.silences_size(), 1);
  v1::DeleteSilenceRequest unsilence;
  unsilence.set_id(silenced.silence().id());
  v1::DeleteSilenceResponse unsilenced;
  ASSERT_TRUE(
      api.Call(&v1::AlertService::Stub::DeleteSilence, unsilence, &unsilenced, kAdmin).ok());

  v1::DeleteWebhookEndpointRequest del;
  del.set_id(endpoint);
  v1::DeleteWebhookEndpointResponse deleted;
  ASSERT_TRUE(api.Call(&v1::AlertService::Stub::DeleteWebhookEndpoint, del, &deleted, kAdmin).ok());
  EXPECT_EQ(
      api.Call(&v1::AlertService::Stub::DeleteWebhookEndpoint, del, &deleted, kAdmin).error_code(),
      grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace wasentinel::alert
