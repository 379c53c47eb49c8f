// What a wa-sim connection answers, as WhatsApp's server does: the login (success, failure,
// replacing an older connection), registration and pairing (by QR code and by pairing code),
// iqs and pings, stream errors, stanzas and their acks, and the offline queue.
#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "crypto.h"
#include "handshake.h"
#include "pairing.h"
#include "sim_internal.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::sim::sim_internal {
namespace {

constexpr std::string_view kServer = "@s.whatsapp.net";

}  // namespace

void SimConn::Handle(const Node& node) {
  if (blackholed_) return;
  if (node.tag == "iq") {
    OnIq(node);
  } else if (node.tag == "message") {
    OnMessage(node);
  } else if (node.tag == "ack" || node.tag == "receipt") {
    ++acks_;
    ++server_->counters.acks_received;
    if (node.tag == "ack") OnAck(node);
    if (node.tag == "receipt") OnReceipt(node);
  } else if (node.tag == "ib") {
    if (const Node* batch = node.Child("offline_batch")) {
      ++server_->counters.offline_batches;
      offline_batch_requested_ = true;
      DeliverOffline();
    }
  } else if (node.tag == "presence") {
    presence_ = node.AttrOr("type", "available");
    presences_.push_back(presence_);
    if (presence_ == "available") ++server_->counters.presences_available;
  }
}

void SimConn::OnIq(const Node& iq) {
  const std::string id = iq.AttrOr("id");
  const std::string xmlns = iq.AttrOr("xmlns");
  const std::string type = iq.AttrOr("type");
  Node::Attrs attrs = {{"from", std::string(kServer)}, {"type", "result"}, {"id", id}};
  if ((type == "result" || type == "error") && pairing_ && id == pairing_->iq_id) {
    OnPairAnswer(iq);
    return;
  }
  if (const Node* reg = iq.Child("link_code_companion_reg");
      reg && xmlns == "md" && type == "set") {
    const std::string stage = reg->AttrOr("stage");
    if (stage == "companion_hello") return OnCompanionHello(*reg, std::move(attrs));
    if (stage == "companion_finish") return OnCompanionFinish(iq, std::move(attrs));
  }
  if (xmlns == "md" && type == "set" && iq.Child("remove-companion-device")) {
    // Logout: the device is removed; the server ends the stream as for any removed device.
    ++server_->counters.logouts;
    Send(MakeNode("iq", attrs));
    server_->log().info("conn {}: {} logged itself out", id_, jid_);
    SendStreamError(401);
    return;
  }
  if (xmlns == "w:p") {
    ++pings_;
    ++server_->counters.pings_answered;
    Send(MakeNode("iq", attrs));
  } else if (xmlns == "privacy" && type == "get" && iq.Child("privacy")) {
    // The account's privacy settings (Baileys reads them before sending read receipts).
    std::vector<Node> categories;
    for (const char* name :
         {"last", "online", "profile", "status", "groupadd", "readreceipts", "calladd"}) {
      categories.push_back(MakeNode("category", {{"name", name}, {"value", "all"}}));
    }
    Send(MakeNode("iq", attrs, std::vector<Node>{MakeNode("privacy", {}, std::move(categories))}));
  } else if (OnSignalIq(iq)) {
    // pre-keys, bundles, usync, group metadata (sim_signal.cc)
  } else if (type == "get" || type == "set") {
    // passive/active, props, privacy, blocklist, ...: acknowledged with an empty result.
    Send(MakeNode("iq", attrs));
  }
}

