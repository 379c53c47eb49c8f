// The monitor's gRPC clients: session-service (SessionSource) and alert-service (AlertSink),
// with the monitor's API key and a deadline on every call. gRPC errors become absl::Status
// with the same code.
#pragma once

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "monitor.h"
#include "wasentinel/alert/v1/alert.grpc.pb.h"
#include "wasentinel/session/v1/session.grpc.pb.h"

namespace wasentinel::monitor {

class GrpcSessionSource final : public SessionSource {
 public:
  /// `api_key`: sent as x-api-key (scopes read + operate). `timeout`: per call; the deep check
  /// gets four times as long.
  GrpcSessionSource(std::shared_ptr<grpc::Channel> channel, std::string api_key,
                    absl::Duration timeout = absl::Seconds(10));

  absl::StatusOr<sv1::GetHealthResponse> Health() override;
  absl::StatusOr<sv1::GetDeepHealthResponse> DeepHealth() override;
  absl::StatusOr<std::vector<sv1::Session>> BulkGet(const std::vector<std::string>& ids) override;
  absl::StatusOr<sv1::Session> Get(const std::string& id) override;
  absl::StatusOr<sv1::Session> Reconnect(const std::string& id) override;
  absl::StatusOr<absl::Duration> Probe(const std::string& id) override;

  sv1::SessionService::Stub& stub() { return *stub_; }
  /// A context with the key and a deadline `timeout` from now.
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) const;

 private:
  std::unique_ptr<sv1::SessionService::Stub> stub_;
  const std::string api_key_;
  const absl::Duration timeout_;
};

class GrpcAlertSink final : public AlertSink {
 public:
  GrpcAlertSink(std::shared_ptr<grpc::Channel> channel, std::string api_key,
                absl::Duration timeout = absl::Seconds(10));
  absl::Status Raise(const av1::RaiseAlertRequest& alert) override;
  absl::Status Resolve(const std::string& dedup_key, const std::string& note) override;

 private:
  std::unique_ptr<av1::AlertService::Stub> stub_;
  const std::string api_key_;
  const absl::Duration timeout_;
};

}  // namespace wasentinel::monitor
