#include "messenger.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <pqxx/pqxx>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "e2ee/message_content.h"
#include "e2ee/prekey_stanzas.h"
#include "pairing.h"
#include "pg_message_store.h"
#include "pg_signal_store.h"
#include "store.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {
namespace {

using wa::MakeNode;
using wa::Node;

Bytes BigEndian32(uint32_t v) {
  return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

// The attributes a receipt or ack of `message` copies: to = its from, participant, recipient.
Node::Attrs AnswerAttrs(const Node& message) {
  Node::Attrs attrs = {{"id", message.AttrOr("id")}, {"to", message.AttrOr("from")}};
  for (const char* k : {"participant", "recipient"}) {
    if (const std::string* v = message.Attr(k)) attrs.emplace_back(k, *v);
  }
  return attrs;
}

}  // namespace

signal::Identity SignalIdentityOf(const wa::DeviceCredentials& creds) {
  signal::Identity identity;
  identity.key.pub.assign(creds.identity_key.pub.begin(), creds.identity_key.pub.end());
  identity.key.priv.assign(creds.identity_key.priv.begin(), creds.identity_key.priv.end());
  identity.registration_id = creds.registration_id;
  return identity;
}

signal::SignedPreKey SignedPreKeyOf(const wa::DeviceCredentials& creds) {
  signal::SignedPreKey key;
  key.id = creds.signed_pre_key_id;
  key.key.pub.assign(creds.signed_pre_key.pub.begin(), creds.signed_pre_key.pub.end());
  key.key.priv.assign(creds.signed_pre_key.priv.begin(), creds.signed_pre_key.priv.end());
  key.signature.assign(creds.signed_pre_key_signature.begin(),
                       creds.signed_pre_key_signature.end());
  return key;
}

absl::StatusOr<std::unique_ptr<Messenger>> Messenger::Create(PgPool& pool, const Sealer& sealer,
                                                             std::shared_ptr<spdlog::logger> log,
                                                             SessionMetrics* metrics,
                                                             MessengerOptions options) {
  WAS_ASSIGN_OR_RETURN(auto context, signal::Context::Create());
  return std::unique_ptr<Messenger>(
      new Messenger(pool, sealer, std::move(log), metrics, options, std::move(context)));
}

Messenger::Messenger(PgPool& pool, const Sealer& sealer, std::shared_ptr<spdlog::logger> log,
                     SessionMetrics* metrics, MessengerOptions options,
                     std::unique_ptr<signal::Context> context)
    : pool_(pool),
      sealer_(sealer),
      log_(std::move(log)),
      metrics_(metrics),
      options_(options),
      context_(std::move(context)),
      store_(pool, sealer),
      work_(io_.get_executor()),
      thread_([this] { io_.run(); }) {
  Post([this] { EvictIdle(); });
}

Messenger::~Messenger() {
  Post([this] {
    senders_.clear();  // their timers go, so the loop runs out once the posted work is done
    stopping_ = true;  // an evictor already due does not wait again
    evictor_.cancel();
    work_.reset();
  });
  thread_.join();
}

void Messenger::EvictIdle() {
  const absl::Time cutoff = absl::Now() - options_.idle_state;
  size_t evicted = 0;
  // Between two handlers no operation is under way; what a journal still holds then was never
  // written because nothing derived from it was sent (an encryption that failed), so dropping
  // it forks no ratchet.
  absl::erase_if(devices_, [&](const auto& entry) {
    const bool idle = entry.second.used_at < cutoff;
    evicted += idle;
    return idle;
  });
  if (evicted > 0) {
    log_->debug("Signal state of {} idle sessions dropped from memory; {} kept", evicted,
                devices_.size());
  }
  evictor_.expires_after(absl::ToChronoMilliseconds(
      std::clamp(options_.idle_state, absl::Milliseconds(100), absl::Minutes(1))));
  evictor_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && !stopping_) EvictIdle();
  });
}

void Messenger::Post(std::function<void()> f) { boost::asio::post(io_, std::move(f)); }

