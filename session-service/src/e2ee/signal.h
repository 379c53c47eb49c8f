// The Signal protocol as WhatsApp uses it, on Debian's libsignal-protocol-c (2.3.3: ciphertext
// version 3, the WhisperText / WhisperRatchet / WhisperGroup KDFs, sender keys), wrapped in RAII
// C++ types. The protocol layer's neighbour (session-service/src/wa/ speaks the connection;
// this part encrypts what travels inside it), shared with wa-sim.
//
// Keys: 32 bytes on WhatsApp's wire, 33 (0x05 ‖ key) inside libsignal; every function here
// takes and gives the 32-byte form and converts at the boundary. Records (sessions, pre-keys,
// signed pre-keys, sender keys) are libsignal's own serialisations, stored as opaque bytes by a
// Store. Addresses: a WhatsApp device is (user, device id), e.g. ("15551234567", 3); groups
// key their sender keys by (group id, sender address).
//
// Sources: libsignal-protocol-c's headers (/usr/include/signal); whatsmeow store/ and
// prekeys.go, Baileys src/Signal/libsignal.ts (facts: key forms, padding, prekey ids).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "wasentinel/common/bytes.h"

struct signal_context;
struct signal_protocol_store_context;

namespace wasentinel::signal {

/// One device of an account: the user part of its JID and its device id.
struct Address {
  std::string name;    ///< "15551234567" (or a LID user)
  int32_t device = 0;  ///< 0 is the phone
  bool operator==(const Address&) const = default;
};

/// A Curve25519 key pair, 32 bytes each (the private key clamped).
struct KeyPair {
  Bytes pub;
  Bytes priv;
};

/// The long-term identity of this device and its registration id (1..16380).
struct Identity {
  KeyPair key;
  uint32_t registration_id = 0;
};

/// A one-time pre-key: its id (1..0xFFFFFE, never reused) and key pair.
struct PreKey {
  uint32_t id = 0;
  KeyPair key;
};

/// The signed pre-key: its id, key pair, and the identity key's signature of 0x05 ‖ pub.
struct SignedPreKey {
  uint32_t id = 0;
  KeyPair key;
  Bytes signature;  ///< 64 bytes
};

/// What a device publishes so others can start a session with it (WhatsApp's
/// `<iq xmlns="encrypt" type="get">` answer). Keys 32 bytes.
struct PreKeyBundle {
  uint32_t registration_id = 0;
  int32_t device = 0;
  std::optional<PreKey> pre_key;  ///< only `id` and `key.pub` are used
  uint32_t signed_pre_key_id = 0;
  Bytes signed_pre_key_pub;
  Bytes signed_pre_key_signature;
  Bytes identity_pub;
};

/// What a device keeps: its identity, its pre-keys, sessions with others, others' identities
/// and sender keys. Every method answers an error only when the storage itself fails
/// (UNAVAILABLE, INTERNAL); "not found" is an empty optional. Called from libsignal's
/// operations, mostly under the Context's lock (not all: HasSession's lookup takes none), so a
/// Store is used by one Protocol at a time.
class Store {
 public:
  virtual ~Store() = default;

  virtual absl::StatusOr<Identity> LocalIdentity() = 0;
  /// Remembers `identity_pub` as `address`'s identity; answers whether it replaced another.
  virtual absl::StatusOr<bool> SaveIdentity(const Address& address, ByteView identity_pub) = 0;
  /// Whether `identity_pub` may be used for `address`: unknown (first use) or the one saved.
  virtual absl::StatusOr<bool> IsTrustedIdentity(const Address& address, ByteView identity_pub) = 0;

  virtual absl::StatusOr<std::optional<Bytes>> LoadPreKey(uint32_t id) = 0;
  virtual absl::Status StorePreKey(uint32_t id, ByteView record) = 0;
  virtual absl::Status RemovePreKey(uint32_t id) = 0;
  virtual absl::StatusOr<std::optional<Bytes>> LoadSignedPreKey(uint32_t id) = 0;
  virtual absl::Status StoreSignedPreKey(uint32_t id, ByteView record) = 0;

  virtual absl::StatusOr<std::optional<Bytes>> LoadSession(const Address& address) = 0;
  virtual absl::Status StoreSession(const Address& address, ByteView record) = 0;
  /// Every device id of `name` that has a session.
  virtual absl::StatusOr<std::vector<int32_t>> SessionDevices(const std::string& name) = 0;
  virtual absl::Status DeleteSession(const Address& address) = 0;
  virtual absl::Status DeleteAllSessions(const std::string& name) = 0;

  virtual absl::StatusOr<std::optional<Bytes>> LoadSenderKey(const std::string& group,
                                                             const Address& sender) = 0;
  virtual absl::Status StoreSenderKey(const std::string& group, const Address& sender,
                                      ByteView record) = 0;
};

/// libsignal's global context: the crypto provider (OpenSSL and libsodium, stateless) and the
/// lock libsignal takes around its session and group operations. Shareable across threads; key
/// generation and (de)serialisation take no lock and need none.
class Context {
 public:
  /// INTERNAL if libsignal cannot be set up (out of memory).
  static absl::StatusOr<std::unique_ptr<Context>> Create();
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  signal_context* get() const { return ctx_; }

