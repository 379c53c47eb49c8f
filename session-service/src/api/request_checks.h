// What SessionService's calls (session_service.cc, message_calls.cc) check in requests before
// anything else, and how they refuse: INVALID_ARGUMENT naming the field.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "wasentinel/common/grpc_status.h"
#include "wasentinel/common/validation.h"

namespace wasentinel::session {

inline constexpr int kMaxPageSize = 500;
inline constexpr int kDefaultPageSize = 100;

inline grpc::Status Invalid(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}

inline grpc::Status CheckTenant(const std::string& tenant) {
  return ToGrpc(CheckTenantId("tenant_id", tenant));
}

/// A tenant filter: empty (every tenant the key may see) or a tenant id.
inline grpc::Status CheckTenantFilter(const std::string& tenant) {
  return tenant.empty() ? grpc::Status::OK : CheckTenant(tenant);
}

/// A session id as it may be looked up (the store checks it is a UUID).
inline grpc::Status CheckSessionId(const std::string& id, const char* field = "id") {
  return ToGrpc(CheckIdentifier(field, id, 128));
}

inline grpc::Status CheckPageToken(const std::string& token) {
  return token.empty() ? grpc::Status::OK : ToGrpc(CheckIdentifier("page_token", token, 512));
}

/// A stream refused before it starts: a reactor that only finishes with `st`.
template <class T>
grpc::ServerWriteReactor<T>* Refuse(const grpc::Status& st) {
  class Refusal final : public grpc::ServerWriteReactor<T> {
   public:
    explicit Refusal(const grpc::Status& status) { this->Finish(status); }
    void OnDone() override { delete this; }
  };
  return new Refusal(st);
}

}  // namespace wasentinel::session