void SimConn::OnClientPayload(const wa::ServerHandshake::ClientIdentity& id) {
  auto& log = server_->log();
  if (const uint32_t announced = id.payload.user_agent().app_version().tertiary();
      announced < server_->min_version) {
    ++server_->counters.outdated_refused;
    log.info("conn {}: refused 2.3000.{} as outdated (minimum 2.3000.{})", id_, announced,
             server_->min_version);
    SendAndClose(MakeNode("failure", {{"reason", "405"}, {"location", "sim"}}));
    return;
  }
  if (id.payload.has_device_pairing_data()) {
    StartRegistration(id);
    return;
  }
  jid_ = absl::StrCat(id.payload.username(), ":", id.payload.device());
  auto it = server_->devices.find(jid_);
  if (it == server_->devices.end() || it->second.logged_out ||
      it->second.noise_pub != id.static_pub) {
    ++server_->counters.login_failures;
    log.info("conn {}: login of {} refused ({})", id_, jid_,
             it == server_->devices.end() ? "unknown device"
             : it->second.logged_out      ? "logged out"
                                          : "noise key mismatch");
    SendAndClose(MakeNode("failure", {{"reason", "401"}, {"location", "sim"}}));
    return;
  }
  if (auto& f = it->second.fail_login) {
    ++server_->counters.login_failures;
    Node::Attrs attrs = {{"reason", std::to_string(f->reason)}, {"location", "sim"}};
    if (f->reason == 402) {
      attrs.emplace_back("code", std::to_string(f->code));
      if (f->expire > 0) attrs.emplace_back("expire", std::to_string(f->expire));
    }
    if (!f->message.empty()) attrs.emplace_back("message", f->message);
    // As at WhatsApp: a device logged out by the failure stays logged out.
    if (f->reason == 401 || f->reason == 403 || f->reason == 406) it->second.logged_out = true;
    log.info("conn {}: login of {} fails with {} as asked", id_, jid_, f->reason);
    if (--f->remaining <= 0) f.reset();
    SendAndClose(MakeNode("failure", std::move(attrs)));
    return;
  }
  // One live connection per device: the newer login replaces the older one.
  if (auto old = server_->FindLive(jid_); old && old.get() != this) {
    ++server_->counters.replaced;
    old->Requeue();  // what it left unacked comes with this login
    old->SendAndClose(MakeNode("stream:error", {},
                               std::vector<Node>{MakeNode("conflict", {{"type", "replaced"}})}));
  }
  logged_in_ = true;
  ++it->second.logins;
  ++server_->counters.logins;
  Node::Attrs attrs = {{"t", std::to_string(absl::ToUnixSeconds(absl::Now()))},
                       {"props", "1"},
                       {"abprops", "1"},
                       {"location", "sim"}};
  if (!it->second.lid.empty()) attrs.emplace_back("lid", it->second.lid);
  Send(MakeNode("success", std::move(attrs)));
  OfferOffline();
  log.info("conn {}: {} logged in from {}", id_, jid_, remote_);
}

// §8 step 1: a new companion gets its refs; it shows them as QR codes until one is scanned.
void SimConn::StartRegistration(const wa::ServerHandshake::ClientIdentity& id) {
  const auto& reg = id.payload.device_pairing_data();
  if (reg.e_ident().size() != 32) {
    SendAndClose(MakeNode("failure", {{"reason", "400"}, {"location", "sim"}}));
    return;
  }
  registering_ = true;
  noise_pub_ = id.static_pub;
  std::copy(reg.e_ident().begin(), reg.e_ident().end(), identity_pub_.begin());
  ++server_->counters.registrations;
  std::vector<Node> refs;
  for (int i = 0; i < server_->options().pairing_refs; ++i) {
    Bytes r(18);
    wa::RandomBytes(r);
    refs_.push_back(absl::StrCat("2@", Base64Encode(r)));
    refs.push_back(MakeNode("ref", {}, ToBytes(refs_.back())));
  }
  Send(MakeNode(
      "iq", {{"from", std::string(kServer)}, {"type", "set"}, {"id", NextId()}, {"xmlns", "md"}},
      std::vector<Node>{MakeNode("pair-device", {}, std::move(refs))}));
  server_->log().info("conn {}: registration; {} refs sent", id_, refs_.size());
}

bool SimConn::Shows(const wa::ScannedQr& qr) const {
  return registering_ && !pairing_ && !closed_ && qr.noise_pub == noise_pub_ &&
         qr.identity_pub == identity_pub_ &&
         std::find(refs_.begin(), refs_.end(), qr.ref) != refs_.end();
}

// Waits for the code of `phone`: the companion asked for one and nobody typed it yet.
bool SimConn::AwaitsCode(const std::string& phone) const {
  return registering_ && !pairing_ && !closed_ && code_request_ && code_request_->phone == phone &&
         !code_request_->hello;
}

