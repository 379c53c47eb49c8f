// The sending half of the Messenger (messenger.h): the outbox, device lists, bundles,
// per-device encryption, acks, receipts and retries. Shapes as whatsmeow sends them (send.go
// prepareMessageNode / encryptMessageForDevices, retry.go handleRetryReceipt, receipt.go
// MarkRead); docs/wa-protocol.md §11.
#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "e2ee/message_content.h"
#include "e2ee/prekey_stanzas.h"
#include "messenger.h"
#include "pairing.h"
#include "pg_signal_store.h"
#include "store.h"
#include "usync.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::session {
namespace {

using wa::MakeNode;
using wa::Node;

constexpr absl::Duration kQueryTimeout = absl::Seconds(30);
// Retry receipts answered per device and message at most (whatsmeow: 10).
constexpr int kMaxRetriesAnswered = 10;
// Read receipts in one <receipt> at most.
constexpr size_t kReadReceiptBatch = 50;

// "15551234567" of "15551234567:3@s.whatsapp.net" (or of "15551234567.0:3@…").
std::string UserOf(std::string_view jid) {
  return std::string(jid.substr(0, jid.find_first_of(".:@")));
}

std::string DeviceJid(const std::string& user, uint32_t device) {
  return device == 0 ? absl::StrCat(user, "@s.whatsapp.net")
                     : absl::StrCat(user, ":", device, "@s.whatsapp.net");
}

std::string QueueKey(const StoredMessage& m) { return absl::StrCat(m.chat, "/", m.id); }

Node EncNode(const signal::Ciphertext& ct, std::optional<int> retry_count = std::nullopt) {
  Node::Attrs attrs = {{"v", "2"},
                       {"type", ct.type == signal::MessageType::kPreKey ? "pkmsg" : "msg"}};
  if (retry_count) attrs.emplace_back("count", std::to_string(*retry_count));
  return MakeNode("enc", std::move(attrs), ct.bytes);
}

// Processes `bundle` for `address`; a changed identity (the contact reinstalled WhatsApp) is
// trusted anew, as whatsmeow does by default (AutoTrustIdentity).
absl::Status TakeBundle(signal::Protocol& protocol, signal::JournalStore& store,
                        const signal::Address& address, const signal::PreKeyBundle& bundle) {
  absl::Status st = protocol.ProcessBundle(address, bundle);
  if (absl::IsFailedPrecondition(st)) {
    store.ForgetPeer(address.name);
    st = protocol.ProcessBundle(address, bundle);
  }
  return st;
}

}  // namespace

Messenger::Sender* Messenger::FindSender(const std::string& session_id, uint64_t epoch) {
  auto it = senders_.find(session_id);
  return it == senders_.end() || it->second.epoch != epoch ? nullptr : &it->second;
}

void Messenger::Online(std::string session_id, int64_t lease_token,
                       const wa::DeviceCredentials& creds, std::shared_ptr<MessageLink> link) {
  Post([this, id = std::move(session_id), lease_token, creds, link = std::move(link)] {
    Sender& s = senders_[id];
    s = Sender{};
    s.lease_token = lease_token;
    s.creds = creds;
    s.link = link;
    s.epoch = next_epoch_++;
    s.tokens = std::max(1.0, options_.sends_per_second);
    s.refilled_at = absl::Now();
    s.timer = std::make_unique<boost::asio::steady_timer>(io_);
    Pump(id);
  });
}

void Messenger::Offline(std::string session_id) {
  Post([this, id = std::move(session_id)] { senders_.erase(id); });
}

void Messenger::Wake(std::string session_id) {
  Post([this, id = std::move(session_id)] {
    auto it = senders_.find(id);
    if (it == senders_.end()) return;
    it->second.reload = true;
    Pump(id);
  });
}

void Messenger::WakeAll() {
  Post([this] {
    std::vector<std::string> ids;
    for (auto& [id, s] : senders_) {
      s.reload = true;
      ids.push_back(id);
    }
    for (const auto& id : ids) Pump(id);
  });
}

void Messenger::OnStanza(std::string session_id, wa::Node stanza) {
  Post([this, id = std::move(session_id), stanza = std::move(stanza)] {
    auto it = senders_.find(id);
    if (it == senders_.end()) return;
    Sender& s = it->second;
    if (stanza.tag == "ack") {
      OnAck(id, s, stanza);
    } else if (stanza.tag == "receipt") {
      OnReceipt(id, s, stanza);
    } else if (stanza.tag == "notification" && stanza.AttrOr("type") == "devices") {
      // A contact (or we) added or removed a device: its list is read again when next needed.
      s.devices.erase(UserOf(stanza.AttrOr("from")));
    }
  });
}