absl::Status Messenger::Persist(const std::string& session_id, int64_t lease_token,
                                std::string_view what, const std::vector<InboundMessage>& notes,
                                bool* stored) {
  auto it = devices_.find(session_id);
  if (it == devices_.end()) return absl::OkStatus();
  const auto journal = it->second.store->TakeJournal();
  absl::Status written;
  bool last_new = false;
  const absl::Status committed = pool_.Transact(what, [&](pqxx::work& w) {
    written = WriteSignalChanges(w, sealer_, session_id, lease_token, journal);
    for (const auto& note : notes) {
      if (!written.ok()) break;
      auto inserted = InsertInboundMessage(w, sealer_, session_id, note);
      written = inserted.status();
      if (inserted.ok()) last_new = *inserted;
    }
    if (!written.ok()) throw std::runtime_error(std::string(written.message()));
  });
  if (!written.ok() || !committed.ok()) {
    devices_.erase(session_id);  // memory is ahead of the database: load it again
    return !written.ok() ? written : committed;
  }
  if (stored) *stored = last_new;
  return absl::OkStatus();
}

void Messenger::Receive(std::string session_id, int64_t lease_token,
                        const wa::DeviceCredentials& creds, wa::Node message, Reply reply) {
  Post([this, id = std::move(session_id), lease_token, creds, message = std::move(message),
        reply = std::move(reply)] { reply(Process(id, lease_token, creds, message)); });
}

void Messenger::IdentityChanged(std::string session_id, int64_t lease_token,
                                const wa::DeviceCredentials& creds, std::string user) {
  Post([this, id = std::move(session_id), lease_token, creds, user = std::move(user)] {
    auto device = Load(id, creds);
    if (!device.ok()) return;  // nothing loaded: the next pkmsg from them is handled as it comes
    (*device)->store->ForgetPeer(user);
    if (auto st = Persist(id, lease_token, "forget a contact's identity", {IdentityNotice(user)});
        !st.ok()) {
      log_->warn("session {}: the forgotten identity of {} not stored: {}", id, MaskPhone(user),
                 st.message());
    }
    // Our cached device list of them is stale too.
    if (auto it = senders_.find(id); it != senders_.end()) it->second.devices.erase(user);
    log_->info("session {}: {} reinstalled WhatsApp; its sessions and identity are forgotten", id,
               MaskPhone(user));
  });
}

void Messenger::Forget(std::string session_id) {
  Post([this, id = std::move(session_id)] {
    devices_.erase(id);
    senders_.erase(id);
  });
}

InboundMessage Messenger::IdentityNotice(const std::string& user) {
  InboundMessage m;
  m.sent_at = absl::Now();
  m.id = absl::StrCat("identity-", absl::ToUnixMicros(m.sent_at));
  m.chat = absl::StrCat(user, "@s.whatsapp.net");
  m.sender = m.chat;
  m.kind = "identity_changed";
  return m;
}

absl::StatusOr<Node> Messenger::RetryKeys(const std::string& session_id, int64_t lease_token,
                                          const wa::DeviceCredentials& creds) {
  WAS_ASSIGN_OR_RETURN(Device * device, Load(session_id, creds));
  absl::StatusOr<uint32_t> first = absl::InternalError("no id");
  WAS_RETURN_IF_ERROR(pool_.Transact("take a pre-key id", [&](pqxx::work& w) {
    first = TakePreKeyIds(w, session_id, lease_token, 1);
  }));
  WAS_RETURN_IF_ERROR(first.status());
  WAS_ASSIGN_OR_RETURN(auto keys, context_->GeneratePreKeys(*first, 1));
  WAS_ASSIGN_OR_RETURN(Bytes record, context_->PreKeyRecord(keys.front()));
  WAS_RETURN_IF_ERROR(device->store->StorePreKey(keys.front().id, record));
  WAS_RETURN_IF_ERROR(Persist(session_id, lease_token, "store a retry receipt's pre-key"));
  const signal::SignedPreKey signed_key = SignedPreKeyOf(creds);
  return signal::RetryReceiptKeys(
      ByteView(creds.identity_key.pub.data(), creds.identity_key.pub.size()), keys.front(),
      signed_key, wa::SignedDeviceIdentity(*creds.account));
}