// The person typed `code` on the phone of `phone` (§8 phone-number pairing code): the phone
// sends primary_hello; the companion's companion_finish completes the pairing through
// pair-success, and `done` hears the outcome.
absl::Status SimConn::EnterCode(const std::string& code, const std::string& phone, const json& opts,
                                PairDone done) {
  auto& account = server_->accounts[phone];
  WAS_ASSIGN_OR_RETURN(
      auto hello, wa::PhonePrimaryHello(code, code_request_->wrapped_ephemeral, code_request_->ref,
                                        account.key, NextId()));
  Send(hello.notification);
  code_request_->hello = std::move(hello);
  code_request_->opts = opts;
  code_request_->done = std::move(done);
  return absl::OkStatus();
}

// §8 steps 4–5: the phone signs the companion's identity; the server sends pair-success.
void SimConn::SendPairSuccess(const wa::ScannedQr& qr, const std::string& phone, const json& opts,
                              PairDone done) {
  auto& account = server_->accounts[phone];
  if (account.lid_user.empty()) {
    Bytes r(6);
    wa::RandomBytes(r);
    uint64_t lid = 0;
    for (uint8_t b : r) lid = lid * 256 + b;
    account.lid_user = std::to_string(100000000000000ULL + lid % 900000000000000ULL);
  }
  wa::PhoneIdentityOptions po;
  po.key_index = account.next_key_index++;
  po.timestamp = absl::ToUnixSeconds(absl::Now());
  wa::RandomBytes(std::span(reinterpret_cast<uint8_t*>(&po.raw_id), sizeof po.raw_id));
  const std::string corrupt = opts.value("corrupt", std::string());
  po.corrupt_hmac = corrupt == "hmac";
  po.corrupt_signature = corrupt == "signature";
  const uint32_t device = account.next_device++;
  PendingPair p;
  p.iq_id = NextId();
  p.phone = phone;
  p.device_key = absl::StrCat(phone, ":", device);
  p.lid = absl::StrCat(account.lid_user, ":", device, "@lid");
  p.name = opts.value("name", std::string());
  p.key_index = po.key_index;
  p.account_pub = account.key.pub;
  p.done = std::move(done);
  std::vector<Node> children = {
      MakeNode("device-identity", {}, wa::PhoneSignDeviceIdentity(account.key, qr, po)),
      MakeNode("device", {{"jid", absl::StrCat(p.device_key, "@s.whatsapp.net")}, {"lid", p.lid}}),
      MakeNode("platform", {{"name", opts.value("platform", std::string("android"))}})};
  if (opts.contains("business_name") && opts["business_name"].is_string()) {
    children.push_back(MakeNode("biz", {{"name", opts["business_name"].get<std::string>()}}));
  }
  Send(MakeNode("iq",
                {{"from", std::string(kServer)},
                 {"type", "set"},
                 {"id", p.iq_id},
                 {"t", std::to_string(po.timestamp)}},
                std::vector<Node>{MakeNode("pair-success", {}, std::move(children))}));
  pairing_ = std::move(p);
}

// §8 phone-number pairing code, companion_hello: the server keeps the request for the phone
// and answers the ref the phone's answer will carry.
void SimConn::OnCompanionHello(const Node& reg, Node::Attrs attrs) {
  const std::string jid = reg.AttrOr("jid");
  const std::string phone = jid.substr(0, jid.find('@'));
  const Node* wrapped = reg.Child("link_code_pairing_wrapped_companion_ephemeral_pub");
  const Node* noise = reg.Child("companion_server_auth_key_pub");
  const bool valid = registering_ && !phone.empty() && phone.size() <= 15 &&
                     phone.find_first_not_of("0123456789") == std::string::npos &&
                     jid == phone + "@s.whatsapp.net" && wrapped &&
                     wrapped->ContentBytes().size() == 80 && noise &&
                     std::ranges::equal(noise->ContentBytes(), noise_pub_);
  if (!valid) {
    attrs[1].second = "error";
    Send(
        MakeNode("iq", std::move(attrs),
                 std::vector<Node>{MakeNode("error", {{"code", "400"}, {"text", "bad-request"}})}));
    return;
  }
  Bytes r(12);
  wa::RandomBytes(r);
  CodeRequest req;
  req.phone = phone;
  req.ref = Base64Encode(r);
  const ByteView w = wrapped->ContentBytes();
  req.wrapped_ephemeral.assign(w.begin(), w.end());
  Send(MakeNode("iq", std::move(attrs),
                std::vector<Node>{MakeNode(
                    "link_code_companion_reg", {},
                    std::vector<Node>{MakeNode("link_code_pairing_ref", {}, ToBytes(req.ref))})}));
  server_->log().info("conn {}: pairing code requested for {}", id_, wa::MaskPhone(phone));
  code_request_ = std::move(req);
}

