#include "wasentinel/common/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/validation.h"

namespace wasentinel {
namespace {

std::array<uint8_t, 32> Hash(std::string_view key) {
  std::array<uint8_t, 32> out;
  SHA256(reinterpret_cast<const uint8_t*>(key.data()), key.size(), out.data());
  return out;
}

}  // namespace

std::string_view ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kNone:
      return "none";
    case Scope::kMessagesRead:
      return "messages:read";
    case Scope::kMessagesSend:
      return "messages:send";
    case Scope::kRead:
      return "read";
    case Scope::kOperate:
      return "operate";
    case Scope::kAdmin:
      return "admin";
  }
  return "unknown";
}

bool Caller::Has(Scope needed) const {
  switch (needed) {
    case Scope::kMessagesRead:
      return messages_read || scope == Scope::kAdmin;
    case Scope::kMessagesSend:
      return messages_send || scope == Scope::kAdmin;
    default:
      return static_cast<int>(scope) >= static_cast<int>(needed);
  }
}

std::string Caller::ScopesText() const {
  std::vector<std::string> parts;
  if (scope != Scope::kNone) parts.emplace_back(ScopeName(scope));
  if (messages_read) parts.emplace_back("messages:read");
  if (messages_send) parts.emplace_back("messages:send");
  return parts.empty() ? "none" : absl::StrJoin(parts, "+");
}

