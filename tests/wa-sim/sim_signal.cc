// The Signal half of wa-sim, as WhatsApp's server plays it for end-to-end encrypted messaging:
// the key registry (pre-key uploads, real counts, bundles that use up one-time keys, the count
// notification), usync device lists, group metadata, the routing of <message> stanzas to every
// device they are encrypted for, the server's ack with the participant hash, receipts back to
// the sender's devices, and the simulated phone (device 0) of each account.
//
// The shapes follow what whatsmeow (send.go, receipt.go, retry.go, prekeys.go, user.go,
// group.go, notification.go) and Baileys 6.7 (Socket/messages-send.ts, messages-recv.ts) send
// and read; docs/wa-protocol.md §11 lists them.
#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "e2ee/message_content.h"
#include "e2ee/prekey_stanzas.h"
#include "sim_internal.h"
#include "usync.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::sim::sim_internal {
namespace {

constexpr char kUserServer[] = "s.whatsapp.net";
constexpr char kGroupServer[] = "g.us";
constexpr size_t kPhonePreKeys = 100;  // the phone keeps this many one-time pre-keys published

std::string Now() { return std::to_string(absl::ToUnixSeconds(absl::Now())); }

// "user@s.whatsapp.net" for device 0, "user:device@s.whatsapp.net" else (the AD form).
std::string DeviceJid(const std::string& user, uint32_t device) {
  return device == 0 ? absl::StrCat(user, "@", kUserServer)
                     : absl::StrCat(user, ":", device, "@", kUserServer);
}

struct DeviceAddress {
  std::string user;
  uint32_t device = 0;
  std::string Key() const { return absl::StrCat(user, ":", device); }
};

// A user JID with or without a device ("15551234567:3@s.whatsapp.net").
std::optional<DeviceAddress> ParseDevice(std::string_view jid) {
  auto parsed = wa::Jid::Parse(jid);
  if (!parsed.ok() || parsed->server != kUserServer || parsed->user.empty()) return std::nullopt;
  return DeviceAddress{parsed->user, static_cast<uint32_t>(std::max(parsed->device, 0))};
}

// The device key ("user:device") a connection logged in as.
std::optional<DeviceAddress> ParseDeviceKey(const std::string& key) {
  const size_t colon = key.find(':');
  uint32_t device = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(key.substr(colon + 1), &device)) {
    return std::nullopt;
  }
  return DeviceAddress{key.substr(0, colon), device};
}

void SetAttr(Node& node, const std::string& key, const std::string& value) {
  for (auto& [k, v] : node.attrs) {
    if (k == key) {
      v = value;
      return;
    }
  }
  node.attrs.emplace_back(key, value);
}

// An iq answer: result with `children`, or an <error code text>.
Node IqResult(const Node& iq, std::vector<Node> children = {}) {
  Node::Attrs attrs = {
      {"from", iq.AttrOr("to", "@s.whatsapp.net")}, {"type", "result"}, {"id", iq.AttrOr("id")}};
  if (children.empty()) return MakeNode("iq", std::move(attrs));
  return MakeNode("iq", std::move(attrs), std::move(children));
}

Node IqError(const Node& iq, int code, const std::string& text) {
  return MakeNode(
      "iq",
      {{"from", iq.AttrOr("to", "@s.whatsapp.net")}, {"type", "error"}, {"id", iq.AttrOr("id")}},
      std::vector<Node>{MakeNode("error", {{"code", std::to_string(code)}, {"text", text}})});
}

// The keys published for `user:device` (device 0: the phone's), or nullptr.
DeviceKeys* KeysOf(SimServer::State& server, const DeviceAddress& d) {
  if (d.device == 0) {
    if (DevicesOf(server, d.user).empty()) return nullptr;
    return &PhoneOf(server, d.user).keys;
  }
  auto it = server.devices.find(d.Key());
  if (it == server.devices.end() || it->second.logged_out || !it->second.keys) return nullptr;
  return &*it->second.keys;
}