// companion_finish: the phone opens the key bundle; with the code right, pair-success follows
// with the HMAC keyed by the adv secret both sides derived.
void SimConn::OnCompanionFinish(const Node& iq, Node::Attrs attrs) {
  if (!code_request_ || !code_request_->hello) {
    attrs[1].second = "error";
    Send(MakeNode(
        "iq", std::move(attrs),
        std::vector<Node>{MakeNode("error", {{"code", "404"}, {"text", "item-not-found"}})}));
    return;
  }
  CodeRequest req = std::move(*code_request_);
  auto& account = server_->accounts[req.phone];
  auto scanned = wa::PhoneOpenCompanionFinish(iq, *req.hello, account.key);
  if (scanned.ok() && scanned->identity_pub != identity_pub_) {
    scanned = absl::UnauthenticatedError("the companion identity is not the registered one");
  }
  if (!scanned.ok()) {
    // The phone says the code was wrong; the companion may be given the right one.
    ++server_->counters.pairings_rejected;
    server_->log().info("conn {}: pairing code refused: {}", id_, scanned.status().message());
    attrs[1].second = "error";
    Send(MakeNode(
        "iq", std::move(attrs),
        std::vector<Node>{MakeNode("error", {{"code", "401"}, {"text", "not-authorized"}})}));
    req.done({200, {{"result", "wrong_code"}, {"text", std::string(scanned.status().message())}}});
    req.hello.reset();
    req.done = nullptr;
    code_request_ = std::move(req);
    return;
  }
  code_request_.reset();
  Send(MakeNode("iq", std::move(attrs)));
  scanned->noise_pub = noise_pub_;
  SendPairSuccess(*scanned, req.phone, req.opts, std::move(req.done));
}

// §8 steps 8–9: the companion's countersignature (or refusal); then 515.
void SimConn::OnPairAnswer(const Node& iq) {
  PendingPair p = std::move(*pairing_);
  pairing_.reset();
  auto& log = server_->log();
  if (iq.AttrOr("type") == "error") {
    const Node* err = iq.Child("error");
    ++server_->counters.pairings_rejected;
    log.info("conn {}: the companion refused pairing ({})", id_,
             err ? err->AttrOr("text") : std::string("no reason"));
    p.done({200,
            {{"result", "rejected"},
             {"code", err ? err->AttrOr("code") : ""},
             {"text", err ? err->AttrOr("text") : ""}}});
    SendAndClose(MakeNode("stream:error", {{"code", "401"}}));
    return;
  }
  if (auto st = wa::VerifyPairDeviceSign(iq, identity_pub_, p.account_pub); !st.ok()) {
    ++server_->counters.pairings_rejected;
    log.warn("conn {}: pair-device-sign refused: {}", id_, st.message());
    p.done({200, {{"result", "bad_signature"}, {"text", std::string(st.message())}}});
    SendAndClose(MakeNode("stream:error", {{"code", "401"}}));
    return;
  }
  Device d;
  d.noise_pub = noise_pub_;
  d.lid = p.lid;
  d.name = p.name;
  d.key_index = p.key_index;
  server_->devices[p.device_key] = d;
  ++server_->counters.pairings;
  registering_ = false;
  log.info("conn {}: paired device {}", id_, p.device_key);
  p.done({200,
          {{"result", "paired"},
           {"jid", absl::StrCat(p.device_key, "@s.whatsapp.net")},
           {"lid", p.lid}}});
  SendAndClose(MakeNode("stream:error", {{"code", "515"}}));
}

