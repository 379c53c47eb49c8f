// gRPC wasentinel.session.v1.SessionService over the SessionManager (shared/docs/api.md).
// Maps absl::Status to grpc::Status at the edge; validates requests (INVALID_ARGUMENT).
#pragma once

#include <memory>

#include "event_bus.h"
#include "manager.h"
#include "wasentinel/session/v1/session.grpc.pb.h"

namespace wasentinel::session {

class SessionServiceImpl final : public v1::SessionService::Service {
 public:
  SessionServiceImpl(SessionManager& manager, SessionStore& store, EventBus& bus,
                     std::shared_ptr<spdlog::logger> log);

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

 private:
  SessionManager& manager_;
  SessionStore& store_;
  EventBus& bus_;
  std::shared_ptr<spdlog::logger> log_;
  const absl::Time started_at_;
};

/// The API form of a session: the stored row overlaid with what this process knows live.
v1::Session ToProto(const SessionView& view);
/// absl::Status → grpc::Status with the same code and message.
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace wasentinel::session