absl::StatusOr<Messenger::Device*> Messenger::Load(const std::string& session_id,
                                                   const wa::DeviceCredentials& creds) {
  if (auto it = devices_.find(session_id); it != devices_.end()) {
    it->second.used_at = absl::Now();
    return &it->second;
  }
  absl::StatusOr<signal::Image> image = absl::InternalError("not loaded");
  // Without the one-time pre-keys (hundreds, each used once): read one when a pkmsg names it.
  WAS_RETURN_IF_ERROR(pool_.Transact("load signal state", [&](pqxx::work& w) {
    image = LoadSignalImage(w, sealer_, session_id, /*with_pre_keys=*/false);
  }));
  if (!image.ok()) return image.status();
  // The identity and the signed pre-key are the credentials' (what pairing registered).
  const signal::Identity identity = SignalIdentityOf(creds);
  const signal::SignedPreKey signed_key = SignedPreKeyOf(creds);
  WAS_ASSIGN_OR_RETURN(image->signed_pre_keys[signed_key.id],
                       context_->SignedPreKeyRecord(signed_key, 0));
  Device d;
  d.store = std::make_unique<signal::JournalStore>(identity, *std::move(image));
  d.store->set_pre_key_loader([this, session_id](uint32_t id) {
    absl::StatusOr<std::optional<Bytes>> key = absl::InternalError("not read");
    const absl::Status read = pool_.Transact("load a one-time pre-key", [&](pqxx::work& w) {
      key = LoadSignalPreKey(w, sealer_, session_id, id);
    });
    if (!read.ok()) key = read;
    return key;
  });
  d.used_at = absl::Now();
  WAS_ASSIGN_OR_RETURN(d.protocol, signal::Protocol::Create(*context_, *d.store));
  return &devices_.emplace(session_id, std::move(d)).first->second;
}