// The phone publishes another batch of one-time pre-keys (as a phone tops up at the server).
absl::Status PhoneTopUp(SimServer::State& server, Phone& phone) {
  WAS_ASSIGN_OR_RETURN(auto keys,
                       server.signal_context->GeneratePreKeys(phone.next_pre_key, kPhonePreKeys));
  phone.next_pre_key += kPhonePreKeys;
  for (const auto& k : keys) {
    WAS_ASSIGN_OR_RETURN(Bytes record, server.signal_context->PreKeyRecord(k));
    WAS_RETURN_IF_ERROR(phone.store->StorePreKey(k.id, record));
    std::array<uint8_t, 32> pub{};
    std::copy(k.key.pub.begin(), k.key.pub.end(), pub.begin());
    phone.keys.pre_keys[k.id] = pub;
  }
  return absl::OkStatus();
}

// A fresh phone identity: the account key as its Signal identity, a signed pre-key, a batch of
// one-time pre-keys, and an empty store.
absl::Status MakePhone(SimServer::State& server, Account& account, Phone& phone) {
  auto& ctx = *server.signal_context;
  WAS_ASSIGN_OR_RETURN(signal::Identity identity, ctx.GenerateIdentity());
  identity.key.pub.assign(account.key.pub.begin(), account.key.pub.end());
  identity.key.priv.assign(account.key.priv.begin(), account.key.priv.end());
  WAS_ASSIGN_OR_RETURN(signal::SignedPreKey signed_key, ctx.GenerateSignedPreKey(identity, 1));
  phone.store = std::make_unique<signal::MemoryStore>(identity);
  WAS_ASSIGN_OR_RETURN(Bytes record,
                       ctx.SignedPreKeyRecord(signed_key, absl::ToUnixMillis(absl::Now())));
  WAS_RETURN_IF_ERROR(phone.store->StoreSignedPreKey(signed_key.id, record));
  WAS_ASSIGN_OR_RETURN(phone.protocol, signal::Protocol::Create(ctx, *phone.store));
  phone.keys = DeviceKeys{};
  phone.keys.registration_id = identity.registration_id;
  phone.keys.identity_pub = identity.key.pub;
  phone.keys.signed_pre_key = signed_key;
  phone.keys.signed_pre_key.key.priv.clear();
  return PhoneTopUp(server, phone);
}

// One-time key `id` of `keys`, taken: the lowest id left, or none when they are used up.
std::optional<signal::PreKey> TakePreKey(DeviceKeys& keys) {
  if (keys.pre_keys.empty()) return std::nullopt;
  auto it = keys.pre_keys.begin();
  signal::PreKey k;
  k.id = it->first;
  k.key.pub.assign(it->second.begin(), it->second.end());
  keys.pre_keys.erase(it);
  return k;
}

// A bundle of `keys` for `device`, handing out their next one-time pre-key (counted served).
signal::PreKeyBundle HandOut(SimServer::State& server, DeviceKeys& keys, uint32_t device) {
  signal::PreKeyBundle bundle;
  bundle.registration_id = keys.registration_id;
  bundle.device = static_cast<int32_t>(device);
  bundle.pre_key = TakePreKey(keys);
  bundle.signed_pre_key_id = keys.signed_pre_key.id;
  bundle.signed_pre_key_pub = keys.signed_pre_key.key.pub;
  bundle.signed_pre_key_signature = keys.signed_pre_key.signature;
  bundle.identity_pub = keys.identity_pub;
  ++server.counters.bundles_served;
  return bundle;
}

