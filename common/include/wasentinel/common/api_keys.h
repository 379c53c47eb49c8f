// API keys with scopes, shared by the three services' gRPC APIs.
//
// Source: shared/docs/api.md "Authentication". A key travels in the `x-api-key` metadata or as
// `authorization: Bearer <key>`. Scopes: `read` (get, list, watch, deep health), `operate`
// (connect, disconnect, reconnect, probe, pairing, alerts), `admin` (create, delete, import,
// keys, webhook endpoints); `admin` includes `operate`, which includes `read`. Only SHA-256
// hashes of the keys are kept in memory, and a presented key is compared in constant time.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace wasentinel {

enum class Scope { kRead = 1, kOperate = 2, kAdmin = 3 };

std::string_view ScopeName(Scope scope);

class ApiKeys {
 public:
  /// Parses "NAME:SCOPE:KEY[,NAME:SCOPE:KEY...]" (SCOPE is read, operate or admin; KEY at
  /// least 16 characters, no ',' or ':'). Empty: no keys, every call is allowed
  /// (`enabled()` is false). INVALID_ARGUMENT, naming the entry but never the key, otherwise.
  static absl::StatusOr<ApiKeys> FromConfig(std::string_view config);

  bool enabled() const { return !keys_.empty(); }

  /// Checks the metadata values of a call: `x_api_key` (may be empty) and `authorization`
  /// (may be empty). UNAUTHENTICATED without a key or with an unknown one; PERMISSION_DENIED
  /// when the key lacks `needed`. On success, the key's name (for logs and audit).
  absl::StatusOr<std::string> Authorize(std::string_view x_api_key, std::string_view authorization,
                                        Scope needed) const;

 private:
  struct Entry {
    std::string name;
    Scope scope;
    std::array<uint8_t, 32> hash;
  };
  std::vector<Entry> keys_;
};

}  // namespace wasentinel