void Messenger::RetryLater(const std::string& session_id, absl::Duration after) {
  auto it = senders_.find(session_id);
  if (it == senders_.end()) return;
  Sender* s = &it->second;
  s->timer->expires_after(absl::ToChronoMilliseconds(after));
  s->timer->async_wait([this, id = session_id, epoch = s->epoch](boost::system::error_code ec) {
    if (ec || !FindSender(id, epoch)) return;
    Pump(id);
  });
}

void Messenger::Advance(const std::string& session_id, Sender& s, const std::string& id,
                        const std::string& status, const std::string& failure) {
  auto moved = store_.Advance(session_id, s.lease_token, id, status, failure);
  if (!moved.ok()) {
    log_->warn("session {}: message {} not recorded {}: {}", session_id, id, status,
               moved.status().message());
    // Recorded again before the next send (Pump), unless the lease went elsewhere.
    if (!IsFenced(moved.status())) s.unrecorded.push_back({id, status, failure});
    return;
  }
  if (*moved && metrics_) {
    if (status == kServerAck) metrics_->MessageSent("acked");
    if (status == kFailed) metrics_->MessageSent("failed");
  }
  if (*moved && status == kFailed) {
    log_->warn("session {}: message {} failed: {}", session_id, id, failure);
  }
}

// Sends the head of the outbox, or what it owes first: the next step of the head message when
// none is under way, read receipts, failures of expired messages. Every step that waits for
// the server (or the rate limit) ends here and comes back through Pump.
void Messenger::Pump(const std::string& session_id) {
  auto it = senders_.find(session_id);
  if (it == senders_.end()) return;
  Sender& s = it->second;
  if (s.busy || s.in_flight) return;
  // Statuses the database did not take a moment ago, first: a message acked must not stay
  // PENDING, or the next outbox read would send it again.
  while (!s.unrecorded.empty()) {
    const auto [id, status, failure] = s.unrecorded.front();
    auto moved = store_.Advance(session_id, s.lease_token, id, status, failure);
    if (!moved.ok() && !IsFenced(moved.status())) return RetryLater(session_id, absl::Seconds(2));
    s.unrecorded.pop_front();
  }
  if (s.queue.empty() && s.reload) {
    s.reload = false;
    auto rows = store_.Outbox(session_id);
    if (!rows.ok()) {
      log_->warn("session {}: outbox not read: {}", session_id, rows.status().message());
      s.reload = true;
      return RetryLater(session_id, absl::Seconds(2));
    }
    // Outbox reads 1000 rows at most: with more, it is read again once these are done.
    s.reload = rows->size() >= 1000;
    for (auto& m : *rows) {
      if (s.queued.insert(QueueKey(m)).second) s.queue.push_back(std::move(m));
    }
  }
  const std::string own = std::to_string(s.creds.phone);
  while (!s.queue.empty()) {
    StoredMessage& m = s.queue.front();
    if (!m.from_me) {
      if (m.read_receipt_due)
        SendReadReceipts(session_id, s);
      else {
        s.queued.erase(QueueKey(m));
        s.queue.pop_front();
      }
      continue;
    }
    if (m.status != kPending) {
      s.queued.erase(QueueKey(m));
      s.queue.pop_front();
      continue;
    }
    if (!m.sealed_body_error.empty()) {
      Advance(session_id, s, m.id, kFailed, m.sealed_body_error);
      s.queued.erase(QueueKey(m));
      s.queue.pop_front();
      continue;
    }
    const absl::Time now = absl::Now();
    if (m.deadline && *m.deadline < now) {
      Advance(session_id, s, m.id, kFailed, "not sent before its deadline");
      s.queued.erase(QueueKey(m));
      s.queue.pop_front();
      continue;
    }
    // The rate limit: a token bucket of sends_per_second tokens.
    const double rate = std::max(0.01, options_.sends_per_second);
    s.tokens =
        std::min(std::max(1.0, rate), s.tokens + absl::ToDoubleSeconds(now - s.refilled_at) * rate);
    s.refilled_at = now;
    if (s.tokens < 1) return RetryLater(session_id, absl::Seconds((1 - s.tokens) / rate));
    s.busy = true;
    std::vector<std::string> users = {UserOf(m.chat)};
    if (users[0] != own) users.push_back(own);
    ResolveDevices(session_id, s, std::move(users),
                   [this, session_id](Sender& s, std::vector<DeviceId> devices) {
                     EnsureSessions(session_id, s, devices, [this, session_id, devices](Sender& s) {
                       EncryptAndSend(session_id, s, devices);
                     });
                   });
    return;
  }
  if (s.reload) Pump(session_id);
}