// What the simulated phone does with a message for it: decrypts the 1:1 parts (group
// messages' sender-key parts are counted, not read), keeps the last 100 in its inbox, and —
// as a phone does, with --phone_receipts — sends the author's device a delivery receipt for a
// message from another account.
void PhoneReceive(SimServer::State& server, const std::string& user, const Node& stanza) {
  Phone& phone = PhoneOf(server, user);
  if (stanza.tag != "message" || !phone.protocol) return;
  const std::string sender_jid = stanza.AttrOr("participant", stanza.AttrOr("from"));
  auto sender = ParseDevice(sender_jid);
  if (!sender) return;
  for (const Node& enc : stanza.Children()) {
    if (enc.tag != "enc") continue;
    const std::string type = enc.AttrOr("type");
    if (type != "pkmsg" && type != "msg") continue;
    auto padded = phone.protocol->Decrypt(
        {sender->user, static_cast<int32_t>(sender->device)},
        type == "pkmsg" ? signal::MessageType::kPreKey : signal::MessageType::kWhisper,
        enc.ContentBytes());
    absl::StatusOr<Bytes> plain = padded.ok() ? signal::Unpad(*padded) : padded.status();
    if (!plain.ok()) {
      ++phone.undecryptable;
      ++server.counters.phone_undecryptable;
      server.log().info("phone {}: message {} from {} not decrypted: {}", wa::MaskPhone(user),
                        stanza.AttrOr("id"), MaskJid(sender_jid), plain.status().message());
      continue;
    }
    ++phone.received;
    ++server.counters.phone_received;
    phone.inbox.push_back({{"id", stanza.AttrOr("id")},
                           {"from", sender_jid},
                           {"chat", stanza.AttrOr("recipient", stanza.AttrOr("from"))},
                           {"type", type},
                           {"plaintext", Base64Encode(*plain)}});
    if (phone.inbox.size() > 100) phone.inbox.pop_front();
    if (server.options().phone_receipts && sender->user != user && sender->device != 0 &&
        !stanza.Attr("participant")) {
      Deliver(server, sender->user, sender->device,
              Routed(MakeNode(
                  "receipt",
                  {{"from", DeviceJid(user, 0)}, {"id", stanza.AttrOr("id")}, {"t", Now()}})));
      ++server.counters.receipts_routed;
    }
    break;  // one receipt per message
  }
}

}  // namespace

Phone& PhoneOf(SimServer::State& server, const std::string& user) {
  Account& account = server.accounts[user];
  if (!account.phone) {
    account.phone = std::make_shared<Phone>();
    if (auto st = MakePhone(server, account, *account.phone); !st.ok()) {
      server.log().error("phone {}: keys not made: {}", wa::MaskPhone(user), st.message());
    }
  }
  return *account.phone;
}

std::vector<uint32_t> DevicesOf(SimServer::State& server, const std::string& user) {
  std::vector<uint32_t> out;
  const std::string prefix = user + ":";
  for (auto it = server.devices.lower_bound(prefix);
       it != server.devices.end() && it->first.starts_with(prefix); ++it) {
    uint32_t device = 0;
    if (it->second.logged_out || !absl::SimpleAtoi(it->first.substr(prefix.size()), &device) ||
        device == 0) {
      continue;
    }
    out.push_back(device);
  }
  if (!out.empty() || server.accounts.contains(user)) out.insert(out.begin(), 0);
  std::sort(out.begin(), out.end());
  return out;
}

OfflineStanza Routed(Node stanza) {
  Node::Attrs expect = {{"class", stanza.tag}, {"to", stanza.AttrOr("from")}};
  for (const char* key : {"participant", "recipient", "type"}) {
    if (std::string_view(key) == "type" && stanza.tag == "message") continue;
    if (const std::string* v = stanza.Attr(key)) expect.emplace_back(key, *v);
  }
  std::sort(expect.begin(), expect.end());
  return {std::move(stanza), std::move(expect)};
}

void Deliver(SimServer::State& server, const std::string& user, uint32_t device, OfflineStanza s) {
  if (device == 0) {
    PhoneReceive(server, user, s.stanza);
    return;
  }
  const std::string key = absl::StrCat(user, ":", device);
  auto it = server.devices.find(key);
  if (it == server.devices.end() || it->second.logged_out) return;
  Device& d = it->second;
  if (d.corrupt_next && s.stanza.tag == "message") {
    // The fault: a byte in the middle of the first <enc> is flipped — inside what the MAC
    // covers, whether it is a msg or a pkmsg (whose last bytes are ids libsignal does not
    // check) —, so the device cannot decrypt it and asks for a retry.
    if (auto* children = std::get_if<std::vector<Node>>(&s.stanza.content)) {
      for (Node& enc : *children) {
        if (auto* bytes = std::get_if<Bytes>(&enc.content);
            enc.tag == "enc" && bytes && !bytes->empty()) {
          (*bytes)[bytes->size() / 2] ^= 0x5a;
          d.corrupt_next = false;
          server.log().info("message {} to {}: its <enc> damaged, as asked", s.stanza.AttrOr("id"),
                            MaskJid(key));
          break;
        }
      }
    }
  }
  auto conn = server.FindLive(key);
  if (conn && !d.held) {
    conn->Take(std::move(s));
  } else {
    d.offline.push_back(std::move(s));
  }
}

