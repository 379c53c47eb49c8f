#include "wasentinel/common/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "wasentinel/common/bytes.h"

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
    case Scope::kRead:
      return "read";
    case Scope::kOperate:
      return "operate";
    case Scope::kAdmin:
      return "admin";
  }
  return "unknown";
}

absl::StatusOr<ApiKeys> ApiKeys::FromConfig(std::string_view config) {
  ApiKeys keys;
  int index = 0;
  for (absl::string_view raw : absl::StrSplit(Sv(config), ',', absl::SkipWhitespace())) {
    ++index;
    std::vector<std::string> parts = absl::StrSplit(absl::StripAsciiWhitespace(raw), ':');
    if (parts.size() != 3 || parts[0].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "API key entry ", index, " is not NAME:SCOPE:KEY (scope read, operate or admin)"));
    }
    Entry e;
    e.name = parts[0];
    if (parts[1] == "read") {
      e.scope = Scope::kRead;
    } else if (parts[1] == "operate") {
      e.scope = Scope::kOperate;
    } else if (parts[1] == "admin") {
      e.scope = Scope::kAdmin;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("API key \"", e.name, "\": scope \"", parts[1],
                                                     "\" is not read, operate or admin"));
    }
    if (parts[2].size() < 16) {
      return absl::InvalidArgumentError(
          absl::StrCat("API key \"", e.name, "\" is shorter than 16 characters"));
    }
    for (const auto& other : keys.keys_) {
      if (other.name == e.name) {
        return absl::InvalidArgumentError(absl::StrCat("API key name \"", e.name, "\" repeats"));
      }
    }
    e.hash = Hash(parts[2]);
    OPENSSL_cleanse(parts[2].data(), parts[2].size());
    keys.keys_.push_back(std::move(e));
  }
  return keys;
}

absl::StatusOr<std::string> ApiKeys::Authorize(std::string_view x_api_key,
                                               std::string_view authorization, Scope needed) const {
  if (keys_.empty()) return std::string("anonymous");
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
  if (static_cast<int>(match->scope) < static_cast<int>(needed)) {
    return absl::PermissionDeniedError(absl::StrCat("API key \"", match->name, "\" has scope ",
                                                    Sv(ScopeName(match->scope)),
                                                    "; this call needs ", Sv(ScopeName(needed))));
  }
  return match->name;
}

}  // namespace wasentinel
