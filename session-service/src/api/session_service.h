// gRPC wasentinel.session.v1.SessionService over the SessionManager (shared/docs/api.md).
// Maps absl::Status to grpc::Status at the edge; validates requests (INVALID_ARGUMENT); checks
// each call's API key scope (UNAUTHENTICATED / PERMISSION_DENIED) before anything else.
#pragma once

#include <memory>

#include "event_bus.h"
#include "manager.h"
#include "wasentinel/common/api_keys.h"
#include "wasentinel/session/v1/session.grpc.pb.h"

namespace wasentinel::session {

class SessionServiceImpl final : public v1::SessionService::Service {
 public:
  SessionServiceImpl(SessionManager& manager, SessionStore& store, EventBus& bus,
                     const ApiKeys& keys, std::string replica, std::shared_ptr<spdlog::logger> log);

  grpc::Status CreateSession(grpc::ServerContext*, const v1::CreateSessionRequest*,
                             v1::CreateSessionResponse*) override;
  grpc::Status GetSession(grpc::ServerContext*, const v1::GetSessionRequest*,
                          v1::GetSessionResponse*) override;
  grpc::Status ListSessions(grpc::ServerContext*, const v1::ListSessionsRequest*,
                            v1::ListSessionsResponse*) override;
  grpc::Status Connect(grpc::ServerContext*, const v1::ConnectRequest*,
                       v1::ConnectResponse*) override;
  grpc::Status Disconnect(grpc::ServerContext*, const v1::DisconnectRequest*,
                          v1::DisconnectResponse*) override;
  grpc::Status WatchSessionEvents(grpc::ServerContext*, const v1::WatchSessionEventsRequest*,
                                  grpc::ServerWriter<v1::SessionEvent>*) override;
  grpc::Status GetHealth(grpc::ServerContext*, const v1::GetHealthRequest*,
                         v1::GetHealthResponse*) override;
  grpc::Status BulkGetSessions(grpc::ServerContext*, const v1::BulkGetSessionsRequest*,
                               v1::BulkGetSessionsResponse*) override;
  grpc::Status StartPairing(grpc::ServerContext*, const v1::StartPairingRequest*,
                            grpc::ServerWriter<v1::PairingUpdate>*) override;
  grpc::Status Reconnect(grpc::ServerContext*, const v1::ReconnectRequest*,
                         v1::ReconnectResponse*) override;
  grpc::Status Logout(grpc::ServerContext*, const v1::LogoutRequest*, v1::LogoutResponse*) override;
  grpc::Status DeleteSession(grpc::ServerContext*, const v1::DeleteSessionRequest*,
                             v1::DeleteSessionResponse*) override;
  grpc::Status ProbeSession(grpc::ServerContext*, const v1::ProbeSessionRequest*,
                            v1::ProbeSessionResponse*) override;
  grpc::Status ImportCredentials(grpc::ServerContext*, const v1::ImportCredentialsRequest*,
                                 v1::ImportCredentialsResponse*) override;
  grpc::Status UpdateSession(grpc::ServerContext*, const v1::UpdateSessionRequest*,
                             v1::UpdateSessionResponse*) override;
  grpc::Status RotateSealingKey(grpc::ServerContext*, const v1::RotateSealingKeyRequest*,
                                v1::RotateSealingKeyResponse*) override;
  grpc::Status GetDeepHealth(grpc::ServerContext*, const v1::GetDeepHealthRequest*,
                             v1::GetDeepHealthResponse*) override;

 private:
  // UNAUTHENTICATED / PERMISSION_DENIED unless the call's key has `scope`.
  grpc::Status Authorize(grpc::ServerContext* ctx, Scope scope) const;

  SessionManager& manager_;
  SessionStore& store_;
  EventBus& bus_;
  const ApiKeys& keys_;
  const std::string replica_;
  std::shared_ptr<spdlog::logger> log_;
  const absl::Time started_at_;
};

/// The API form of a session: the stored row overlaid with what this process knows live.
v1::Session ToProto(const SessionView& view);
/// absl::Status → grpc::Status with the same code and message.
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace wasentinel::session