// <stream:error code=…>, with <conflict type=…> when `conflict` is not empty (401 alone
// means device_removed: the device is logged out, as the real server does it).
void SimConn::SendStreamError(int code, std::optional<std::string> conflict) {
  if (!conflict) conflict = code == 401 ? "device_removed" : "";
  if (*conflict == "device_removed") {
    if (auto it = server_->devices.find(jid_); it != server_->devices.end()) {
      it->second.logged_out = true;
    }
  }
  std::vector<Node> children;
  if (!conflict->empty()) children.push_back(MakeNode("conflict", {{"type", *conflict}}));
  Node::Attrs attrs;
  if (code > 0) attrs.emplace_back("code", std::to_string(code));
  SendAndClose(MakeNode("stream:error", std::move(attrs), std::move(children)));
}

// An <ack> counts only when it answers a stanza sent here with exactly the attributes the
// real server expects (whatsmeow's sendAck): class, id, to = the stanza's from, participant
// and recipient as the stanza had them, type except for messages.
void SimConn::OnAck(const Node& ack) {
  auto it = awaiting_ack_.find(ack.AttrOr("id"));
  if (it == awaiting_ack_.end()) {
    // whatsmeow acks a message it could not decrypt after its retry receipt settled it.
    if (std::find(settled_.begin(), settled_.end(), ack.AttrOr("id")) == settled_.end()) {
      ++acks_mismatched_;
    }
    return;
  }
  Node::Attrs got;
  for (const auto& [k, v] : ack.attrs) {
    if (k != "id") got.emplace_back(k, v);
  }
  std::sort(got.begin(), got.end());
  if (got == it->second.expect) {
    ++acks_matched_;
    awaiting_ack_.erase(it);
  } else {
    ++acks_mismatched_;
  }
}

// A stanza `tag` (message, receipt, notification, status, appdata, call) from `from` with the
// optional attributes of `extra` (type, participant, recipient), and the ack it calls for.
OfflineStanza SimConn::MakeStanza(const std::string& tag, const std::string& from,
                                  const json& extra) {
  Bytes id_bytes(8);
  wa::RandomBytes(id_bytes);
  std::string id = "3EB0" + wasentinel::HexEncode(id_bytes);
  absl::AsciiStrToUpper(&id);
  // "t": when it was sent (Unix seconds; default now), e.g. a receipt the phone sent earlier.
  const int64_t t = extra.contains("t") && extra["t"].is_number_integer()
                        ? extra["t"].get<int64_t>()
                        : absl::ToUnixSeconds(absl::Now());
  Node::Attrs attrs = {{"from", from}, {"id", id}, {"t", std::to_string(t)}};
  Node::Attrs expect = {{"class", tag}, {"to", from}};
  for (const char* key : {"type", "participant", "recipient"}) {
    if (!extra.contains(key) || !extra[key].is_string()) continue;
    const std::string value = extra[key];
    attrs.emplace_back(key, value);
    if (std::string_view(key) != "type" || tag != "message") expect.emplace_back(key, value);
  }
  std::sort(expect.begin(), expect.end());
  if (tag != "message") return {MakeNode(tag, std::move(attrs)), std::move(expect)};
  Bytes ciphertext(48);
  wa::RandomBytes(ciphertext);
  return {MakeNode(tag, std::move(attrs),
                   std::vector<Node>{MakeNode("enc", {{"v", "2"}, {"type", "msg"}}, ciphertext)}),
          std::move(expect)};
}

// Sends a stanza `tag` (message, receipt, notification, status, appdata, call) from `from`
// with the optional attributes, and expects its ack. Answers its id.
std::string SimConn::SendStanza(const std::string& tag, const std::string& from,
                                const json& extra) {
  OfflineStanza out = MakeStanza(tag, from, extra);
  std::string id = out.stanza.AttrOr("id");
  Expect(std::move(out));
  return id;
}

