// gRPC wasentinel.alert.v1.AlertService (protos/wasentinel/alert/v1/alert.proto): alerts are
// written to the outbox (PgAlertStore) and answered at once; nothing is delivered from inside a
// call (the dispatchers are woken instead). Scopes: read — Get*, List*, GetDeliveryStats;
// operate — RaiseAlert, ResolveAlert, RedeliverDelivery; admin — webhook endpoints and
// silences. Bad input is INVALID_ARGUMENT, unknown ids NOT_FOUND, a missing or unknown key
// UNAUTHENTICATED, a key without the scope PERMISSION_DENIED. Webhook secrets are sealed at rest
// and shown once, when created or rotated.
#pragma once

#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "delivery/metrics.h"
#include "outbox/pg_alert_store.h"
#include "wasentinel/alert/v1/alert.grpc.pb.h"
#include "wasentinel/common/api_keys.h"
#include "wasentinel/common/clock.h"
#include "wasentinel/common/sealing.h"

namespace wasentinel::alert {

struct AlertServiceOptions {
  /// E-mail addresses told of every alert besides the session's owner.
  std::vector<std::string> recipients;
  /// Webhook URLs may be http:// and private or loopback addresses (tests, internal receivers).
  bool allow_private_targets = false;
  /// How long a rotated-out webhook secret stays valid when the call does not say.
  absl::Duration rotation_grace = absl::Hours(24);
  AlertMetrics* metrics = nullptr;  ///< optional, not owned
};

class AlertServiceImpl final : public v1::AlertService::Service {
 public:
  /// `on_outbox`: called after a call wrote deliveries (wakes the dispatchers).
  AlertServiceImpl(PgAlertStore& store, const ApiKeys& keys, Clock& clock, const Sealer& sealer,
                   AlertServiceOptions options, std::function<void()> on_outbox = {});

  grpc::Status RaiseAlert(grpc::ServerContext*, const v1::RaiseAlertRequest*,
                          v1::RaiseAlertResponse*) override;
  grpc::Status ResolveAlert(grpc::ServerContext*, const v1::ResolveAlertRequest*,
                            v1::ResolveAlertResponse*) override;
  grpc::Status GetAlert(grpc::ServerContext*, const v1::GetAlertRequest*,
                        v1::GetAlertResponse*) override;
  grpc::Status ListAlerts(grpc::ServerContext*, const v1::ListAlertsRequest*,
                          v1::ListAlertsResponse*) override;
  grpc::Status CreateWebhookEndpoint(grpc::ServerContext*, const v1::CreateWebhookEndpointRequest*,
                                     v1::CreateWebhookEndpointResponse*) override;
  grpc::Status ListWebhookEndpoints(grpc::ServerContext*, const v1::ListWebhookEndpointsRequest*,
                                    v1::ListWebhookEndpointsResponse*) override;
  grpc::Status UpdateWebhookEndpoint(grpc::ServerContext*, const v1::UpdateWebhookEndpointRequest*,
                                     v1::UpdateWebhookEndpointResponse*) override;
  grpc::Status DeleteWebhookEndpoint(grpc::ServerContext*, const v1::DeleteWebhookEndpointRequest*,
                                     v1::DeleteWebhookEndpointResponse*) override;
  grpc::Status RotateWebhookSecret(grpc::ServerContext*, const v1::RotateWebhookSecretRequest*,
                                   v1::RotateWebhookSecretResponse*) override;
  grpc::Status ListDeliveries(grpc::ServerContext*, const v1::ListDeliveriesRequest*,
                              v1::ListDeliveriesResponse*) override;
  grpc::Status RedeliverDelivery(grpc::ServerContext*, const v1::RedeliverDeliveryRequest*,
                                 v1::RedeliverDeliveryResponse*) override;
  grpc::Status GetDeliveryStats(grpc::ServerContext*, const v1::GetDeliveryStatsRequest*,
                                v1::GetDeliveryStatsResponse*) override;
  grpc::Status CreateSilence(grpc::ServerContext*, const v1::CreateSilenceRequest*,
                             v1::CreateSilenceResponse*) override;
  grpc::Status ListSilences(grpc::ServerContext*, const v1::ListSilencesRequest*,
                            v1::ListSilencesResponse*) override;
  grpc::Status DeleteSilence(grpc::ServerContext*, const v1::DeleteSilenceRequest*,
                             v1::DeleteSilenceResponse*) override;

 private:
  grpc::Status Authorize(grpc::ServerContext* ctx, Scope scope, Caller* caller = nullptr) const;
  // A checked URL and event-type filter for an endpoint.
  grpc::Status CheckEndpoint(const std::string& url,
                             const google::protobuf::RepeatedPtrField<std::string>& types,
                             double rate) const;
  // A new secret, sealed: {secret, key id, sealed blob}.
  std::tuple<std::string, std::string, std::string> NewSealedSecret() const;

  PgAlertStore& store_;
  const ApiKeys& keys_;
  Clock& clock_;
  const Sealer& sealer_;
  const AlertServiceOptions options_;
  const std::function<void()> on_outbox_;
};

}  // namespace wasentinel::alert
