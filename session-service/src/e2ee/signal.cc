#include "signal.h"

#include <signal/curve.h>
#include <signal/group_cipher.h>
#include <signal/group_session_builder.h>
#include <signal/key_helper.h>
#include <signal/protocol.h>
#include <signal/ratchet.h>
#include <signal/session_builder.h>
#include <signal/session_cipher.h>
#include <signal/session_pre_key.h>
#include <signal/signal_protocol.h>
#include <sodium.h>

#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "crypto_provider.h"

namespace wasentinel::signal {
namespace {

// Owning pointers to libsignal's reference-counted objects and buffers.
struct Unref {
  void operator()(void* p) const {
    if (p) signal_type_unref(static_cast<signal_type_base*>(p));
  }
};
template <class T>
using Ref = std::unique_ptr<T, Unref>;

struct BufferFree {
  void operator()(signal_buffer* b) const { signal_buffer_bzero_free(b); }
};
using Buffer = std::unique_ptr<signal_buffer, BufferFree>;

Bytes ToBytes(const signal_buffer* b) {
  if (!b) return {};
  const uint8_t* d = signal_buffer_const_data(b);
  return Bytes(d, d + signal_buffer_len(b));
}

constexpr uint8_t kDjbType = 0x05;

// 0x05 ‖ key: libsignal's serialised public key.
Bytes Prefixed(ByteView pub) {
  Bytes out;
  out.reserve(pub.size() + 1);
  out.push_back(kDjbType);
  out.insert(out.end(), pub.begin(), pub.end());
  return out;
}

// The 32-byte form of a serialised public key (33 bytes with 0x05, or already 32).
Bytes Unprefixed(ByteView key) {
  if (key.size() == 33 && key[0] == kDjbType) return Bytes(key.begin() + 1, key.end());
  return Bytes(key.begin(), key.end());
}

absl::StatusOr<Ref<ec_public_key>> PublicKey(ByteView pub32, signal_context* ctx,
                                             std::string_view what) {
  if (pub32.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(what), " must be 32 bytes, not ", pub32.size()));
  }
  const Bytes full = Prefixed(pub32);
  ec_public_key* key = nullptr;
  if (int rc = curve_decode_point(&key, full.data(), full.size(), ctx); rc < 0) {
    return SignalStatus(rc, absl::StrCat("reading ", Sv(what)));
  }
  return Ref<ec_public_key>(key);
}

absl::StatusOr<Ref<ec_private_key>> PrivateKey(ByteView priv, signal_context* ctx) {
  if (priv.size() != 32) return absl::InvalidArgumentError("a private key must be 32 bytes");
  ec_private_key* key = nullptr;
  if (int rc = curve_decode_private_point(&key, priv.data(), priv.size(), ctx); rc < 0) {
    return SignalStatus(rc, "reading a private key");
  }
  return Ref<ec_private_key>(key);
}

KeyPair PairOf(const ec_key_pair* pair) {
  signal_buffer* pub = nullptr;
  signal_buffer* priv = nullptr;
  ec_public_key_serialize(&pub, ec_key_pair_get_public(pair));
  ec_private_key_serialize(&priv, ec_key_pair_get_private(pair));
  Buffer pub_owned(pub), priv_owned(priv);
  return {Unprefixed(ToBytes(pub)), ToBytes(priv)};
}

absl::StatusOr<Ref<ec_key_pair>> KeyPairOf(const KeyPair& pair, signal_context* ctx) {
  auto pub = PublicKey(pair.pub, ctx, "a public key");
  if (!pub.ok()) return pub.status();
  auto priv = PrivateKey(pair.priv, ctx);
  if (!priv.ok()) return priv.status();
  ec_key_pair* out = nullptr;
  if (int rc = ec_key_pair_create(&out, pub->get(), priv->get()); rc < 0) {
    return SignalStatus(rc, "joining a key pair");
  }
  return Ref<ec_key_pair>(out);
}

std::string AddressName(const signal_protocol_address* a) {
  return std::string(a->name, a->name_len);
}