absl::StatusOr<ApiKeys> ApiKeys::FromConfig(std::string_view config) {
  ApiKeys keys;
  int index = 0;
  for (absl::string_view raw : absl::StrSplit(Sv(config), ',', absl::SkipWhitespace())) {
    ++index;
    std::vector<std::string> parts = absl::StrSplit(absl::StripAsciiWhitespace(raw), ':');
    // The scopes field may hold "messages:read" and "messages:send": join them back.
    if (parts.size() >= 2) {
      size_t i = 2;
      while (i + 1 < parts.size() &&
             (parts[1] == "messages" || absl::EndsWith(parts[1], "+messages"))) {
        parts[1] += ":" + parts[i];
        parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if ((parts.size() != 3 && parts.size() != 4) || parts[0].empty()) {
      for (auto& p : parts) OPENSSL_cleanse(p.data(), p.size());
      return absl::InvalidArgumentError(
          absl::StrCat("API key entry ", index,
                       " is not NAME:SCOPES:KEY or NAME:SCOPES:TENANT:KEY (scopes read, operate or "
                       "admin, and/or messages:read, messages:send, joined by '+')"));
    }
    std::string& secret = parts.back();
    Entry e;
    e.name = parts[0];
    if (auto st = CheckText("API key name", e.name, {.max_bytes = 64}); !st.ok()) {
      OPENSSL_cleanse(secret.data(), secret.size());
      return absl::InvalidArgumentError(absl::StrCat("API key entry ", index, ": ", st.message()));
    }
    e.scope = Scope::kNone;
    bool level_given = false;
    for (absl::string_view token : absl::StrSplit(parts[1], '+')) {
      const bool level = token == "read" || token == "operate" || token == "admin";
      if (level && level_given) {
        OPENSSL_cleanse(secret.data(), secret.size());
        return absl::InvalidArgumentError(
            absl::StrCat("API key \"", e.name, "\": more than one of read, operate, admin"));
      }
      if (token == "read") {
        e.scope = Scope::kRead;
      } else if (token == "operate") {
        e.scope = Scope::kOperate;
      } else if (token == "admin") {
        e.scope = Scope::kAdmin;
      } else if (token == "messages:read") {
        e.messages_read = true;
      } else if (token == "messages:send") {
        e.messages_send = true;
      } else {
        OPENSSL_cleanse(secret.data(), secret.size());
        return absl::InvalidArgumentError(
            absl::StrCat("API key \"", e.name, "\": scope \"", token,
                         "\" is not read, operate, admin, messages:read or messages:send"));
      }
      level_given |= level;
    }
    if (parts.size() == 4) {
      e.tenant = parts[2];
      if (auto st = CheckTenantId("tenant", e.tenant); !st.ok()) {
        OPENSSL_cleanse(secret.data(), secret.size());
        return absl::InvalidArgumentError(absl::StrCat("API key \"", e.name, "\": ", st.message()));
      }
    }
    if (secret.size() < 16) {
      return absl::InvalidArgumentError(
          absl::StrCat("API key \"", e.name, "\" is shorter than 16 characters"));
    }
    e.hash = Hash(secret);
    OPENSSL_cleanse(secret.data(), secret.size());
    for (const auto& other : keys.keys_) {
      if (other.name == e.name) {
        return absl::InvalidArgumentError(absl::StrCat("API key name \"", e.name, "\" repeats"));
      }
      if (CRYPTO_memcmp(other.hash.data(), e.hash.data(), e.hash.size()) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("API keys \"", other.name, "\" and \"", e.name,
                         "\" have the same key value; each key needs a value of its own"));
      }
    }
    keys.keys_.push_back(std::move(e));
  }
  return keys;
}

absl::StatusOr<Caller> ApiKeys::Authorize(std::string_view x_api_key,
                                          std::string_view authorization, Scope needed) const {
  if (keys_.empty()) return Caller{};
  std::string_view key = x_api_key;
  if (key.empty() && !authorization.empty()) {
    constexpr std::string_view kBearer = "bearer ";
    if (authorization.size() > kBearer.size() &&
        absl::EqualsIgnoreCase(Sv(authorization.substr(0, kBearer.size())), Sv(kBearer))) {
      key = authorization.substr(kBearer.size());
    }
  }
  if (key.empty()) {
    return absl::UnauthenticatedError(
        "an API key is required (x-api-key or authorization: Bearer)");
  }
  const auto hash = Hash(key);
  const Entry* match = nullptr;
  for (const auto& e : keys_) {
    // Every entry is compared, so the time taken does not tell which one matched.
    if (CRYPTO_memcmp(e.hash.data(), hash.data(), hash.size()) == 0) match = &e;
  }
  if (!match) return absl::UnauthenticatedError("unknown API key");
  Caller caller{match->name, match->scope, match->tenant, match->messages_read,
                match->messages_send};
  if (!caller.Has(needed)) {
    return absl::PermissionDeniedError(absl::StrCat("API key \"", match->name, "\" has scope ",
                                                    caller.ScopesText(), "; this call needs ",
                                                    Sv(ScopeName(needed))));
  }
  return caller;
}

absl::StatusOr<std::string> TenantFilter(const Caller& caller, std::string_view requested) {
  if (caller.all_tenants()) return std::string(requested);
  if (!requested.empty() && requested != caller.tenant) {
    return absl::PermissionDeniedError(
        absl::StrCat("API key \"", caller.key_name, "\" is for tenant ", caller.tenant, " only"));
  }
  return caller.tenant;
}

absl::StatusOr<std::string> TenantOfNew(const Caller& caller, std::string_view requested,
                                        bool required) {
  if (caller.all_tenants()) {
    if (requested.empty() && required) return absl::InvalidArgumentError("tenant_id is required");
    return std::string(requested);
  }
  return TenantFilter(caller, requested);
}

absl::Status RequireAllTenants(const Caller& caller, std::string_view what) {
  if (caller.all_tenants()) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("API key \"", caller.key_name,
                                                  "\" is for tenant ", caller.tenant, "; ",
                                                  Sv(what), " needs a key for every tenant"));
}

absl::Status NotVisible(const Caller& caller, std::string_view kind, std::string_view id,
                        absl::Status status) {
  if (caller.all_tenants()) return status;
  return absl::PermissionDeniedError(absl::StrCat(Sv(kind), " ", Sv(QuoteForLog(id, 64)),
                                                  " is not one of tenant ", caller.tenant, "'s"));
}

}  // namespace wasentinel