// Sends `s` and waits for its ack; unacked when the connection ends, it goes back to the
// device's offline queue.
void SimConn::Expect(OfflineStanza s) {
  if (s.stanza.tag == "message") ++server_->counters.messages_sent;
  s.sent = ++sent_;
  Send(s.stanza);
  const std::string id = s.stanza.AttrOr("id");
  awaiting_ack_[id] = std::move(s);
}

// After <success>: what waits for the device. An empty queue is <ib><offline count="0"/> at
// once; else <ib><offline_preview> with the counts by class, and the stanzas once the client
// asks with <ib><offline_batch> (Baileys asks for 100; whatsmeow never asks, so they follow
// after a second anyway), then <ib><offline count=N/>.
void SimConn::OfferOffline() {
  auto it = server_->devices.find(jid_);
  if (it != server_->devices.end()) offering_ = std::exchange(it->second.offline, {});
  if (offering_.empty()) {
    offline_done_ = true;
    Send(MakeNode("ib", {}, std::vector<Node>{MakeNode("offline", {{"count", "0"}})}));
    return;
  }
  std::map<std::string, int> by_class;
  for (const auto& o : offering_) ++by_class[o.stanza.tag];
  Node::Attrs counts = {{"count", std::to_string(offering_.size())}};
  for (const char* cls : {"appdata", "message", "notification", "receipt"}) {
    counts.emplace_back(cls, std::to_string(by_class[cls]));
  }
  Send(MakeNode("ib", {}, std::vector<Node>{MakeNode("offline_preview", std::move(counts))}));
  offline_timer_ = std::make_unique<asio::steady_timer>(server_->io(), std::chrono::seconds(1));
  offline_timer_->async_wait([weak = weak_from_this()](beast::error_code ec) {
    if (auto self = weak.lock(); self && !ec) self->DeliverOffline();
  });
}

void SimConn::DeliverOffline() {
  if (offline_done_ || closed_) return;
  offline_done_ = true;
  if (offline_timer_) offline_timer_->cancel();
  const size_t n = offering_.size();
  server_->counters.offline_delivered += static_cast<int64_t>(n);
  for (auto& o : offering_) {
    // What the server kept for the device is marked so (Baileys reads `offline` to tell a
    // backlog from live traffic).
    if (o.stanza.tag == "message" && !o.stanza.Attr("offline")) {
      o.stanza.attrs.emplace_back("offline", "0");
    }
    Expect(std::move(o));
  }
  offering_.clear();
  Send(MakeNode("ib", {}, std::vector<Node>{MakeNode("offline", {{"count", std::to_string(n)}})}));
  server_->log().info("conn {}: {} offline stanzas delivered to {}", id_, n, jid_);
}

std::string SimConn::SendMessage(const std::string& from) {
  Bytes id_bytes(8);
  wa::RandomBytes(id_bytes);
  std::string id = "3EB0" + wasentinel::HexEncode(id_bytes);
  absl::AsciiStrToUpper(&id);
  Bytes ciphertext(48);
  wa::RandomBytes(ciphertext);
  Send(MakeNode("message",
                {{"from", from},
                 {"type", "text"},
                 {"id", id},
                 {"t", std::to_string(absl::ToUnixSeconds(absl::Now()))}},
                std::vector<Node>{MakeNode("enc", {{"v", "2"}, {"type", "msg"}}, ciphertext)}));
  ++server_->counters.messages_sent;
  return id;
}

// What this connection was given and did not acknowledge waits for the device's next login,
// in the order it was sent, before what it was offered and never fetched. At most once: at
// the end, or when a newer login replaces it.
void SimConn::Requeue() {
  if (auto it = server_->devices.find(jid_); it != server_->devices.end() && logged_in_) {
    std::vector<OfflineStanza> unacked;
    for (auto& [id, o] : awaiting_ack_) unacked.push_back(std::move(o));
    std::sort(unacked.begin(), unacked.end(),
              [](const OfflineStanza& a, const OfflineStanza& b) { return a.sent < b.sent; });
    auto& queue = it->second.offline;
    for (auto& o : unacked) queue.push_back(std::move(o));
    for (auto& o : offering_) queue.push_back(std::move(o));
  }
  awaiting_ack_.clear();
  offering_.clear();
}

}  // namespace wasentinel::sim::sim_internal
