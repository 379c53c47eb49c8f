// The edge between absl::Status and gRPC, shared by the services: status conversion both ways,
// a call's metadata and API key, and an early return for handlers.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "wasentinel/common/api_keys.h"

namespace wasentinel {

/// absl::Status → grpc::Status with the same code and message.
grpc::Status ToGrpc(const absl::Status& status);
/// grpc::Status → absl::Status with the same code; the message names the call (`what`).
absl::Status FromGrpc(const grpc::Status& status, std::string_view what);
/// The value of metadata `key` of a call (empty when absent).
std::string_view Metadata(grpc::ServerContextBase* ctx, std::string_view key);

/// The call's API key (`x-api-key`, or `authorization: Bearer`) checked against `keys` for
/// `scope` (api_keys.h): UNAUTHENTICATED or PERMISSION_DENIED, or OK with the caller in
/// `caller` when given.
grpc::Status AuthorizeCall(const ApiKeys& keys, grpc::ServerContextBase* ctx, Scope scope,
                           Caller* caller = nullptr);

/// Returns the grpc::Status of `expr` from the enclosing handler unless it is OK.
#define WAS_GRPC_RETURN_IF_ERROR(expr)                    \
  do {                                                    \
    if (grpc::Status _st = (expr); !_st.ok()) return _st; \
  } while (0)

}  // namespace wasentinel