void NotifyPreKeyCount(SimServer::State& server, const std::string& device_key, size_t count) {
  auto d = ParseDeviceKey(device_key);
  if (!d) return;
  Node n = MakeNode("notification",
                    {{"from", "@s.whatsapp.net"},
                     {"type", "encrypt"},
                     {"id", absl::StrCat("sim.count.", absl::ToUnixNanos(absl::Now()))},
                     {"t", Now()}},
                    std::vector<Node>{MakeNode("count", {{"value", std::to_string(count)}})});
  Deliver(server, d->user, d->device, Routed(std::move(n)));
}

absl::StatusOr<int> ResetIdentity(SimServer::State& server, const std::string& user) {
  if (DevicesOf(server, user).empty()) return absl::NotFoundError("no such account");
  Account& account = server.accounts[user];
  account.key = wa::KeyPair::Generate();
  account.phone = std::make_shared<Phone>();
  WAS_RETURN_IF_ERROR(MakePhone(server, account, *account.phone));
  int told = 0;
  for (auto& [key, device] : server.devices) {
    auto d = ParseDeviceKey(key);
    if (!d || d->user == user || device.logged_out) continue;
    Node n = MakeNode(
        "notification",
        {{"from", DeviceJid(user, 0)},
         {"type", "encrypt"},
         {"id", absl::StrCat("sim.identity.", ++told, ".", absl::ToUnixNanos(absl::Now()))},
         {"t", Now()}},
        std::vector<Node>{MakeNode("identity")});
    Deliver(server, d->user, d->device, Routed(std::move(n)));
  }
  server.log().info("phone {}: identity reset; {} devices told", wa::MaskPhone(user), told);
  return told;
}

absl::StatusOr<json> PhoneSend(SimServer::State& server, const std::string& from,
                               const std::string& to, const std::string& text) {
  if (DevicesOf(server, to).empty()) return absl::NotFoundError("no such account");
  server.accounts[from];  // a phone-only account, if it is new
  Phone& phone = PhoneOf(server, from);
  if (!phone.protocol) return absl::InternalError("the phone has no keys");
  Bytes id_bytes(8);
  wa::RandomBytes(id_bytes);
  std::string id = "3EB0" + HexEncode(id_bytes);
  absl::AsciiStrToUpper(&id);
  std::vector<DeviceAddress> targets;
  for (uint32_t d : DevicesOf(server, to)) targets.push_back({to, d});
  if (from != to) {
    for (uint32_t d : DevicesOf(server, from)) {
      if (d != 0) targets.push_back({from, d});
    }
  }
  int copies = 0;
  for (const DeviceAddress& t : targets) {
    const signal::Address address{t.user, static_cast<int32_t>(t.device)};
    auto has = phone.protocol->HasSession(address);
    if (has.ok() && !*has) {
      DeviceKeys* keys = KeysOf(server, t);
      if (!keys) continue;  // a device that never uploaded keys cannot be written to
      if (auto st = phone.protocol->ProcessBundle(address, HandOut(server, *keys, t.device));
          !st.ok()) {
        server.log().warn("phone {}: no session with {}:{}: {}", wa::MaskPhone(from),
                          wa::MaskPhone(t.user), t.device, st.message());
        continue;
      }
    }
    const bool own = t.user == from && from != to;
    const Bytes plain = signal::TextMessage(text, own ? DeviceJid(to, 0) : "");
    auto sealed = phone.protocol->Encrypt(address, signal::Pad(plain));
    if (!sealed.ok()) continue;
    Node::Attrs attrs = {{"from", DeviceJid(from, 0)}, {"id", id}, {"t", Now()}, {"type", "text"}};
    if (own) attrs.emplace_back("recipient", DeviceJid(to, 0));
    Deliver(
        server, t.user, t.device,
        Routed(MakeNode("message", std::move(attrs),
                        std::vector<Node>{MakeNode(
                            "enc", {{"v", "2"}, {"type", signal::MessageTypeName(sealed->type)}},
                            sealed->bytes)})));
    ++copies;
  }
  ++server.counters.messages_routed;
  server.counters.deliveries += copies;
  return json{{"id", id}, {"copies", copies}};
}