void Messenger::SendReadReceipts(const std::string& session_id, Sender& s) {
  const StoredMessage& head = s.queue.front();
  const std::string chat = head.chat;
  const std::string sender = head.sender;
  std::vector<std::string> ids;
  while (!s.queue.empty() && ids.size() < kReadReceiptBatch) {
    const StoredMessage& m = s.queue.front();
    if (m.from_me || !m.read_receipt_due || m.chat != chat || m.sender != sender) break;
    ids.push_back(m.id);
    s.queued.erase(QueueKey(m));
    s.queue.pop_front();
  }
  Node::Attrs attrs = {{"id", ids.front()},
                       {"type", "read"},
                       {"to", chat},
                       {"t", std::to_string(absl::ToUnixSeconds(absl::Now()))}};
  // In a group the receipt names whose message it was (without the device).
  if (!absl::EndsWith(chat, "@s.whatsapp.net")) {
    attrs.emplace_back("participant", UserOf(sender) + "@s.whatsapp.net");
  }
  std::vector<Node> items;
  for (size_t i = 1; i < ids.size(); ++i) items.push_back(MakeNode("item", {{"id", ids[i]}}));
  s.link->Send(items.empty() ? MakeNode("receipt", std::move(attrs))
                             : MakeNode("receipt", std::move(attrs),
                                        std::vector<Node>{MakeNode("list", {}, std::move(items))}));
  if (auto st = store_.ReadReceiptsSent(session_id, s.lease_token, chat, ids); !st.ok()) {
    log_->warn("session {}: {} read receipts sent but not noted: {}", session_id, ids.size(),
               st.message());
  }
}

void Messenger::ResolveDevices(const std::string& session_id, Sender& s,
                               std::vector<std::string> users,
                               std::function<void(Sender&, std::vector<DeviceId>)> then) {
  auto collect = [users](Sender& s) {
    std::vector<DeviceId> out;
    for (const auto& u : users) {
      for (uint32_t d : s.devices[u]) out.emplace_back(u, d);
    }
    return out;
  };
  std::vector<std::string> missing;
  for (const auto& u : users) {
    if (!s.devices.contains(u)) missing.push_back(u);
  }
  if (missing.empty()) return then(s, collect(s));
  const uint64_t epoch = s.epoch;
  s.link->Query(
      wa::DeviceListQuery(missing, absl::StrCat(session_id.substr(0, 8), ".", epoch)),
      [this, session_id, epoch, missing, collect, then](absl::StatusOr<Node> answer) {
        Post([=, this] {
          Sender* s = FindSender(session_id, epoch);
          if (!s) return;
          auto lists =
              answer.ok()
                  ? wa::ParseDeviceLists(*answer)
                  : absl::StatusOr<std::map<std::string, std::vector<uint32_t>>>(answer.status());
          if (!lists.ok()) {
            log_->warn("session {}: device lists not read: {}", session_id,
                       lists.status().message());
            s->busy = false;
            return RetryLater(session_id, absl::Seconds(5));
          }
          // A user missing from the answer (an error for that user) is not cached: asked again
          // next time. One listed with no devices is not on WhatsApp.
          for (const auto& u : missing) {
            if (auto it = lists->find(u); it != lists->end()) s->devices[u] = it->second;
          }
          then(*s, collect(*s));
        });
      },
      kQueryTimeout);
}

