// API keys with scopes and, optionally, a tenant, shared by the three services' gRPC APIs
// (README "gRPC API", tenant keys; "Security").
//
// A key travels in the `x-api-key` metadata or as `authorization: Bearer <key>`. Scopes:
// `read` (get, list, watch, deep health), `operate` (connect, disconnect, reconnect, probe,
// pairing an existing session, alerts), `admin` (create, delete, import, keys, webhook
// endpoints); `admin` includes `operate`, which includes `read`. Message contents are apart:
// `messages:read` (get, list, watch messages) and `messages:send` (send, mark read) are
// granted by name, beside a level or alone, and only `admin` includes them.
//
// A key bound to a tenant sees and acts on that tenant's objects only: lists and watches are
// narrowed to it, a call naming another tenant is PERMISSION_DENIED, and an object of another
// tenant answers exactly as one that does not exist (PERMISSION_DENIED, the same message), so
// a key learns nothing of other tenants. Calls about the service as a whole (key rotation,
// jobs) need a key without a tenant: an operator's.
//
// Only SHA-256 hashes of the keys are kept in memory, and a presented key is compared in
// constant time.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace wasentinel {

/// Levels (kRead < kOperate < kAdmin; kNone: a key with message scopes only) and the two
/// message scopes, which are not levels.
enum class Scope {
  kNone = 0,
  kRead = 1,
  kOperate = 2,
  kAdmin = 3,
  kMessagesRead = 10,
  kMessagesSend = 11
};

std::string_view ScopeName(Scope scope);

/// Who is calling: the key that authorised the call.
struct Caller {
  std::string key_name = "anonymous";  ///< "anonymous" when no keys are configured
  Scope scope = Scope::kAdmin;         ///< the level
  std::string tenant;                  ///< empty: every tenant (an operator's key)
  bool messages_read = false;          ///< granted messages:read (admin has it anyway)
  bool messages_send = false;          ///< granted messages:send (admin has it anyway)

  /// Does the caller hold `needed` (a level, or a message scope)?
  bool Has(Scope needed) const;
  /// "admin", "read+messages:read", "messages:send", …
  std::string ScopesText() const;

  bool all_tenants() const { return tenant.empty(); }
  /// May this caller see an object of `object_tenant`?
  bool Sees(std::string_view object_tenant) const {
    return tenant.empty() || tenant == object_tenant;
  }
};

class ApiKeys {
 public:
  /// Parses "ENTRY[,ENTRY...]" where ENTRY is "NAME:SCOPES:KEY" (every tenant) or
  /// "NAME:SCOPES:TENANT:KEY" (that tenant only). SCOPES is one level (read, operate, admin)
  /// and/or messages:read and messages:send, joined by '+' ("operate+messages:send"); TENANT a
  /// tenant id (CheckTenantId, common/validation.h); KEY at least 16 characters, no ',' or ':'.
  /// Empty: no keys, every call is allowed (`enabled()` is false). INVALID_ARGUMENT, naming the
  /// entry but never the key, for a malformed entry, a repeated name, or one key value listed
  /// twice (it would hold the wider of two scopes or tenants).
  static absl::StatusOr<ApiKeys> FromConfig(std::string_view config);

  bool enabled() const { return !keys_.empty(); }

  /// Checks the metadata values of a call: `x_api_key` (may be empty) and `authorization`
  /// (may be empty). UNAUTHENTICATED without a key or with an unknown one; PERMISSION_DENIED
  /// when the key lacks `needed`. On success, the caller.
  absl::StatusOr<Caller> Authorize(std::string_view x_api_key, std::string_view authorization,
                                   Scope needed) const;

 private:
  struct Entry {
    std::string name;
    Scope scope;
    bool messages_read = false;
    bool messages_send = false;
    std::string tenant;
    std::array<uint8_t, 32> hash;
  };
  std::vector<Entry> keys_;
};

/// The tenant a list or watch reads: for an operator `requested` (empty: every tenant); for a
/// tenant key its own tenant, and PERMISSION_DENIED when `requested` names another.
absl::StatusOr<std::string> TenantFilter(const Caller& caller, std::string_view requested);

/// The tenant of an object a call creates: for an operator `requested` (INVALID_ARGUMENT when
/// empty and `required`); for a tenant key its own tenant (`requested` empty or the same),
/// PERMISSION_DENIED when `requested` names another.
absl::StatusOr<std::string> TenantOfNew(const Caller& caller, std::string_view requested,
                                        bool required = true);

/// PERMISSION_DENIED for a tenant key: `what` concerns every tenant and needs an operator's key.
absl::Status RequireAllTenants(const Caller& caller, std::string_view what);

/// The one answer to a tenant key about an object of another tenant or none at all:
/// PERMISSION_DENIED "<kind> <id> is not one of tenant <tenant>'s", the same in both cases.
/// Operators get `status` (typically NOT_FOUND) unchanged.
absl::Status NotVisible(const Caller& caller, std::string_view kind, std::string_view id,
                        absl::Status status);

}  // namespace wasentinel