void SimConn::Take(OfflineStanza s) {
  if (offline_done_) {
    Expect(std::move(s));
  } else {
    offering_.push_back(std::move(s));
  }
}

// Pre-key count and upload, bundles, usync device lists, group metadata.
bool SimConn::OnSignalIq(const Node& iq) {
  const std::string xmlns = iq.AttrOr("xmlns");
  const std::string type = iq.AttrOr("type");
  auto& log = server_->log();
  auto me = ParseDeviceKey(jid_);
  if (!me) return false;
  if (xmlns == "encrypt" && type == "get" && iq.Child("count")) {
    size_t count = 0;
    if (auto it = server_->devices.find(jid_); it != server_->devices.end() && it->second.keys) {
      count = it->second.keys->pre_keys.size();
    }
    const int forced = server_->options().prekey_count;
    Send(IqResult(
        iq,
        {MakeNode("count", {{"value", std::to_string(forced >= 0 ? size_t(forced) : count)}})}));
    return true;
  }
  if (xmlns == "encrypt" && type == "set" && iq.Child("list")) {
    auto upload = signal::ParsePreKeyUploadIq(iq);
    auto it = server_->devices.find(jid_);
    if (!upload.ok() || it == server_->devices.end()) {
      log.info("conn {}: pre-key upload refused: {}", id_,
               upload.ok() ? "unknown device" : upload.status().message());
      Send(IqError(iq, 400, "bad-request"));
      return true;
    }
    DeviceKeys& keys = it->second.keys ? *it->second.keys : it->second.keys.emplace();
    if (keys.identity_pub != upload->identity_pub) keys.pre_keys.clear();  // a new identity
    keys.registration_id = upload->registration_id;
    keys.identity_pub = upload->identity_pub;
    keys.signed_pre_key = upload->signed_pre_key;
    for (const auto& k : upload->pre_keys) {
      std::array<uint8_t, 32> pub{};
      std::copy(k.key.pub.begin(), k.key.pub.end(), pub.begin());
      keys.pre_keys[k.id] = pub;
    }
    ++server_->counters.prekey_uploads;
    log.info("conn {}: {} uploaded {} pre-keys ({} at the server)", id_, MaskJid(jid_),
             upload->pre_keys.size(), keys.pre_keys.size());
    Send(IqResult(iq));
    return true;
  }
  if (xmlns == "encrypt" && type == "get" && iq.Child("key")) {
    auto jids = signal::ParseBundleRequestIq(iq);
    if (!jids.ok()) {
      Send(IqError(iq, 400, "bad-request"));
      return true;
    }
    std::vector<signal::DeviceBundle> answers;
    for (const std::string& jid : *jids) {
      signal::DeviceBundle b;
      b.jid = jid;
      auto d = ParseDevice(jid);
      DeviceKeys* keys = d ? KeysOf(*server_, *d) : nullptr;
      if (!keys) {
        b.bundle = absl::NotFoundError("item-not-found");
        answers.push_back(std::move(b));
        continue;
      }
      b.bundle = HandOut(*server_, *keys, d->device);
      answers.push_back(std::move(b));
      if (d->device == 0) {
        Phone& phone = PhoneOf(*server_, d->user);
        if (phone.keys.pre_keys.size() < signal::kMinServerPreKeys)
          (void)PhoneTopUp(*server_, phone);
      } else if (keys->pre_keys.size() < signal::kMinServerPreKeys) {
        NotifyPreKeyCount(*server_, d->Key(), keys->pre_keys.size());
      }
    }
    Send(signal::BundleResultIq(iq.AttrOr("id"), answers));
    return true;
  }
  if (xmlns == "usync" && type == "get") {
    const Node* usync = iq.Child("usync");
    const Node* list = usync ? usync->Child("list") : nullptr;
    const Node* query = usync ? usync->Child("query") : nullptr;
    if (!list || !query) {
      Send(IqError(iq, 400, "bad-request"));
      return true;
    }
    ++server_->counters.usync_queries;
    const bool want_devices = query->Child("devices") != nullptr;
    std::vector<Node> users;
    for (const Node& u : list->Children()) {
      if (u.tag != "user") continue;
      const std::string jid = u.AttrOr("jid");
      auto d = ParseDevice(jid);
      std::vector<Node> parts;
      if (want_devices) {
        std::vector<Node> devices;
        for (uint32_t dev : d ? DevicesOf(*server_, d->user) : std::vector<uint32_t>{}) {
          Node::Attrs attrs = {{"id", std::to_string(dev)}};
          if (dev != 0) {
            auto known = server_->devices.find(absl::StrCat(d->user, ":", dev));
            const uint32_t index = known != server_->devices.end() ? known->second.key_index : 0;
            attrs.emplace_back("key-index", std::to_string(index ? index : dev));
          }
          devices.push_back(MakeNode("device", std::move(attrs)));
        }
        parts.push_back(MakeNode("devices", {},
                                 std::vector<Node>{MakeNode("device-list", {}, std::move(devices)),
                                                   MakeNode("key-index-list", {{"ts", Now()}})}));
      }
      if (query->Child("lid") && d && server_->accounts.contains(d->user) &&
          !server_->accounts[d->user].lid_user.empty()) {
        parts.push_back(
            MakeNode("lid", {{"val", absl::StrCat(server_->accounts[d->user].lid_user, "@lid")}}));
      }
      users.push_back(
          MakeNode("user", {{"jid", d ? DeviceJid(d->user, 0) : jid}}, std::move(parts)));
    }
    Node::Attrs usync_attrs;
    for (const char* k : {"sid", "mode", "context", "index", "last"}) {
      if (const std::string* v = usync->Attr(k)) usync_attrs.emplace_back(k, *v);
    }
    Send(IqResult(iq, {MakeNode("usync", std::move(usync_attrs),
                                std::vector<Node>{MakeNode("list", {}, std::move(users))})}));
    return true;
  }
  if (xmlns == "w:g2" && type == "get" && iq.Child("query")) {
    auto to = wa::Jid::Parse(iq.AttrOr("to"));
    auto it = to.ok() && to->server == kGroupServer ? server_->groups.find(to->user)
                                                    : server_->groups.end();
    if (it == server_->groups.end()) {
      Send(IqError(iq, 404, "item-not-found"));
      return true;
    }
    const Group& g = it->second;
    if (std::find(g.participants.begin(), g.participants.end(), me->user) == g.participants.end()) {
      Send(IqError(iq, 403, "forbidden"));
      return true;
    }
    std::vector<Node> members;
    for (const auto& p : g.participants) {
      Node::Attrs attrs = {{"jid", DeviceJid(p, 0)}};
      if (p == g.creator) attrs.emplace_back("type", "superadmin");
      members.push_back(MakeNode("participant", std::move(attrs)));
    }
    Send(IqResult(iq, {MakeNode("group",
                                {{"id", it->first},
                                 {"creator", DeviceJid(g.creator, 0)},
                                 {"creation", std::to_string(g.creation)},
                                 {"subject", g.subject},
                                 {"s_t", std::to_string(g.creation)},
                                 {"s_o", DeviceJid(g.creator, 0)},
                                 {"size", std::to_string(g.participants.size())},
                                 {"addressing_mode", "pn"}},
                                std::move(members))}));
    return true;
  }
  return false;
}

