// gRPC wasentinel.alert.v1.AlertService (protos/wasentinel/alert/v1/alert.proto): alerts are
// written to the outbox (PgAlertStore) and answered at once; nothing is delivered from inside a
// call. Scopes: read — GetAlert, ListAlerts; operate — RaiseAlert, ResolveAlert. Bad input is
// INVALID_ARGUMENT, unknown ids NOT_FOUND, a missing or unknown key UNAUTHENTICATED, a key
// without the scope PERMISSION_DENIED.
#pragma once

#include <string>
#include <vector>

#include "outbox/pg_alert_store.h"
#include "wasentinel/alert/v1/alert.grpc.pb.h"
#include "wasentinel/common/api_keys.h"
#include "wasentinel/common/clock.h"

namespace wasentinel::alert {

class AlertServiceImpl final : public v1::AlertService::Service {
 public:
  /// `recipients`: e-mail addresses told of every alert besides the session's owner.
  AlertServiceImpl(PgAlertStore& store, const ApiKeys& keys, Clock& clock,
                   std::vector<std::string> recipients);

  grpc::Status RaiseAlert(grpc::ServerContext*, const v1::RaiseAlertRequest*,
                          v1::RaiseAlertResponse*) override;
  grpc::Status ResolveAlert(grpc::ServerContext*, const v1::ResolveAlertRequest*,
                            v1::ResolveAlertResponse*) override;
  grpc::Status GetAlert(grpc::ServerContext*, const v1::GetAlertRequest*,
                        v1::GetAlertResponse*) override;
  grpc::Status ListAlerts(grpc::ServerContext*, const v1::ListAlertsRequest*,
                          v1::ListAlertsResponse*) override;

 private:
  grpc::Status Authorize(grpc::ServerContext* ctx, Scope scope) const;

  PgAlertStore& store_;
  const ApiKeys& keys_;
  Clock& clock_;
  const std::vector<std::string> recipients_;
};

}  // namespace wasentinel::alert