Address AddressOf(const signal_protocol_address* a) { return {AddressName(a), a->device_id}; }

}  // namespace

absl::Status SignalStatus(int code, std::string_view doing) {
  const std::string what = absl::StrCat(Sv(doing), ": ");
  switch (code) {
    case SG_ERR_NOMEM:
      return absl::ResourceExhaustedError(what + "out of memory");
    case SG_ERR_INVAL:
      return absl::InvalidArgumentError(what + "invalid argument");
    case SG_ERR_DUPLICATE_MESSAGE:
      return absl::AlreadyExistsError(what + "a message already decrypted (duplicate)");
    case SG_ERR_INVALID_KEY:
      return absl::InvalidArgumentError(what + "invalid key");
    case SG_ERR_INVALID_KEY_ID:
      return absl::NotFoundError(what + "no such pre-key (used up or never ours)");
    case SG_ERR_INVALID_MAC:
      return absl::DataLossError(what + "the MAC does not verify");
    case SG_ERR_INVALID_MESSAGE:
      return absl::InvalidArgumentError(what + "invalid message");
    case SG_ERR_INVALID_VERSION:
      return absl::InvalidArgumentError(what + "unsupported message version");
    case SG_ERR_LEGACY_MESSAGE:
      return absl::InvalidArgumentError(what + "a legacy (version 2) message");
    case SG_ERR_NO_SESSION:
      return absl::NotFoundError(what + "no session");
    case SG_ERR_STALE_KEY_EXCHANGE:
      return absl::FailedPreconditionError(what + "stale key exchange");
    case SG_ERR_UNTRUSTED_IDENTITY:
      return absl::FailedPreconditionError(what + "the identity differs from the one known");
    case SG_ERR_VRF_SIG_VERIF_FAILED:
    case SG_ERR_INVALID_PROTO_BUF:
      return absl::InvalidArgumentError(what + "malformed (not a Signal message of this kind)");
    default:
      return absl::InternalError(absl::StrCat(what, "libsignal error ", code));
  }
}

const char* MessageTypeName(MessageType type) {
  return type == MessageType::kPreKey ? "pkmsg" : "msg";
}

Bytes Pad(ByteView plaintext, std::optional<uint8_t> pad) {
  uint8_t n = 0;
  if (pad && *pad > 0) {
    n = *pad;
  } else {
    // Random 1..15: whatsmeow send.go padMessage.
    randombytes_buf(&n, 1);
    n &= 0x0f;
    if (n == 0) n = 0x0f;
  }
  Bytes out(plaintext.begin(), plaintext.end());
  out.insert(out.end(), n, n);
  return out;
}

absl::StatusOr<Bytes> Unpad(ByteView padded) {
  if (padded.empty()) return absl::InvalidArgumentError("an empty plaintext has no padding");
  const uint8_t n = padded.back();
  if (n == 0 || n > padded.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("padding of ", int{n}, " bytes in a plaintext of ", padded.size()));
  }
  for (size_t i = padded.size() - n; i < padded.size(); ++i) {
    if (padded[i] != n) return absl::InvalidArgumentError("the padding's bytes differ");
  }
  return Bytes(padded.begin(), padded.end() - n);
}

// ── Context ─────────────────────────────────────────────────────────────────────────────────

struct Context::Impl {
  std::recursive_mutex mu;  // libsignal locks re-entrantly
};