// A <message> from this device (whatsmeow send.go, Baileys relayMessage): to a user, with an
// <enc> per device under <participants>, or a single <enc> for one device (a retry's resend,
// a peer message to the own phone); or to a group, with the sender-key distribution per
// device under <participants> and one <enc type="skmsg"> for all. Every device it is for gets
// its own copy; the server acks with the participant hash of the devices it knows.
void SimConn::OnMessage(const Node& message) {
  auto& log = server_->log();
  const std::string id = message.AttrOr("id");
  const std::string to = message.AttrOr("to");
  auto me = ParseDeviceKey(jid_);
  auto to_jid = wa::Jid::Parse(to);
  auto refuse = [&](int code, std::string_view why) {
    ++server_->counters.messages_refused;
    log.info("conn {}: message {} to {} refused ({}): {}", id_, id, MaskJid(to), code, why);
    Send(MakeNode("ack", {{"class", "message"},
                          {"id", id},
                          {"from", to},
                          {"t", Now()},
                          {"error", std::to_string(code)}}));
  };
  if (!me || id.empty() || !to_jid.ok()) return refuse(400, "no id, or no valid to");
  const std::string sender_jid = DeviceJid(me->user, me->device);
  const bool group = to_jid->server == kGroupServer;
  if (!group && (to_jid->server != kUserServer || to_jid->user.empty())) {
    return refuse(400, "to is neither a user nor a group");
  }

  // The <enc> per device under <participants>, and the enc for everyone (skmsg) or the bare
  // enc of a single-device message.
  std::map<std::string, Node> per_device;  // device key → its <enc>
  std::vector<Node> shared;
  const Node* identity = message.Child("device-identity");
  for (const Node& child : message.Children()) {
    if (child.tag == "participants") {
      for (const Node& t : child.Children()) {
        auto d = ParseDevice(t.AttrOr("jid"));
        const Node* enc = t.Child("enc");
        if (!d || !enc) return refuse(400, "a <to> without a device JID or an <enc>");
        per_device.emplace(d->Key(), *enc);
      }
    } else if (child.tag == "enc") {
      const std::string type = child.AttrOr("type");
      if (type != "pkmsg" && type != "msg" && type != "skmsg") {
        return refuse(400, "an <enc> type other than pkmsg, msg or skmsg");
      }
      shared.push_back(child);
    }
  }
  for (const auto& [key, enc] : per_device) {
    const std::string type = enc.AttrOr("type");
    if (type != "pkmsg" && type != "msg")
      return refuse(400, "a device's <enc> is not pkmsg or msg");
  }

  // Who gets a copy, and who the server thinks takes part (for the participant hash).
  std::vector<DeviceAddress> targets;
  std::vector<std::pair<std::string, uint32_t>> known;  // for the participant hash
  Node::Attrs base = {{"id", id}, {"t", Now()}};
  if (const std::string* type = message.Attr("type")) base.emplace_back("type", *type);
  for (const char* k : {"category", "edit"}) {
    if (const std::string* v = message.Attr(k)) base.emplace_back(k, *v);
  }
  auto add_known = [&](const std::string& user) {
    for (uint32_t dev : DevicesOf(*server_, user)) known.emplace_back(user, dev);
  };
  if (group) {
    auto it = server_->groups.find(to_jid->user);
    if (it == server_->groups.end()) return refuse(404, "no such group");
    const Group& g = it->second;
    if (std::find(g.participants.begin(), g.participants.end(), me->user) == g.participants.end()) {
      return refuse(403, "the sender is not a participant");
    }
    if (shared.empty()) return refuse(400, "a group message without <enc type=\"skmsg\">");
    for (const auto& p : g.participants) {
      add_known(p);
      for (uint32_t dev : DevicesOf(*server_, p)) {
        if (p == me->user && dev == me->device) continue;
        targets.push_back({p, dev});
      }
    }
    if (const std::string* participant = message.Attr("participant")) {
      // A resend to one device (Baileys' answer to a retry receipt).
      auto d = ParseDevice(*participant);
      if (!d) return refuse(400, "participant is not a device JID");
      targets = {*d};
    }
    base.insert(base.begin(), std::pair<std::string, std::string>("participant", sender_jid));
    base.insert(base.begin(), std::pair<std::string, std::string>(
                                  "from", absl::StrCat(to_jid->user, "@", kGroupServer)));
    if (const std::string* mode = message.Attr("addressing_mode")) {
      base.emplace_back("addressing_mode", *mode);
    }
  } else {
    if (DevicesOf(*server_, to_jid->user).empty()) return refuse(404, "no such account");
    add_known(to_jid->user);
    if (to_jid->user != me->user) add_known(me->user);
    if (to_jid->device >= 0) {
      // To one device: a retry's resend (device_fanout="false") or a peer message.
      targets.push_back({to_jid->user, static_cast<uint32_t>(to_jid->device)});
    } else if (!per_device.empty()) {
      for (const auto& [key, enc] : per_device) targets.push_back(*ParseDeviceKey(key));
    } else {
      targets.push_back({to_jid->user, 0});  // a bare <enc> to a user: its phone
    }
    base.insert(base.begin(), std::pair<std::string, std::string>("from", sender_jid));
  }

  int copies = 0;
  for (const DeviceAddress& t : targets) {
    std::vector<Node> encs;
    if (auto it = per_device.find(t.Key()); it != per_device.end()) encs.push_back(it->second);
    if (group || per_device.empty()) {
      for (const Node& e : shared) encs.push_back(e);
    }
    if (encs.empty()) continue;  // a 1:1 device the sender did not encrypt for
    if (!group && t.user != to_jid->user && t.user != me->user) continue;  // not in this chat
    Node::Attrs attrs = base;
    if (!group && t.user == me->user && to_jid->user != me->user) {
      attrs.emplace_back("recipient", DeviceJid(to_jid->user, 0));  // to the sender's devices
    } else if (const std::string* recipient = message.Attr("recipient"); recipient && !group) {
      attrs.emplace_back("recipient", *recipient);
    }
    const bool prekey = std::any_of(encs.begin(), encs.end(),
                                    [](const Node& e) { return e.AttrOr("type") == "pkmsg"; });
    if (prekey && identity) encs.push_back(*identity);
    Deliver(*server_, t.user, t.device,
            Routed(MakeNode("message", std::move(attrs), std::move(encs))));
    ++copies;
  }
  ++server_->counters.messages_routed;
  server_->counters.deliveries += copies;
  log.info("conn {}: message {} from {} to {}: {} copies", id_, id, MaskJid(sender_jid),
           MaskJid(to), copies);
  Send(MakeNode("ack", {{"class", "message"},
                        {"id", id},
                        {"from", to},
                        {"t", Now()},
                        {"phash", wa::ParticipantHash(known)}}));
}