void Messenger::EnsureSessions(const std::string& session_id, Sender& s,
                               std::vector<DeviceId> devices, std::function<void(Sender&)> then) {
  auto device = Load(session_id, s.creds);
  if (!device.ok()) {
    log_->warn("session {}: Signal state not loaded: {}", session_id, device.status().message());
    s.busy = false;
    return RetryLater(session_id, absl::Seconds(2));
  }
  const std::string own = std::to_string(s.creds.phone);
  std::vector<std::string> jids;
  for (const auto& [user, dev] : devices) {
    if (user == own && dev == s.creds.device) continue;
    auto has = (*device)->protocol->HasSession({user, static_cast<int32_t>(dev)});
    if (has.ok() && !*has && jids.size() < 500) jids.push_back(DeviceJid(user, dev));
  }
  if (jids.empty()) return then(s);
  const uint64_t epoch = s.epoch;
  s.link->Query(
      signal::BundleRequestIq(jids),
      [this, session_id, epoch, then](absl::StatusOr<Node> answer) {
        Post([=, this] {
          Sender* s = FindSender(session_id, epoch);
          if (!s) return;
          auto bundles = answer.ok()
                             ? signal::ParseBundleResultIq(*answer)
                             : absl::StatusOr<std::vector<signal::DeviceBundle>>(answer.status());
          auto device = Load(session_id, s->creds);
          if (!bundles.ok() || !device.ok()) {
            log_->warn("session {}: bundles not fetched: {}", session_id,
                       (!bundles.ok() ? bundles.status() : device.status()).message());
            s->busy = false;
            return RetryLater(session_id, absl::Seconds(5));
          }
          for (const auto& b : *bundles) {
            auto jid = wa::Jid::Parse(b.jid);
            if (!jid.ok()) continue;
            const signal::Address address{jid->user, std::max(jid->device, 0)};
            absl::Status st = b.bundle.status();
            if (st.ok())
              st = TakeBundle(*(*device)->protocol, *(*device)->store, address, *b.bundle);
            if (!st.ok()) {
              log_->warn("session {}: no Signal session with {}: {}", session_id, MaskJid(b.jid),
                         st.message());
            }
          }
          then(*s);
        });
      },
      kQueryTimeout);
}

void Messenger::EncryptAndSend(const std::string& session_id, Sender& s,
                               std::vector<DeviceId> devices) {
  StoredMessage& m = s.queue.front();
  const std::string own = std::to_string(s.creds.phone);
  const std::string to_user = UserOf(m.chat);
  auto device = Load(session_id, s.creds);
  auto dsm = signal::DeviceSentCopy(m.body, m.chat);
  if (!device.ok() || !dsm.ok()) {
    log_->warn("session {}: message {} not encrypted: {}", session_id, m.id,
               (!device.ok() ? device.status() : dsm.status()).message());
    s.busy = false;
    return RetryLater(session_id, absl::Seconds(2));
  }
  const Bytes padded = signal::Pad(m.body);
  const Bytes padded_dsm = signal::Pad(*dsm);
  std::vector<Node> participants;
  bool prekey = false;
  int to_recipient = 0;
  std::vector<std::pair<std::string, uint32_t>> all;
  for (const auto& [user, dev] : devices) {
    all.emplace_back(user, dev);
    if (user == own && dev == s.creds.device) continue;
    const signal::Address address{user, static_cast<int32_t>(dev)};
    auto ct =
        (*device)->protocol->Encrypt(address, user == own && to_user != own ? padded_dsm : padded);
    if (!ct.ok()) {
      log_->warn("session {}: message {} not encrypted for {}: {}", session_id, m.id,
                 MaskJid(DeviceJid(user, dev)), ct.status().message());
      continue;
    }
    prekey |= ct->type == signal::MessageType::kPreKey;
    if (user == to_user) ++to_recipient;
    participants.push_back(
        MakeNode("to", {{"jid", DeviceJid(user, dev)}}, std::vector<Node>{EncNode(*ct)}));
  }
  auto done_with_head = [&] {
    s.queued.erase(QueueKey(m));
    s.queue.pop_front();
    s.busy = false;
  };
  if (to_recipient == 0) {
    (void)Persist(session_id, s.lease_token, "store the Signal state of a message not sent");
    auto cached = s.devices.find(to_user);
    if (cached != s.devices.end() && cached->second.empty()) {
      Advance(session_id, s, m.id, kFailed, "the number is not on WhatsApp (no devices)");
      done_with_head();
    } else {
      // The device list was not answered, or no bundle was: asked again in a while; the
      // message's deadline decides when to give up.
      log_->warn("session {}: message {} reached no device of {}; trying again in 30 s", session_id,
                 m.id, MaskJid(m.chat));
      s.devices.erase(to_user);
      s.busy = false;
      return RetryLater(session_id, absl::Seconds(30));
    }
    // The next message in a moment, not in this call: a long run of failures must not nest.
    Post([this, session_id] { Pump(session_id); });
    return;
  }
  // The ratchet moved: stored before the stanza leaves, so a crash never reuses a message key.
  if (auto st = Persist(session_id, s.lease_token, "store the Signal state of a sent message");
      !st.ok()) {
    log_->warn("session {}: message {} not sent, its Signal state not stored: {}", session_id, m.id,
               st.message());
    s.busy = false;
    if (IsFenced(st)) return;  // another replica holds the session now
    return RetryLater(session_id, absl::Seconds(2));
  }
  std::vector<Node> content = {MakeNode("participants", {}, std::move(participants))};
  if (prekey && s.creds.account) {
    content.push_back(MakeNode("device-identity", {}, wa::SignedDeviceIdentity(*s.creds.account)));
  }
  const std::string id = m.id;
  s.link->Send(
      MakeNode("message", {{"id", id}, {"to", m.chat}, {"type", "text"}}, std::move(content)));
  if (metrics_) metrics_->MessageSent("sent");
  s.tokens -= 1;
  s.busy = false;
  s.in_flight = id;
  s.expected_phash = wa::ParticipantHash(all);
  s.timer->expires_after(absl::ToChronoMilliseconds(options_.ack_timeout));
  s.timer->async_wait([this, session_id, epoch = s.epoch, id](boost::system::error_code ec) {
    Sender* s = FindSender(session_id, epoch);
    if (ec || !s || s->in_flight != id) return;
    s->in_flight.reset();
    // A receipt may have settled it meanwhile (the ack was lost): then it is not sent again.
    auto row = store_.Get(session_id, id);
    if (row.ok() && row->status != kPending && !s->queue.empty() && s->queue.front().id == id) {
      s->queued.erase(QueueKey(s->queue.front()));
      s->queue.pop_front();
    } else {
      log_->warn("session {}: no server ack for message {} in {}; sending it again", session_id, id,
                 options_.ack_timeout);
    }
    Pump(session_id);
  });
}