  /// A fresh identity key pair and registration id (1..16380, libsignal's range).
  absl::StatusOr<Identity> GenerateIdentity();
  /// `count` one-time pre-keys with ids `first_id`, first_id + 1, … wrapping past 0xFFFFFE to 1
  /// (libsignal keeps a pre-key with id 0xFFFFFF after use, as a last-resort key, so that id is
  /// never handed out). INVALID_ARGUMENT for a count over 1000 or a first id out of range.
  absl::StatusOr<std::vector<PreKey>> GeneratePreKeys(uint32_t first_id, uint32_t count);
  /// A signed pre-key with id `id`, signed by `identity`.
  absl::StatusOr<SignedPreKey> GenerateSignedPreKey(const Identity& identity, uint32_t id);

  /// libsignal's serialisation of a pre-key record, for a Store.
  absl::StatusOr<Bytes> PreKeyRecord(const PreKey& key);
  absl::StatusOr<Bytes> SignedPreKeyRecord(const SignedPreKey& key, uint64_t timestamp_ms);

 private:
  struct Impl;
  explicit Context(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  signal_context* ctx_ = nullptr;
};

/// The two kinds of 1:1 ciphertext, as WhatsApp's `<enc type>` names them.
enum class MessageType { kPreKey, kWhisper };  ///< "pkmsg", "msg"

/// `kPreKey` → "pkmsg", `kWhisper` → "msg".
const char* MessageTypeName(MessageType type);

struct Ciphertext {
  MessageType type;
  Bytes bytes;
};

/// One device's view of the protocol: a Context and a Store joined as libsignal's store
/// context. Not thread-safe by itself beyond the Context's lock; give each session one.
///
/// Errors (libsignal's codes): INVALID_ARGUMENT a malformed, truncated or tampered message
/// (libsignal reports a 1:1 MAC that does not verify as an invalid message), a bad key, a
/// bundle whose signature does not verify; DATA_LOSS where libsignal names a bad MAC;
/// ALREADY_EXISTS a message already decrypted (a duplicate); NOT_FOUND no session, or a pre-key id
/// this device does not have; FAILED_PRECONDITION an identity that differs from the one known
/// (untrusted); the Store's own errors as they are, marked (IsStoreError).
class Protocol {
 public:
  static absl::StatusOr<std::unique_ptr<Protocol>> Create(Context& context, Store& store);
  ~Protocol();
  Protocol(const Protocol&) = delete;
  Protocol& operator=(const Protocol&) = delete;

  /// Starts a session with `address` from its bundle (the sender's side of X3DH).
  absl::Status ProcessBundle(const Address& address, const PreKeyBundle& bundle);
  absl::StatusOr<bool> HasSession(const Address& address);

  /// Encrypts `padded` (see Pad) for `address`: a pre-key message until the other side
  /// answered, then whisper messages.
  absl::StatusOr<Ciphertext> Encrypt(const Address& address, ByteView padded);
  /// Decrypts a message from `address`; the answer is still padded (see Unpad).
  absl::StatusOr<Bytes> Decrypt(const Address& address, MessageType type, ByteView ciphertext);

  /// This sender's distribution message for `group` (creating its sender key on first use):
  /// what goes to each member inside a 1:1 message.
  absl::StatusOr<Bytes> SenderKeyDistribution(const std::string& group, const Address& self);
  /// Takes `sender`'s distribution message for `group`.
  absl::Status ProcessSenderKeyDistribution(const std::string& group, const Address& sender,
                                            ByteView message);
  /// A group message ("skmsg") from this sender (`self`) to `group`.
  absl::StatusOr<Bytes> GroupEncrypt(const std::string& group, const Address& self,
                                     ByteView padded);
  absl::StatusOr<Bytes> GroupDecrypt(const std::string& group, const Address& sender,
                                     ByteView ciphertext);

  struct Impl;  ///< libsignal's store callbacks reach the Store through it (signal.cc)

 private:
  explicit Protocol(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// A Protocol call failed because its Store did (a database that did not answer, a record that
/// does not open), not because of the message: the caller may try the same message again.
bool IsStoreError(const absl::Status& status);

/// WhatsApp's padding of a plaintext before encryption: n bytes of value n, n random in
/// 1..15 (whatsmeow send.go padMessage). `pad` (1..255) fixes n, for tests.
Bytes Pad(ByteView plaintext, std::optional<uint8_t> pad = std::nullopt);
/// Removes it. INVALID_ARGUMENT when the last byte is 0, exceeds the length, or the padding's
/// bytes differ from it.
absl::StatusOr<Bytes> Unpad(ByteView padded);

/// libsignal's status code `code` as a Status naming what was being done.
absl::Status SignalStatus(int code, std::string_view doing);

}  // namespace wasentinel::signal
