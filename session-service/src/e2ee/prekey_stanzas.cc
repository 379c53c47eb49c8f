#include "prekey_stanzas.h"

#include "absl/strings/str_cat.h"

namespace wasentinel::signal {
namespace {

using wa::MakeNode;
using wa::Node;

constexpr size_t kMaxUploadKeys = 2000;
constexpr size_t kMaxRequestUsers = 500;

Bytes BigEndian(uint32_t v, int bytes) {
  Bytes out(bytes);
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) out[i] = static_cast<uint8_t>(v & 0xff);
  return out;
}

// The bytes content of `n`, which must be `bytes` long.
absl::StatusOr<Bytes> ReadKey(const Node* n, size_t bytes, std::string_view what) {
  if (!n) return absl::InvalidArgumentError(absl::StrCat("no <", Sv(what), ">"));
  const ByteView b = n->ContentBytes();
  if (b.size() != bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("<", Sv(what), "> must be ", bytes, " bytes, not ", b.size()));
  }
  return Bytes(b.begin(), b.end());
}

// A big-endian number of `bytes` bytes (key ids 3, registration ids 4).
absl::StatusOr<uint32_t> ReadBigEndian(const Node* n, size_t bytes, std::string_view what) {
  auto b = ReadKey(n, bytes, what);
  if (!b.ok()) return b.status();
  uint32_t v = 0;
  for (uint8_t c : *b) v = (v << 8) | c;
  return v;
}

Node KeyNode(uint32_t id, const Bytes& pub, const Bytes* signature) {
  std::vector<Node> children{MakeNode("id", {}, BigEndian(id, 3)), MakeNode("value", {}, pub)};
  if (signature) children.push_back(MakeNode("signature", {}, *signature));
  return MakeNode(signature ? "skey" : "key", {}, std::move(children));
}

absl::StatusOr<PreKey> ReadPreKey(const Node* n) {
  if (!n) return absl::InvalidArgumentError("no <key>");
  auto id = ReadBigEndian(n->Child("id"), 3, "id");
  if (!id.ok()) return id.status();
  auto pub = ReadKey(n->Child("value"), 32, "value");
  if (!pub.ok()) return pub.status();
  if (*id == 0) return absl::InvalidArgumentError("<id> 0 is not a pre-key id");
  PreKey k;
  k.id = *id;
  k.key.pub = *std::move(pub);
  return k;
}

absl::StatusOr<SignedPreKey> ReadSignedPreKey(const Node* n) {
  if (!n) return absl::InvalidArgumentError("no <skey>");
  auto k = ReadPreKey(n);
  if (!k.ok()) return k.status();
  auto signature = ReadKey(n->Child("signature"), 64, "signature");
  if (!signature.ok()) return signature.status();
  SignedPreKey s;
  s.id = k->id;
  s.key = k->key;
  s.signature = *std::move(signature);
  return s;
}

Node EncryptIq(std::string type, std::vector<Node> children) {
  return MakeNode(
      "iq", {{"xmlns", "encrypt"}, {"type", std::move(type)}, {"to", std::string(wa::kServerJid)}},
      std::move(children));
}

absl::StatusOr<PreKeyBundle> ReadUser(const Node& user, int32_t device) {
  if (const Node* err = user.Child("error")) {
    return absl::NotFoundError(absl::StrCat("the server has no keys for ", user.AttrOr("jid"), ": ",
                                            err->AttrOr("code"), " ", err->AttrOr("text")));
  }
  PreKeyBundle b;
  auto reg = ReadBigEndian(user.Child("registration"), 4, "registration");
  if (!reg.ok()) return reg.status();
  b.registration_id = *reg;
  b.device = device;
  const Node* keys = user.Child("keys") ? user.Child("keys") : &user;
  auto identity = ReadKey(keys->Child("identity"), 32, "identity");
  if (!identity.ok()) return identity.status();
  b.identity_pub = *std::move(identity);
  auto signed_key = ReadSignedPreKey(keys->Child("skey"));
  if (!signed_key.ok()) return signed_key.status();
  b.signed_pre_key_id = signed_key->id;
  b.signed_pre_key_pub = signed_key->key.pub;
  b.signed_pre_key_signature = signed_key->signature;
  if (const Node* one_time = keys->Child("key")) {
    auto k = ReadPreKey(one_time);
    if (!k.ok()) return k.status();
    b.pre_key = *std::move(k);
  }
  return b;
}

}  // namespace

Node PreKeyUploadIq(const PreKeyUpload& u) {
  std::vector<Node> keys;
  keys.reserve(u.pre_keys.size());
  for (const auto& k : u.pre_keys) keys.push_back(KeyNode(k.id, k.key.pub, nullptr));
  return EncryptIq(
      "set", {MakeNode("registration", {}, BigEndian(u.registration_id, 4)),
              MakeNode("type", {}, Bytes{0x05}), MakeNode("identity", {}, u.identity_pub),
              MakeNode("list", {}, std::move(keys)),
              KeyNode(u.signed_pre_key.id, u.signed_pre_key.key.pub, &u.signed_pre_key.signature)});
}