Context::Context(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Context::~Context() {
  if (ctx_) signal_context_destroy(ctx_);
}

absl::StatusOr<std::unique_ptr<Context>> Context::Create() {
  if (sodium_init() < 0) return absl::InternalError("libsodium could not be initialised");
  std::unique_ptr<Context> c(new Context(std::make_unique<Impl>()));
  if (int rc = signal_context_create(&c->ctx_, c->impl_.get()); rc < 0) {
    return SignalStatus(rc, "creating libsignal's context");
  }
  if (int rc = signal_context_set_crypto_provider(c->ctx_, &CryptoProvider()); rc < 0) {
    return SignalStatus(rc, "installing the crypto provider");
  }
  signal_context_set_locking_functions(
      c->ctx_, [](void* impl) { static_cast<Impl*>(impl)->mu.lock(); },
      [](void* impl) { static_cast<Impl*>(impl)->mu.unlock(); });
  return c;
}

absl::StatusOr<Identity> Context::GenerateIdentity() {
  ec_key_pair* pair = nullptr;
  if (int rc = curve_generate_key_pair(ctx_, &pair); rc < 0) {
    return SignalStatus(rc, "generating an identity key");
  }
  Ref<ec_key_pair> owned(pair);
  Identity id;
  id.key = PairOf(pair);
  if (int rc = signal_protocol_key_helper_generate_registration_id(&id.registration_id, 0, ctx_);
      rc < 0) {
    return SignalStatus(rc, "generating a registration id");
  }
  return id;
}

absl::StatusOr<std::vector<PreKey>> Context::GeneratePreKeys(uint32_t first_id, uint32_t count) {
  if (count > 1000) return absl::InvalidArgumentError("at most 1000 pre-keys at once");
  if (first_id == 0 || first_id >= PRE_KEY_MEDIUM_MAX_VALUE) {
    return absl::InvalidArgumentError("pre-key ids are 1..16777214");
  }
  std::vector<PreKey> out;
  out.reserve(count);
  uint32_t id = first_id;
  for (uint32_t i = 0; i < count; ++i) {
    ec_key_pair* pair = nullptr;
    if (int rc = curve_generate_key_pair(ctx_, &pair); rc < 0) {
      return SignalStatus(rc, "generating a pre-key");
    }
    Ref<ec_key_pair> owned(pair);
    out.push_back({id, PairOf(pair)});
    id = id == PRE_KEY_MEDIUM_MAX_VALUE - 1 ? 1 : id + 1;
  }
  return out;
}

absl::StatusOr<SignedPreKey> Context::GenerateSignedPreKey(const Identity& identity, uint32_t id) {
  if (id == 0 || id > PRE_KEY_MEDIUM_MAX_VALUE) {
    return absl::InvalidArgumentError("signed pre-key ids are 1..16777215");
  }
  auto signer = PrivateKey(identity.key.priv, ctx_);
  if (!signer.ok()) return signer.status();
  ec_key_pair* pair = nullptr;
  if (int rc = curve_generate_key_pair(ctx_, &pair); rc < 0) {
    return SignalStatus(rc, "generating the signed pre-key");
  }
  Ref<ec_key_pair> owned(pair);
  SignedPreKey out;
  out.id = id;
  out.key = PairOf(pair);
  const Bytes message = Prefixed(out.key.pub);
  signal_buffer* signature = nullptr;
  if (int rc = curve_calculate_signature(ctx_, &signature, signer->get(), message.data(),
                                         message.size());
      rc < 0) {
    return SignalStatus(rc, "signing the signed pre-key");
  }
  Buffer owned_signature(signature);
  out.signature = ToBytes(signature);
  return out;
}

absl::StatusOr<Bytes> Context::PreKeyRecord(const PreKey& key) {
  auto pair = KeyPairOf(key.key, ctx_);
  if (!pair.ok()) return pair.status();
  session_pre_key* record = nullptr;
  if (int rc = session_pre_key_create(&record, key.id, pair->get()); rc < 0) {
    return SignalStatus(rc, "making a pre-key record");
  }
  Ref<session_pre_key> owned(record);
  signal_buffer* out = nullptr;
  if (int rc = session_pre_key_serialize(&out, record); rc < 0) {
    return SignalStatus(rc, "serialising a pre-key record");
  }
  Buffer owned_out(out);
  return ToBytes(out);
}

absl::StatusOr<Bytes> Context::SignedPreKeyRecord(const SignedPreKey& key, uint64_t timestamp_ms) {
  auto pair = KeyPairOf(key.key, ctx_);
  if (!pair.ok()) return pair.status();
  session_signed_pre_key* record = nullptr;
  if (int rc = session_signed_pre_key_create(&record, key.id, timestamp_ms, pair->get(),
                                             key.signature.data(), key.signature.size());
      rc < 0) {
    return SignalStatus(rc, "making a signed pre-key record");
  }
  Ref<session_signed_pre_key> owned(record);
  signal_buffer* out = nullptr;
  if (int rc = session_signed_pre_key_serialize(&out, record); rc < 0) {
    return SignalStatus(rc, "serialising a signed pre-key record");
  }
  Buffer owned_out(out);
  return ToBytes(out);
}

// ── Protocol ────────────────────────────────────────────────────────────────────────────────

namespace {
constexpr char kStoreErrorPayload[] = "type.wasentinel/signal-store";
}  // namespace

bool IsStoreError(const absl::Status& status) {
  return status.GetPayload(kStoreErrorPayload).has_value();
}

struct Protocol::Impl {
  Context& context;
  Store& store;
  signal_protocol_store_context* store_context = nullptr;
  // The Store's own error in the last callback: reported instead of libsignal's generic code.
  std::optional<absl::Status> store_error;

  Impl(Context& c, Store& s) : context(c), store(s) {}
  ~Impl() {
    if (store_context) signal_protocol_store_context_destroy(store_context);
  }

  signal_context* ctx() const { return context.get(); }

  // A Store answer in a callback: its value, or the error remembered and SG_ERR_UNKNOWN.
  template <class T>
  bool Check(const absl::StatusOr<T>& answer) {
    if (answer.ok()) return true;
    store_error = answer.status();
    return false;
  }
  bool Check(const absl::Status& st) {
    if (st.ok()) return true;
    store_error = st;
    return false;
  }
  // The result of a libsignal call: the Store's error if a callback failed, else `rc`'s.
  absl::Status Result(int rc, std::string_view doing) {
    if (store_error) {
      absl::Status st = *std::move(store_error);
      store_error.reset();
      st.SetPayload(kStoreErrorPayload, absl::Cord("1"));
      return st;
    }
    return rc < 0 ? SignalStatus(rc, doing) : absl::OkStatus();
  }
};

namespace {

using ProtocolImpl = Protocol::Impl;
ProtocolImpl& Of(void* user_data) { return *static_cast<ProtocolImpl*>(user_data); }

signal_buffer* Copy(const Bytes& b) { return signal_buffer_create(b.data(), b.size()); }

// libsignal's stores call these with the Protocol's Impl as user data.
const signal_protocol_session_store kSessionStore = {
    .load_session_func = [](signal_buffer** record, signal_buffer** user_record,
                            const signal_protocol_address* address, void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.LoadSession(AddressOf(address));
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      if (user_record) *user_record = nullptr;
      if (!*got) return 0;
      *record = Copy(**got);
      return 1;
    },
    .get_sub_device_sessions_func = [](signal_int_list** sessions, const char* name,
                                       size_t name_len, void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.SessionDevices(std::string(name, name_len));
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      signal_int_list* list = signal_int_list_alloc();
      if (!list) return SG_ERR_NOMEM;
      for (int32_t d : *got) {
        if (signal_int_list_push_back(list, d) < 0) {
          signal_int_list_free(list);
          return SG_ERR_NOMEM;
        }
      }
      *sessions = list;
      return static_cast<int>(got->size());
    },
    .store_session_func = [](const signal_protocol_address* address, uint8_t* record,
                             size_t record_len, uint8_t*, size_t, void* u) -> int {
      auto& p = Of(u);
      return p.Check(p.store.StoreSession(AddressOf(address), ByteView(record, record_len)))
                 ? 0
                 : SG_ERR_UNKNOWN;
    },
    .contains_session_func = [](const signal_protocol_address* address, void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.LoadSession(AddressOf(address));
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      return got->has_value() ? 1 : 0;
    },
    // 1 if a session was deleted, 0 if there was none.
    .delete_session_func = [](const signal_protocol_address* address, void* u) -> int {
      auto& p = Of(u);
      auto had = p.store.LoadSession(AddressOf(address));
      if (!p.Check(had)) return SG_ERR_UNKNOWN;
      if (!*had) return 0;
      return p.Check(p.store.DeleteSession(AddressOf(address))) ? 1 : SG_ERR_UNKNOWN;
    },
    // How many were deleted.
    .delete_all_sessions_func = [](const char* name, size_t name_len, void* u) -> int {
      auto& p = Of(u);
      const std::string user(name, name_len);
      auto devices = p.store.SessionDevices(user);
      if (!p.Check(devices)) return SG_ERR_UNKNOWN;
      return p.Check(p.store.DeleteAllSessions(user)) ? static_cast<int>(devices->size())
                                                      : SG_ERR_UNKNOWN;
    },
    .destroy_func = nullptr,
    .user_data = nullptr,
};

const signal_protocol_pre_key_store kPreKeyStore = {
    .load_pre_key = [](signal_buffer** record, uint32_t id, void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.LoadPreKey(id);
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      if (!*got) return SG_ERR_INVALID_KEY_ID;
      *record = Copy(**got);
      return 0;
    },
    .store_pre_key = [](uint32_t id, uint8_t* record, size_t len, void* u) -> int {
      auto& p = Of(u);
      return p.Check(p.store.StorePreKey(id, ByteView(record, len))) ? 0 : SG_ERR_UNKNOWN;
    },
    .contains_pre_key = [](uint32_t id, void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.LoadPreKey(id);
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      return got->has_value() ? 1 : 0;
    },
    .remove_pre_key = [](uint32_t id, void* u) -> int {
      auto& p = Of(u);
      return p.Check(p.store.RemovePreKey(id)) ? 0 : SG_ERR_UNKNOWN;
    },
    .destroy_func = nullptr,
    .user_data = nullptr,
};

const signal_protocol_signed_pre_key_store kSignedPreKeyStore = {
    .load_signed_pre_key = [](signal_buffer** record, uint32_t id, void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.LoadSignedPreKey(id);
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      if (!*got) return SG_ERR_INVALID_KEY_ID;
      *record = Copy(**got);
      return 0;
    },
    .store_signed_pre_key = [](uint32_t id, uint8_t* record, size_t len, void* u) -> int {
      auto& p = Of(u);
      return p.Check(p.store.StoreSignedPreKey(id, ByteView(record, len))) ? 0 : SG_ERR_UNKNOWN;
    },
    .contains_signed_pre_key = [](uint32_t id, void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.LoadSignedPreKey(id);
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      return got->has_value() ? 1 : 0;
    },
    .remove_signed_pre_key = [](uint32_t, void*) -> int { return 0; },  // kept: WhatsApp has one
    .destroy_func = nullptr,
    .user_data = nullptr,
};

const signal_protocol_identity_key_store kIdentityStore = {
    .get_identity_key_pair = [](signal_buffer** public_data, signal_buffer** private_data,
                                void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.LocalIdentity();
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      *public_data = Copy(Prefixed(got->key.pub));
      *private_data = Copy(got->key.priv);
      return 0;
    },
    .get_local_registration_id = [](void* u, uint32_t* id) -> int {
      auto& p = Of(u);
      auto got = p.store.LocalIdentity();
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      *id = got->registration_id;
      return 0;
    },
    .save_identity = [](const signal_protocol_address* address, uint8_t* key, size_t len,
                        void* u) -> int {
      if (!key) return 0;  // libsignal never removes one; nothing to do
      auto& p = Of(u);
      return p.Check(p.store.SaveIdentity(AddressOf(address), Unprefixed(ByteView(key, len))))
                 ? 0
                 : SG_ERR_UNKNOWN;
    },
    .is_trusted_identity = [](const signal_protocol_address* address, uint8_t* key, size_t len,
                              void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.IsTrustedIdentity(AddressOf(address), Unprefixed(ByteView(key, len)));
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      return *got ? 1 : 0;
    },
    .destroy_func = nullptr,
    .user_data = nullptr,
};

const signal_protocol_sender_key_store kSenderKeyStore = {
    .store_sender_key = [](const signal_protocol_sender_key_name* name, uint8_t* record, size_t len,
                           uint8_t*, size_t, void* u) -> int {
      auto& p = Of(u);
      return p.Check(p.store.StoreSenderKey(std::string(name->group_id, name->group_id_len),
                                            AddressOf(&name->sender), ByteView(record, len)))
                 ? 0
                 : SG_ERR_UNKNOWN;
    },
    .load_sender_key = [](signal_buffer** record, signal_buffer** user_record,
                          const signal_protocol_sender_key_name* name, void* u) -> int {
      auto& p = Of(u);
      auto got = p.store.LoadSenderKey(std::string(name->group_id, name->group_id_len),
                                       AddressOf(&name->sender));
      if (!p.Check(got)) return SG_ERR_UNKNOWN;
      if (user_record) *user_record = nullptr;
      if (!*got) return 0;
      *record = Copy(**got);
      return 1;
    },
    .destroy_func = nullptr,
    .user_data = nullptr,
};

// libsignal's address for `a` (borrowing its name).
signal_protocol_address Native(const Address& a) {
  return {a.name.data(), a.name.size(), a.device};
}

signal_protocol_sender_key_name SenderKeyName(const std::string& group, const Address& sender) {
  return {group.data(), group.size(), Native(sender)};
}

template <class Store>
Store WithUserData(Store store, void* user_data) {
  store.user_data = user_data;
  return store;
}

}  // namespace

Protocol::Protocol(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Protocol::~Protocol() = default;

absl::StatusOr<std::unique_ptr<Protocol>> Protocol::Create(Context& context, Store& store) {
  auto impl = std::make_unique<Impl>(context, store);
  signal_protocol_store_context* sc = nullptr;
  if (int rc = signal_protocol_store_context_create(&sc, context.get()); rc < 0) {
    return SignalStatus(rc, "creating the store context");
  }
  impl->store_context = sc;
  void* u = impl.get();
  const auto session = WithUserData(kSessionStore, u);
  const auto pre_key = WithUserData(kPreKeyStore, u);
  const auto signed_pre_key = WithUserData(kSignedPreKeyStore, u);
  const auto identity = WithUserData(kIdentityStore, u);
  const auto sender_key = WithUserData(kSenderKeyStore, u);
  signal_protocol_store_context_set_session_store(sc, &session);
  signal_protocol_store_context_set_pre_key_store(sc, &pre_key);
  signal_protocol_store_context_set_signed_pre_key_store(sc, &signed_pre_key);
  signal_protocol_store_context_set_identity_key_store(sc, &identity);
  signal_protocol_store_context_set_sender_key_store(sc, &sender_key);
  return std::unique_ptr<Protocol>(new Protocol(std::move(impl)));
}

absl::Status Protocol::ProcessBundle(const Address& address, const PreKeyBundle& b) {
  signal_context* ctx = impl_->ctx();
  auto identity = PublicKey(b.identity_pub, ctx, "the bundle's identity key");
  if (!identity.ok()) return identity.status();
  auto signed_key = PublicKey(b.signed_pre_key_pub, ctx, "the bundle's signed pre-key");
  if (!signed_key.ok()) return signed_key.status();
  if (b.signed_pre_key_signature.size() != 64) {
    return absl::InvalidArgumentError("the signed pre-key's signature must be 64 bytes");
  }
  Ref<ec_public_key> one_time;
  if (b.pre_key) {
    auto k = PublicKey(b.pre_key->key.pub, ctx, "the bundle's one-time pre-key");
    if (!k.ok()) return k.status();
    one_time = *std::move(k);
  }
  session_pre_key_bundle* bundle = nullptr;
  if (int rc = session_pre_key_bundle_create(
          &bundle, b.registration_id, b.device, b.pre_key ? b.pre_key->id : 0, one_time.get(),
          b.signed_pre_key_id, signed_key->get(), b.signed_pre_key_signature.data(),
          b.signed_pre_key_signature.size(), identity->get());
      rc < 0) {
    return SignalStatus(rc, "reading the pre-key bundle");
  }
  Ref<session_pre_key_bundle> owned(bundle);
  const signal_protocol_address native = Native(address);
  session_builder* builder = nullptr;
  if (int rc = session_builder_create(&builder, impl_->store_context, &native, ctx); rc < 0) {
    return SignalStatus(rc, "starting a session");
  }
  const int rc = session_builder_process_pre_key_bundle(builder, bundle);
  session_builder_free(builder);
  if (rc == SG_ERR_INVALID_KEY && !impl_->store_error) {
    return absl::InvalidArgumentError(
        "processing the pre-key bundle: the signed pre-key's signature does not verify");
  }
  return impl_->Result(rc, "processing the pre-key bundle");
}

absl::StatusOr<bool> Protocol::HasSession(const Address& address) {
  const signal_protocol_address native = Native(address);
  const int rc = signal_protocol_session_contains_session(impl_->store_context, &native);
  if (absl::Status st = impl_->Result(rc, "looking for a session"); !st.ok()) return st;
  return rc == 1;
}

absl::StatusOr<Ciphertext> Protocol::Encrypt(const Address& address, ByteView padded) {
  auto has = HasSession(address);
  if (!has.ok()) return has.status();
  if (!*has) {
    return absl::NotFoundError(absl::StrCat("encrypting: no session with ", address.name, ".",
                                            address.device, " (process its bundle first)"));
  }
  const signal_protocol_address native = Native(address);
  session_cipher* cipher = nullptr;
  if (int rc = session_cipher_create(&cipher, impl_->store_context, &native, impl_->ctx());
      rc < 0) {
    return SignalStatus(rc, "encrypting");
  }
  ciphertext_message* message = nullptr;
  const int rc = session_cipher_encrypt(cipher, padded.data(), padded.size(), &message);
  session_cipher_free(cipher);
  Ref<ciphertext_message> owned(message);
  if (absl::Status st = impl_->Result(rc, "encrypting"); !st.ok()) return st;
  const int type = ciphertext_message_get_type(message);
  return Ciphertext{type == CIPHERTEXT_PREKEY_TYPE ? MessageType::kPreKey : MessageType::kWhisper,
                    ToBytes(ciphertext_message_get_serialized(message))};
}

absl::StatusOr<Bytes> Protocol::Decrypt(const Address& address, MessageType type,
                                        ByteView ciphertext) {
  signal_context* ctx = impl_->ctx();
  const signal_protocol_address native = Native(address);
  session_cipher* cipher = nullptr;
  if (int rc = session_cipher_create(&cipher, impl_->store_context, &native, ctx); rc < 0) {
    return SignalStatus(rc, "decrypting");
  }
  std::unique_ptr<session_cipher, void (*)(session_cipher*)> owned_cipher(cipher,
                                                                          session_cipher_free);
  signal_buffer* plaintext = nullptr;
  int rc = 0;
  if (type == MessageType::kPreKey) {
    pre_key_signal_message* message = nullptr;
    rc = pre_key_signal_message_deserialize(&message, ciphertext.data(), ciphertext.size(), ctx);
    if (rc < 0) return SignalStatus(rc, "reading a pkmsg");
    Ref<pre_key_signal_message> owned(message);
    rc = session_cipher_decrypt_pre_key_signal_message(cipher, message, nullptr, &plaintext);
  } else {
    signal_message* message = nullptr;
    rc = signal_message_deserialize(&message, ciphertext.data(), ciphertext.size(), ctx);
    if (rc < 0) return SignalStatus(rc, "reading a msg");
    Ref<signal_message> owned(message);
    rc = session_cipher_decrypt_signal_message(cipher, message, nullptr, &plaintext);
  }
  Buffer owned_plaintext(plaintext);
  if (absl::Status st = impl_->Result(rc, absl::StrCat("decrypting a ", MessageTypeName(type)));
      !st.ok()) {
    return st;
  }
  return ToBytes(plaintext);
}

absl::StatusOr<Bytes> Protocol::SenderKeyDistribution(const std::string& group,
                                                      const Address& self) {
  const auto name = SenderKeyName(group, self);
  group_session_builder* builder = nullptr;
  if (int rc = group_session_builder_create(&builder, impl_->store_context, impl_->ctx()); rc < 0) {
    return SignalStatus(rc, "starting a sender key");
  }
  sender_key_distribution_message* message = nullptr;
  const int rc = group_session_builder_create_session(builder, &message, &name);
  group_session_builder_free(builder);
  Ref<sender_key_distribution_message> owned(message);
  if (absl::Status st = impl_->Result(rc, "making a sender key distribution"); !st.ok()) {
    return st;
  }
  return ToBytes(
      ciphertext_message_get_serialized(reinterpret_cast<const ciphertext_message*>(message)));
}

absl::Status Protocol::ProcessSenderKeyDistribution(const std::string& group, const Address& sender,
                                                    ByteView bytes) {
  signal_context* ctx = impl_->ctx();
  sender_key_distribution_message* message = nullptr;
  if (int rc =
          sender_key_distribution_message_deserialize(&message, bytes.data(), bytes.size(), ctx);
      rc < 0) {
    return SignalStatus(rc, "reading a sender key distribution");
  }
  Ref<sender_key_distribution_message> owned(message);
  const auto name = SenderKeyName(group, sender);
  group_session_builder* builder = nullptr;
  if (int rc = group_session_builder_create(&builder, impl_->store_context, ctx); rc < 0) {
    return SignalStatus(rc, "taking a sender key");
  }
  const int rc = group_session_builder_process_session(builder, &name, message);
  group_session_builder_free(builder);
  return impl_->Result(rc, "taking a sender key distribution");
}

absl::StatusOr<Bytes> Protocol::GroupEncrypt(const std::string& group, const Address& self,
                                             ByteView padded) {
  const auto name = SenderKeyName(group, self);
  group_cipher* cipher = nullptr;
  if (int rc = group_cipher_create(&cipher, impl_->store_context, &name, impl_->ctx()); rc < 0) {
    return SignalStatus(rc, "encrypting for a group");
  }
  ciphertext_message* message = nullptr;
  const int rc = group_cipher_encrypt(cipher, padded.data(), padded.size(), &message);
  group_cipher_free(cipher);
  Ref<ciphertext_message> owned(message);
  if (absl::Status st = impl_->Result(rc, "encrypting for a group"); !st.ok()) return st;
  return ToBytes(ciphertext_message_get_serialized(message));
}

absl::StatusOr<Bytes> Protocol::GroupDecrypt(const std::string& group, const Address& sender,
                                             ByteView ciphertext) {
  signal_context* ctx = impl_->ctx();
  sender_key_message* message = nullptr;
  if (int rc = sender_key_message_deserialize(&message, ciphertext.data(), ciphertext.size(), ctx);
      rc < 0) {
    return SignalStatus(rc, "reading an skmsg");
  }
  Ref<sender_key_message> owned(message);
  const auto name = SenderKeyName(group, sender);
  group_cipher* cipher = nullptr;
  if (int rc = group_cipher_create(&cipher, impl_->store_context, &name, ctx); rc < 0) {
    return SignalStatus(rc, "decrypting a group message");
  }
  signal_buffer* plaintext = nullptr;
  const int rc = group_cipher_decrypt(cipher, message, nullptr, &plaintext);
  group_cipher_free(cipher);
  Buffer owned_plaintext(plaintext);
  if (absl::Status st = impl_->Result(rc, "decrypting an skmsg"); !st.ok()) return st;
  return ToBytes(plaintext);
}

}  // namespace wasentinel::signal
