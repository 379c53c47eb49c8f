// A Store over an in-memory image of one device's Signal state that records every change in a
// journal, so the caller writes them where and when it must: session-service persists a
// decryption's changes in the same PostgreSQL transaction as the message, under the session's
// lease (session-service/src/session/pg_signal_store.h), and only then acknowledges it. If that
// transaction fails, the caller drops this store and loads the image again.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "signal.h"

namespace wasentinel::signal {

/// Everything a device keeps besides its identity (which comes from its credentials).
struct Image {
  std::map<uint32_t, Bytes> pre_keys;         ///< id → libsignal pre-key record
  std::map<uint32_t, Bytes> signed_pre_keys;  ///< id → libsignal signed pre-key record
  std::map<std::pair<std::string, int32_t>, Bytes> sessions;    ///< (user, device) → record
  std::map<std::pair<std::string, int32_t>, Bytes> identities;  ///< (user, device) → 32 bytes
  /// (group, user, device) → libsignal sender key record
  std::map<std::tuple<std::string, std::string, int32_t>, Bytes> sender_keys;
};

/// One change to persist. `value` empty: the row is deleted.
struct Change {
  enum class Kind { kPreKey, kSignedPreKey, kSession, kIdentity, kSenderKey };
  Kind kind;
  uint32_t id = 0;    ///< pre-keys
  Address address;    ///< sessions, identities; a sender key's sender
  std::string group;  ///< sender keys
  std::optional<Bytes> value;
};

/// Identities are trusted on first use: one that differs from the saved one is untrusted until
/// SaveIdentity replaces it (the caller does on WhatsApp's identity-change notification).
class JournalStore : public Store {
 public:
  /// `journal` false: changes are applied to the image only (nothing to persist).
  explicit JournalStore(Identity identity, Image image = {}, bool journal = true);

  /// The changes since the last call, oldest first (a key changed twice appears twice).
  std::vector<Change> TakeJournal();
  /// Forgets `name`'s sessions and identities, on every device: what WhatsApp's identity-change
  /// notification calls for (the contact reinstalled; the next message starts a new session
  /// and its new identity is trusted on first use).
  void ForgetPeer(const std::string& name);
  /// One-time pre-keys in memory.
  size_t pre_key_count() const;
  /// Where a one-time pre-key not in the image is read from (the image was loaded without
  /// them); its answer is kept until the key is removed. An error fails the decryption that
  /// asked, marked as the store's (IsStoreError, signal.h), not taken for a bad message.
  using PreKeyLoader = std::function<absl::StatusOr<std::optional<Bytes>>(uint32_t id)>;
  void set_pre_key_loader(PreKeyLoader loader);

  absl::StatusOr<Identity> LocalIdentity() override;
  absl::StatusOr<bool> SaveIdentity(const Address& address, ByteView identity_pub) override;
  absl::StatusOr<bool> IsTrustedIdentity(const Address& address, ByteView identity_pub) override;
  absl::StatusOr<std::optional<Bytes>> LoadPreKey(uint32_t id) override;
  absl::Status StorePreKey(uint32_t id, ByteView record) override;
  absl::Status RemovePreKey(uint32_t id) override;
  absl::StatusOr<std::optional<Bytes>> LoadSignedPreKey(uint32_t id) override;
  absl::Status StoreSignedPreKey(uint32_t id, ByteView record) override;
  absl::StatusOr<std::optional<Bytes>> LoadSession(const Address& address) override;
  absl::Status StoreSession(const Address& address, ByteView record) override;
  absl::StatusOr<std::vector<int32_t>> SessionDevices(const std::string& name) override;
  absl::Status DeleteSession(const Address& address) override;
  absl::Status DeleteAllSessions(const std::string& name) override;
  absl::StatusOr<std::optional<Bytes>> LoadSenderKey(const std::string& group,
                                                     const Address& sender) override;
  absl::Status StoreSenderKey(const std::string& group, const Address& sender,
                              ByteView record) override;

 private:
  void Record(Change change);

  mutable std::mutex mu_;
  const Identity identity_;
  const bool journaling_;
  Image image_;
  PreKeyLoader pre_key_loader_;
  std::vector<Change> journal_;
};

/// A JournalStore that keeps no journal: a device in memory only (tests, tools, wa-sim's
/// simulated phones).
class MemoryStore final : public JournalStore {
 public:
  explicit MemoryStore(Identity identity) : JournalStore(std::move(identity), {}, false) {}
};

}  // namespace wasentinel::signal