std::vector<Node> Messenger::Process(const std::string& session_id, int64_t lease_token,
                                     const wa::DeviceCredentials& creds, const Node& message) {
  const std::string id = message.AttrOr("id");
  const std::string from = message.AttrOr("from");
  auto from_jid = wa::Jid::Parse(from);
  const bool group = from_jid.ok() && from_jid->server == "g.us";
  const std::string sender = group ? message.AttrOr("participant") : from;
  auto sender_jid = wa::Jid::Parse(sender);
  auto count = [&](const char* result) {
    if (metrics_) metrics_->MessageReceived(result);
  };
  auto retry = [&](const absl::Status& why) {
    count("undecryptable");
    // Counted per message as whatsmeow does (retry.go sendRetryReceipt): from the second on
    // the receipt carries our keys, so the sender can start a new session; after the fourth
    // none is sent.
    if (retry_counts_.size() > 10000) retry_counts_.clear();
    const int n = ++retry_counts_[absl::StrCat(session_id, "/", id)];
    log_->warn("session {}: message {} from {} not decrypted (retry {}): {}", session_id, id,
               MaskJid(sender), n, why.message());
    Node::Attrs ack = AnswerAttrs(message);
    ack.emplace_back("class", "message");
    if (n >= 5) return std::vector<Node>{MakeNode("ack", std::move(ack))};
    Node::Attrs attrs = AnswerAttrs(message);
    attrs.emplace_back("type", "retry");
    std::vector<Node> children = {
        MakeNode(
            "retry",
            {{"count", std::to_string(n)}, {"id", id}, {"t", message.AttrOr("t")}, {"v", "1"}}),
        MakeNode("registration", {}, BigEndian32(creds.registration_id))};
    if (n >= 2 && creds.account) {
      if (auto keys = RetryKeys(session_id, lease_token, creds); keys.ok()) {
        children.push_back(*std::move(keys));
      } else {
        log_->warn("session {}: retry receipt for {} without keys: {}", session_id, id,
                   keys.status().message());
      }
    }
    return std::vector<Node>{MakeNode("receipt", std::move(attrs), std::move(children)),
                             MakeNode("ack", std::move(ack))};
  };
  if (id.empty() || !from_jid.ok() || !sender_jid.ok() || sender_jid->user.empty()) {
    return retry(absl::InvalidArgumentError("no id, or no sender device"));
  }
  const signal::Address address{sender_jid->user, std::max(sender_jid->device, 0)};
  const std::string chat = group ? absl::StrCat(from_jid->user, "@g.us")
                           : message.Attr("recipient")
                               ? message.AttrOr("recipient")
                               : absl::StrCat(from_jid->user, "@", from_jid->server);
  auto device = Load(session_id, creds);
  if (!device.ok()) {
    count("failed");
    log_->warn("session {}: Signal state not loaded ({}); message {} waits for redelivery",
               session_id, device.status().message(), id);
    return {};
  }
  signal::Protocol& protocol = *(*device)->protocol;
  std::optional<signal::MessageContent> content;
  bool duplicate = false;
  bool identity_changed = false;
  absl::Status failure;
  for (const Node& enc : message.Children()) {
    if (enc.tag != "enc") continue;
    const std::string type = enc.AttrOr("type");
    absl::StatusOr<Bytes> padded = absl::InvalidArgumentError("unknown");
    if (type == "pkmsg" || type == "msg") {
      const auto kind =
          type == "pkmsg" ? signal::MessageType::kPreKey : signal::MessageType::kWhisper;
      padded = protocol.Decrypt(address, kind, enc.ContentBytes());
      if (signal::IsStoreError(padded.status())) {
        // Our store failed (a one-time pre-key not read), not the message: unanswered, WhatsApp
        // delivers it again (and the state in memory, which libsignal may have half changed,
        // is read again then).
        count("failed");
        log_->warn("session {}: message {}: Signal state not read ({}); it waits for redelivery",
                   session_id, id, padded.status().message());
        devices_.erase(session_id);
        return {};
      }
      if (type == "pkmsg" && absl::IsFailedPrecondition(padded.status())) {
        // A new identity: the contact reinstalled WhatsApp (the notification may come later,
        // or not at all). As whatsmeow does, forget the old one and decrypt again.
        log_->info("session {}: {} has a new identity; its old sessions are dropped", session_id,
                   MaskJid(sender));
        (*device)->store->ForgetPeer(address.name);
        identity_changed = true;
        padded = protocol.Decrypt(address, kind, enc.ContentBytes());
      }
    } else if (type == "skmsg" && group) {
      padded = protocol.GroupDecrypt(chat, address, enc.ContentBytes());
    } else {
      continue;  // another kind (bots' msmsg, …): not ours to read
    }
    if (absl::IsAlreadyExists(padded.status())) {
      duplicate = true;
      continue;
    }
    if (!padded.ok()) {
      failure = padded.status();
      break;
    }
    auto plain = signal::Unpad(*padded);
    if (!plain.ok()) {
      failure = plain.status();
      break;
    }
    auto parsed = signal::ParseMessageContent(*plain);
    if (!parsed.ok()) {
      failure = parsed.status();
      break;
    }
    if (parsed->sender_key && group) {
      if (auto st =
              protocol.ProcessSenderKeyDistribution(chat, address, parsed->sender_key->second);
          !st.ok()) {
        log_->warn("session {}: sender key of {} in {} refused: {}", session_id, MaskJid(sender),
                   MaskJid(chat), st.message());
      }
    }
    if (!content || !parsed->type.empty()) content = *std::move(parsed);
  }
  // What arrived, for the chat: the message, or what could not be decrypted with its reason
  // (replaced by the message if a resend decrypts).
  std::optional<InboundMessage> inbound;
  const bool unreadable = !failure.ok() || (!content && !duplicate);
  if (unreadable || (content && !content->type.empty())) {
    InboundMessage m;
    m.id = id;
    m.chat = chat;
    m.sender = sender;
    m.from_me = sender_jid->user == std::to_string(creds.phone);
    int64_t t = 0;
    m.sent_at = absl::SimpleAtoi(message.AttrOr("t"), &t) ? absl::FromUnixSeconds(t) : absl::Now();
    if (unreadable) {
      m.kind = "undecryptable";
      m.failure = failure.ok() ? "no <enc> this device can read" : std::string(failure.message());
    } else {
      if (content->device_sent_to) m.chat = *content->device_sent_to;
      m.kind = content->type;
      m.body = std::move(content->raw);
    }
    inbound = std::move(m);
  }
  // What decryption changed, and the message, in one transaction under the lease.
  std::vector<InboundMessage> notes;
  if (identity_changed) notes.push_back(IdentityNotice(sender_jid->user));
  if (inbound) notes.push_back(*inbound);
  bool stored = false;
  if (auto st = Persist(session_id, lease_token, "store a message", notes, &stored); !st.ok()) {
    count("failed");
    log_->warn("session {}: message {} not stored ({}); it waits for redelivery", session_id, id,
               st.message());
    return {};
  }
  stored = stored && inbound.has_value();
  if (unreadable) {
    return retry(failure.ok() ? absl::InvalidArgumentError("no <enc> this device can read")
                              : failure);
  }
  retry_counts_.erase(absl::StrCat(session_id, "/", id));
  count(stored ? "stored" : "duplicate");
  if (stored) {
    log_->debug("session {}: stored message {} ({}) in {}", session_id, id, inbound->kind,
                MaskJid(inbound->chat));
  }
  // Delivered (also for a redelivery: WhatsApp did not get the first receipt). Our account's
  // own messages get type "sender"; others a plain delivery receipt, as a business's primary
  // client sends (whatsmeow sends "inactive" unless told to send active receipts).
  Node::Attrs attrs = AnswerAttrs(message);
  if (sender_jid->user == std::to_string(creds.phone)) attrs.emplace_back("type", "sender");
  return {MakeNode("receipt", std::move(attrs))};
}

}  // namespace wasentinel::session