void Messenger::OnAck(const std::string& session_id, Sender& s, const Node& ack) {
  if (ack.AttrOr("class") != "message") return;
  const std::string id = ack.AttrOr("id");
  if (!s.in_flight || *s.in_flight != id) return;  // a resend's ack, or an older attempt's
  s.timer->cancel();
  s.in_flight.reset();
  if (const std::string* error = ack.Attr("error")) {
    Advance(session_id, s, id, kFailed, absl::StrCat("WhatsApp refused it (error ", *error, ")"));
  } else {
    Advance(session_id, s, id, kServerAck);
    const std::string phash = ack.AttrOr("phash");
    if (!phash.empty() && phash != s.expected_phash) {
      // The server knows other devices than we encrypted for: read the lists again next time.
      log_->info(
          "session {}: the server's device list for message {} differs from ours; "
          "reading the device lists again",
          session_id, id);
      s.devices.clear();
    }
  }
  if (!s.queue.empty() && s.queue.front().id == id) {
    s.queued.erase(QueueKey(s.queue.front()));
    s.queue.pop_front();
  }
  Pump(session_id);
}

void Messenger::OnReceipt(const std::string& session_id, Sender& s, const Node& receipt) {
  const std::string type = receipt.AttrOr("type");
  if (type == "retry") return AnswerRetry(session_id, s, receipt);
  std::string status;
  if (type.empty() || type == "inactive") {
    status = kDelivered;
  } else if (type == "read" || type == "played") {
    status = kRead;
  } else {
    return;  // "sender" (our own devices), "read-self", "peer_msg", …: nothing of ours moves
  }
  std::vector<std::string> ids = {receipt.AttrOr("id")};
  if (const Node* list = receipt.Child("list")) {
    for (const Node& item : list->Children()) ids.push_back(item.AttrOr("id"));
  }
  for (const auto& id : ids) {
    if (!id.empty()) Advance(session_id, s, id, status);
  }
}