absl::StatusOr<PreKeyUpload> ParsePreKeyUploadIq(const Node& iq) {
  if (iq.tag != "iq" || iq.AttrOr("xmlns") != "encrypt" || iq.AttrOr("type") != "set") {
    return absl::InvalidArgumentError("not a pre-key upload (iq xmlns=encrypt type=set)");
  }
  PreKeyUpload u;
  auto reg = ReadBigEndian(iq.Child("registration"), 4, "registration");
  if (!reg.ok()) return reg.status();
  u.registration_id = *reg;
  auto type = ReadBigEndian(iq.Child("type"), 1, "type");
  if (!type.ok()) return type.status();
  if (*type != 0x05) return absl::InvalidArgumentError("<type> must be 0x05 (Curve25519)");
  auto identity = ReadKey(iq.Child("identity"), 32, "identity");
  if (!identity.ok()) return identity.status();
  u.identity_pub = *std::move(identity);
  auto signed_key = ReadSignedPreKey(iq.Child("skey"));
  if (!signed_key.ok()) return signed_key.status();
  u.signed_pre_key = *std::move(signed_key);
  const Node* list = iq.Child("list");
  if (!list) return absl::InvalidArgumentError("no <list>");
  if (list->Children().size() > kMaxUploadKeys) {
    return absl::InvalidArgumentError(absl::StrCat("more than ", kMaxUploadKeys, " pre-keys"));
  }
  for (const Node& k : list->Children()) {
    auto key = ReadPreKey(&k);
    if (!key.ok()) return key.status();
    u.pre_keys.push_back(*std::move(key));
  }
  return u;
}

Node BundleRequestIq(const std::vector<std::string>& jids) {
  std::vector<Node> users;
  users.reserve(jids.size());
  for (const auto& jid : jids) users.push_back(MakeNode("user", {{"jid", jid}}));
  return EncryptIq("get", {MakeNode("key", {}, std::move(users))});
}

absl::StatusOr<std::vector<std::string>> ParseBundleRequestIq(const Node& iq) {
  const Node* key = iq.Child("key");
  if (iq.tag != "iq" || iq.AttrOr("xmlns") != "encrypt" || iq.AttrOr("type") != "get" || !key) {
    return absl::InvalidArgumentError("not a bundle request (iq xmlns=encrypt type=get <key>)");
  }
  if (key->Children().size() > kMaxRequestUsers) {
    return absl::InvalidArgumentError(absl::StrCat("more than ", kMaxRequestUsers, " users"));
  }
  std::vector<std::string> jids;
  for (const Node& user : key->Children()) {
    const std::string* jid = user.Attr("jid");
    if (user.tag != "user" || !jid || !wa::Jid::Parse(*jid).ok()) {
      return absl::InvalidArgumentError("a <user> without a valid jid");
    }
    jids.push_back(*jid);
  }
  return jids;
}

Node BundleResultIq(const std::string& id, const std::vector<DeviceBundle>& devices) {
  std::vector<Node> users;
  for (const auto& d : devices) {
    if (!d.bundle.ok()) {
      users.push_back(MakeNode(
          "user", {{"jid", d.jid}},
          std::vector<Node>{MakeNode("error", {{"code", "404"}, {"text", "item-not-found"}})}));
      continue;
    }
    const PreKeyBundle& b = *d.bundle;
    std::vector<Node> children{
        MakeNode("registration", {}, BigEndian(b.registration_id, 4)),
        MakeNode("type", {}, Bytes{0x05}), MakeNode("identity", {}, b.identity_pub),
        KeyNode(b.signed_pre_key_id, b.signed_pre_key_pub, &b.signed_pre_key_signature)};
    if (b.pre_key) children.push_back(KeyNode(b.pre_key->id, b.pre_key->key.pub, nullptr));
    users.push_back(MakeNode("user", {{"jid", d.jid}}, std::move(children)));
  }
  return MakeNode("iq", {{"id", id}, {"type", "result"}, {"from", std::string(wa::kServerJid)}},
                  std::vector<Node>{MakeNode("list", {}, std::move(users))});
}

absl::StatusOr<std::vector<DeviceBundle>> ParseBundleResultIq(const Node& iq) {
  const Node* list = iq.Child("list");
  if (!list) return absl::InvalidArgumentError("a bundle answer without <list>");
  std::vector<DeviceBundle> out;
  for (const Node& user : list->Children()) {
    if (user.tag != "user") continue;
    DeviceBundle d;
    d.jid = user.AttrOr("jid");
    auto jid = wa::Jid::Parse(d.jid);
    if (!jid.ok()) {
      d.bundle = absl::InvalidArgumentError("a <user> without a valid jid");
    } else {
      d.bundle = ReadUser(user, jid->device < 0 ? 0 : jid->device);
    }
    out.push_back(std::move(d));
  }
  return out;
}

Node RetryReceiptKeys(ByteView identity_pub, const PreKey& one_time, const SignedPreKey& signed_key,
                      ByteView device_identity) {
  return MakeNode(
      "keys", {},
      std::vector<Node>{
          MakeNode("type", {}, Bytes{0x05}),
          MakeNode("identity", {}, Bytes(identity_pub.begin(), identity_pub.end())),
          KeyNode(one_time.id, one_time.key.pub, nullptr),
          KeyNode(signed_key.id, signed_key.key.pub, &signed_key.signature),
          MakeNode("device-identity", {}, Bytes(device_identity.begin(), device_identity.end()))});
}

absl::StatusOr<PreKeyBundle> ParseRetryReceiptKeys(const Node& receipt, int32_t device) {
  if (!receipt.Child("keys")) return absl::InvalidArgumentError("a retry receipt without <keys>");
  return ReadUser(receipt, device);
}

}  // namespace wasentinel::signal
