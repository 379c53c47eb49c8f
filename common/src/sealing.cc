#include "wasentinel/common/sealing.h"

#include <sodium.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace wasentinel {
namespace {

absl::StatusOr<std::array<uint8_t, 32>> ParseKeyMaterial(std::string_view text) {
  absl::StatusOr<Bytes> raw = text.size() == 64 ? HexDecode(text) : Base64Decode(text);
  if (!raw.ok() || raw->size() != 32) {
    return absl::InvalidArgumentError(
        "a sealing key must be 32 bytes, written as 64 hex digits or base64");
  }
  std::array<uint8_t, 32> key{};
  std::copy(raw->begin(), raw->end(), key.begin());
  return key;
}

}  // namespace

absl::StatusOr<Sealer> Sealer::FromConfig(std::string_view config) {
  std::vector<Key> keys;
  for (absl::string_view part : absl::StrSplit(Sv(config), ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    Key k;
    absl::string_view material = part;
    if (size_t colon = part.find(':'); colon != absl::string_view::npos) {
      k.id = std::string(part.substr(0, colon));
      material = part.substr(colon + 1);
    } else {
      k.id = absl::StrCat("k", keys.size() + 1);
    }
    auto key = ParseKeyMaterial(std::string_view(material.data(), material.size()));
    if (!key.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sealing key \"", k.id, "\": ", key.status().message()));
    }
    k.key = *key;
    keys.push_back(std::move(k));
  }
  return Create(std::move(keys));
}

absl::StatusOr<Sealer> Sealer::Create(std::vector<Key> keys) {
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  if (keys.empty()) return absl::InvalidArgumentError("no sealing key configured");
  absl::flat_hash_set<std::string> ids;
  for (const Key& k : keys) {
    if (k.id.empty() || !ids.insert(k.id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("sealing key ids must be unique and non-empty: \"", k.id, "\""));
    }
  }
  return Sealer(std::move(keys));
}

Sealer::Sealed Sealer::Seal(ByteView plaintext) const {
  const Key& k = keys_.front();
  Sealed out{k.id,
             Bytes(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plaintext.size())};
  randombytes_buf(out.blob.data(), crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(out.blob.data() + crypto_secretbox_NONCEBYTES, plaintext.data(),
                        plaintext.size(), out.blob.data(), k.key.data());
  return out;
}

absl::StatusOr<Bytes> Sealer::Open(std::string_view key_id, ByteView blob) const {
  const Key* key = nullptr;
  for (const Key& k : keys_) {
    if (k.id == key_id) key = &k;
  }
  if (!key) {
    return absl::FailedPreconditionError(
        absl::StrCat("sealed with key \"", Sv(key_id), "\", which is not configured"));
  }
  if (blob.size() < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
    return absl::DataLossError("sealed value is truncated");
  }
  Bytes out(blob.size() - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES);
  if (crypto_secretbox_open_easy(out.data(), blob.data() + crypto_secretbox_NONCEBYTES,
                                 blob.size() - crypto_secretbox_NONCEBYTES, blob.data(),
                                 key->key.data()) != 0) {
    return absl::DataLossError(
        absl::StrCat("sealed value does not open under key \"", Sv(key_id), "\" (wrong key?)"));
  }
  return out;
}

}  // namespace wasentinel