void Messenger::AnswerRetry(const std::string& session_id, Sender& s, const Node& receipt) {
  const Node* retry = receipt.Child("retry");
  const std::string from = receipt.AttrOr("from");
  auto jid = wa::Jid::Parse(receipt.AttrOr("participant", from));
  if (!retry || !jid.ok()) return;
  const std::string id = retry->AttrOr("id", receipt.AttrOr("id"));
  int count = 1;
  (void)absl::SimpleAtoi(retry->AttrOr("count"), &count);
  if (++s.retries[absl::StrCat(jid->ToString(), "/", id)] > kMaxRetriesAnswered) {
    log_->warn("session {}: retry receipt for {} from {} dropped: answered {} times already",
               session_id, id, MaskJid(jid->ToString()), kMaxRetriesAnswered);
    return;
  }
  auto m = store_.Get(session_id, id);
  if (!m.ok() || !m->from_me) {
    log_->info("session {}: retry receipt for message {} that it did not send (or pruned)",
               session_id, id);
    return;
  }
  const int32_t dev = std::max(jid->device, 0);
  if (receipt.Child("keys")) {
    auto bundle = signal::ParseRetryReceiptKeys(receipt, dev);
    if (!bundle.ok()) {
      log_->warn("session {}: retry receipt for {} with unreadable keys: {}", session_id, id,
                 bundle.status().message());
      return;
    }
    return Resend(session_id, s.epoch, receipt, *std::move(m), *std::move(bundle));
  }
  auto device = Load(session_id, s.creds);
  if (!device.ok()) return;
  auto has = (*device)->protocol->HasSession({jid->user, dev});
  if (count < 2 && has.ok() && *has) {
    return Resend(session_id, s.epoch, receipt, *std::move(m), std::nullopt);
  }
  // From the second retry (or without a session): a fresh bundle, as whatsmeow does.
  const uint64_t epoch = s.epoch;
  s.link->Query(
      signal::BundleRequestIq({DeviceJid(jid->user, dev)}),
      [this, session_id, epoch, receipt, m = *std::move(m)](absl::StatusOr<Node> answer) {
        Post([=, this] {
          auto bundles = answer.ok()
                             ? signal::ParseBundleResultIq(*answer)
                             : absl::StatusOr<std::vector<signal::DeviceBundle>>(answer.status());
          if (!bundles.ok() || bundles->empty() || !bundles->front().bundle.ok()) {
            log_->warn("session {}: no bundle to answer a retry of {}", session_id, m.id);
            return;
          }
          Resend(session_id, epoch, receipt, m, *bundles->front().bundle);
        });
      },
      kQueryTimeout);
}

void Messenger::Resend(const std::string& session_id, uint64_t epoch, Node receipt, StoredMessage m,
                       std::optional<signal::PreKeyBundle> bundle) {
  Sender* s = FindSender(session_id, epoch);
  if (!s) return;
  const Node* retry = receipt.Child("retry");
  const std::string from = receipt.AttrOr("from");
  auto jid = wa::Jid::Parse(receipt.AttrOr("participant", from));
  auto device = Load(session_id, s->creds);
  if (!retry || !jid.ok() || !device.ok()) return;
  const signal::Address address{jid->user, std::max(jid->device, 0)};
  if (bundle) {
    if (auto st = TakeBundle(*(*device)->protocol, *(*device)->store, address, *bundle); !st.ok()) {
      log_->warn("session {}: retry of {}: bundle refused: {}", session_id, m.id, st.message());
      return;
    }
  }
  const std::string own = std::to_string(s->creds.phone);
  Bytes plaintext = m.body;
  if (jid->user == own && UserOf(m.chat) != own) {
    auto dsm = signal::DeviceSentCopy(m.body, m.chat);
    if (!dsm.ok()) return;
    plaintext = *std::move(dsm);
  }
  auto ct = (*device)->protocol->Encrypt(address, signal::Pad(plaintext));
  if (!ct.ok()) {
    log_->warn("session {}: retry of {} not encrypted: {}", session_id, m.id,
               ct.status().message());
    return;
  }
  if (auto st = Persist(session_id, s->lease_token, "store the Signal state of a resent message");
      !st.ok()) {
    log_->warn("session {}: retry of {} not sent: {}", session_id, m.id, st.message());
    return;
  }
  int count = 1;
  (void)absl::SimpleAtoi(retry->AttrOr("count"), &count);
  Node::Attrs attrs = {{"to", from},
                       {"type", "text"},
                       {"id", m.id},
                       {"t", std::to_string(absl::ToUnixSeconds(m.sent_at))}};
  const bool group = !absl::EndsWith(m.chat, "@s.whatsapp.net");
  if (!group) attrs.emplace_back("device_fanout", "false");
  for (const char* k : {"participant", "recipient"}) {
    if (const std::string* v = receipt.Attr(k)) attrs.emplace_back(k, *v);
  }
  std::vector<Node> content = {EncNode(*ct, count)};
  if (ct->type == signal::MessageType::kPreKey && s->creds.account) {
    content.push_back(MakeNode("device-identity", {}, wa::SignedDeviceIdentity(*s->creds.account)));
  }
  s->link->Send(MakeNode("message", std::move(attrs), std::move(content)));
  if (metrics_) metrics_->MessageSent("resent");
  log_->info("session {}: message {} sent again to {} (retry {})", session_id, m.id,
             MaskJid(jid->ToString()), count);
}

}  // namespace wasentinel::session