// A <receipt> from this device: it settles what it answers (clients send receipts, not acks,
// for messages they decrypted), the server acks it, and it goes on to the author's devices —
// a retry receipt to the author's device alone, which is the one that can resend.
void SimConn::OnReceipt(const Node& receipt) {
  const std::string id = receipt.AttrOr("id");
  std::vector<std::string> ids = {id};
  if (const Node* list = receipt.Child("list")) {
    for (const Node& item : list->Children()) ids.push_back(item.AttrOr("id"));
  }
  for (const auto& settled : ids) {
    auto it = awaiting_ack_.find(settled);
    if (it == awaiting_ack_.end() || it->second.stanza.tag != "message") continue;
    awaiting_ack_.erase(it);
    ++receipts_settled_;
    settled_.push_back(settled);
    if (settled_.size() > 256) settled_.pop_front();
  }
  const std::string type = receipt.AttrOr("type");
  const std::string to = receipt.AttrOr("to");
  Node::Attrs ack = {{"class", "receipt"}, {"id", id}, {"from", to}};
  if (!type.empty()) ack.emplace_back("type", type);
  Send(MakeNode("ack", std::move(ack)));

  auto me = ParseDeviceKey(jid_);
  auto to_jid = wa::Jid::Parse(to);
  if (!me || !to_jid.ok()) return;
  const std::string my_jid = DeviceJid(me->user, me->device);
  std::optional<DeviceAddress> author;
  Node::Attrs attrs;
  if (to_jid->server == kGroupServer) {
    author = ParseDevice(receipt.AttrOr("participant"));
    attrs = {{"from", to}, {"participant", my_jid}};
  } else {
    author = ParseDevice(to);
    attrs = {{"from", my_jid}};
    if (const std::string* recipient = receipt.Attr("recipient")) {
      attrs.emplace_back("recipient", *recipient);
    }
  }
  if (!author) return;
  attrs.emplace_back("id", id);
  attrs.emplace_back("t", receipt.AttrOr("t", Now()));
  if (!type.empty()) attrs.emplace_back("type", type);
  std::vector<DeviceAddress> targets;
  if (type == "retry") {
    targets.push_back(*author);
    ++server_->counters.retries_routed;
  } else {
    for (uint32_t dev : DevicesOf(*server_, author->user)) {
      if (author->user == me->user && dev == me->device) continue;
      targets.push_back({author->user, dev});
    }
  }
  for (const DeviceAddress& t : targets) {
    if (t.device == 0) continue;  // the phone keeps no receipts
    Node copy = receipt.Children().empty() ? MakeNode("receipt", attrs)
                                           : MakeNode("receipt", attrs, receipt.Children());
    Deliver(*server_, t.user, t.device, Routed(std::move(copy)));
    ++server_->counters.receipts_routed;
  }
}

}  // namespace wasentinel::sim::sim_internal
