#include "journal_store.h"

#include <utility>

#include "wasentinel/common/status_macros.h"

namespace wasentinel::signal {
namespace {

template <class Map, class Key>
std::optional<Bytes> Find(const Map& map, const Key& key) {
  auto it = map.find(key);
  if (it == map.end()) return std::nullopt;
  return it->second;
}

Bytes Copy(ByteView b) { return Bytes(b.begin(), b.end()); }

}  // namespace

JournalStore::JournalStore(Identity identity, Image image, bool journal)
    : identity_(std::move(identity)), journaling_(journal), image_(std::move(image)) {}

std::vector<Change> JournalStore::TakeJournal() {
  std::lock_guard lock(mu_);
  return std::exchange(journal_, {});
}

size_t JournalStore::pre_key_count() const {
  std::lock_guard lock(mu_);
  return image_.pre_keys.size();
}

void JournalStore::Record(Change change) {
  if (journaling_) journal_.push_back(std::move(change));
}

absl::StatusOr<Identity> JournalStore::LocalIdentity() { return identity_; }

absl::StatusOr<bool> JournalStore::SaveIdentity(const Address& a, ByteView pub) {
  std::lock_guard lock(mu_);
  Bytes& slot = image_.identities[{a.name, a.device}];
  const bool replaced = !slot.empty() && slot != Copy(pub);
  if (slot != Copy(pub)) {
    slot = Copy(pub);
    Record({Change::Kind::kIdentity, 0, a, {}, slot});
  }
  return replaced;
}

absl::StatusOr<bool> JournalStore::IsTrustedIdentity(const Address& a, ByteView pub) {
  std::lock_guard lock(mu_);
  auto it = image_.identities.find({a.name, a.device});
  return it == image_.identities.end() || it->second == Copy(pub);
}

void JournalStore::set_pre_key_loader(PreKeyLoader loader) {
  std::lock_guard lock(mu_);
  pre_key_loader_ = std::move(loader);
}

absl::StatusOr<std::optional<Bytes>> JournalStore::LoadPreKey(uint32_t id) {
  std::lock_guard lock(mu_);
  std::optional<Bytes> found = Find(image_.pre_keys, id);
  if (found || !pre_key_loader_) return found;
  WAS_ASSIGN_OR_RETURN(found, pre_key_loader_(id));
  if (found) image_.pre_keys[id] = *found;
  return found;
}

absl::Status JournalStore::StorePreKey(uint32_t id, ByteView record) {
  std::lock_guard lock(mu_);
  image_.pre_keys[id] = Copy(record);
  Record({Change::Kind::kPreKey, id, {}, {}, Copy(record)});
  return absl::OkStatus();
}

absl::Status JournalStore::RemovePreKey(uint32_t id) {
  std::lock_guard lock(mu_);
  // With a loader the key may be stored without ever having been in memory.
  if (image_.pre_keys.erase(id) || pre_key_loader_) {
    Record({Change::Kind::kPreKey, id, {}, {}, std::nullopt});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Bytes>> JournalStore::LoadSignedPreKey(uint32_t id) {
  std::lock_guard lock(mu_);
  return Find(image_.signed_pre_keys, id);
}

absl::Status JournalStore::StoreSignedPreKey(uint32_t id, ByteView record) {
  std::lock_guard lock(mu_);
  image_.signed_pre_keys[id] = Copy(record);
  Record({Change::Kind::kSignedPreKey, id, {}, {}, Copy(record)});
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Bytes>> JournalStore::LoadSession(const Address& a) {
  std::lock_guard lock(mu_);
  return Find(image_.sessions, std::make_pair(a.name, a.device));
}

absl::Status JournalStore::StoreSession(const Address& a, ByteView record) {
  std::lock_guard lock(mu_);
  image_.sessions[{a.name, a.device}] = Copy(record);
  Record({Change::Kind::kSession, 0, a, {}, Copy(record)});
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> JournalStore::SessionDevices(const std::string& name) {
  std::lock_guard lock(mu_);
  std::vector<int32_t> out;
  for (auto it = image_.sessions.lower_bound({name, INT32_MIN});
       it != image_.sessions.end() && it->first.first == name; ++it) {
    out.push_back(it->first.second);
  }
  return out;
}

absl::Status JournalStore::DeleteSession(const Address& a) {
  std::lock_guard lock(mu_);
  if (image_.sessions.erase({a.name, a.device})) {
    Record({Change::Kind::kSession, 0, a, {}, std::nullopt});
  }
  return absl::OkStatus();
}

absl::Status JournalStore::DeleteAllSessions(const std::string& name) {
  std::lock_guard lock(mu_);
  for (auto it = image_.sessions.lower_bound({name, INT32_MIN});
       it != image_.sessions.end() && it->first.first == name;) {
    Record({Change::Kind::kSession, 0, {name, it->first.second}, {}, std::nullopt});
    it = image_.sessions.erase(it);
  }
  return absl::OkStatus();
}

void JournalStore::ForgetPeer(const std::string& name) {
  (void)DeleteAllSessions(name);
  std::lock_guard lock(mu_);
  for (auto it = image_.identities.lower_bound({name, INT32_MIN});
       it != image_.identities.end() && it->first.first == name;) {
    Record({Change::Kind::kIdentity, 0, {name, it->first.second}, {}, std::nullopt});
    it = image_.identities.erase(it);
  }
}

absl::StatusOr<std::optional<Bytes>> JournalStore::LoadSenderKey(const std::string& group,
                                                                 const Address& sender) {
  std::lock_guard lock(mu_);
  return Find(image_.sender_keys, std::make_tuple(group, sender.name, sender.device));
}

absl::Status JournalStore::StoreSenderKey(const std::string& group, const Address& sender,
                                          ByteView record) {
  std::lock_guard lock(mu_);
  image_.sender_keys[{group, sender.name, sender.device}] = Copy(record);
  Record({Change::Kind::kSenderKey, 0, sender, group, Copy(record)});
  return absl::OkStatus();
}

}  // namespace wasentinel::signal
