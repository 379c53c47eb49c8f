// SessionService's message calls (README "Messages"): SendMessage, GetMessage, ListMessages,
// MarkRead and WatchMessages, over the message store (pg_message_store.h). Any replica answers
// them: sending and read receipts go through the session's outbox, which the lease holder's
// messenger (session/messenger.h) works off.
#include <openssl/rand.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crypto.h"
#include "e2ee/message_content.h"
#include "message_watch.h"
#include "request_checks.h"
#include "session_service.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/grpc_status.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/validation.h"

namespace wasentinel::session {
namespace {

constexpr size_t kMaxText = 65536;
constexpr absl::Duration kDefaultDeadline = absl::Hours(24);
constexpr absl::Duration kMaxDeadline = absl::Hours(24 * 7);

// A 1:1 chat as WhatsApp names it: "+1 555 123-4567", "15551234567" or
// "15551234567@s.whatsapp.net" → "15551234567@s.whatsapp.net". Groups ("…@g.us") are taken
// as they are where `groups` allows.
absl::StatusOr<std::string> ChatJid(std::string_view text, const char* field, bool groups) {
  std::string_view user = text;
  if (text.ends_with("@g.us")) {
    if (!groups) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": sending to groups is not supported; name a phone number"));
    }
    const std::string_view id = text.substr(0, text.size() - 5);
    if (id.empty() || id.size() > 64 || id.find_first_not_of("0123456789-") != id.npos) {
      return absl::InvalidArgumentError(absl::StrCat(field, " is not a group JID"));
    }
    return std::string(text);
  }
  if (text.ends_with("@s.whatsapp.net")) user = text.substr(0, text.size() - 15);
  auto digits = PhoneDigits(user, field);
  if (!digits.ok()) return digits.status();
  return *digits + "@s.whatsapp.net";
}

// A new WhatsApp message id as whatsmeow makes them (send.go GenerateMessageID): "3EB0" and
// the first 9 bytes, in upper-case hex, of SHA-256 over the time, our number and 16 random
// bytes.
std::string NewMessageId(const std::string& phone) {
  Bytes data(8);
  const uint64_t now = static_cast<uint64_t>(absl::ToUnixSeconds(absl::Now()));
  for (int i = 0; i < 8; ++i) data[i] = static_cast<uint8_t>(now >> (56 - 8 * i));
  data.insert(data.end(), phone.begin(), phone.end());
  const std::string cus = "@c.us";
  data.insert(data.end(), cus.begin(), cus.end());
  uint8_t random[16];
  wa::RandomBytes(random);
  data.insert(data.end(), random, random + 16);
  const auto digest = wa::Sha256({data});
  return "3EB0" + absl::AsciiStrToUpper(HexEncode(ByteView(digest.data(), 9)));
}

}  // namespace

grpc::Status SessionServiceImpl::MessageSession(const Caller& caller, const std::string& id,
                                                SessionRecord* out) {
  if (!messages_) {
    return {grpc::StatusCode::UNIMPLEMENTED, "messages are not enabled on this replica"};
  }
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(id, "session_id"));
  auto rec = store_.Get(id);
  if (absl::IsInvalidArgument(rec.status())) return ToGrpc(rec.status());  // not a UUID
  if (!rec.ok() || !caller.Sees(rec->tenant_id)) {
    return ToGrpc(
        NotVisible(caller, "session", id, rec.ok() ? absl::NotFoundError("") : rec.status()));
  }
  *out = *std::move(rec);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::SendMessage(grpc::ServerContext* ctx,
                                             const v1::SendMessageRequest* req,
                                             v1::SendMessageResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kMessagesSend, &caller));
  auto to = ChatJid(req->to(), "to", /*groups=*/false);
  if (!to.ok()) return ToGrpc(to.status());
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckText(
      "text", req->text(), {.max_bytes = kMaxText, .required = true, .multiline = true})));
  if (!req->client_message_id().empty()) {
    WAS_GRPC_RETURN_IF_ERROR(
        ToGrpc(CheckIdentifier("client_message_id", req->client_message_id(), 128)));
  }
  absl::Duration deadline = kDefaultDeadline;
  if (req->has_deadline()) {
    WAS_GRPC_RETURN_IF_ERROR(
        ToGrpc(CheckDuration("deadline", req->deadline().seconds(), req->deadline().nanos(),
                             absl::ToInt64Seconds(kMaxDeadline))));
    deadline = FromProto(req->deadline());
    if (deadline == absl::ZeroDuration()) return Invalid("deadline must be more than 0");
  }
  SessionRecord rec;
  WAS_GRPC_RETURN_IF_ERROR(MessageSession(caller, req->session_id(), &rec));
  if (!rec.credentials || rec.device_jid.empty()) {
    return {grpc::StatusCode::FAILED_PRECONDITION,
            absl::StrCat("session ", rec.id,
                         " has no linked device (logged out, or never paired): pair it first")};
  }
  OutboundMessage m;
  m.chat = *to;
  m.sender = rec.device_jid;
  m.id = NewMessageId(rec.phone_number);
  m.kind = "text";
  m.body = signal::TextMessage(req->text());
  m.client_message_id = req->client_message_id();
  const std::string request = absl::StrCat(*to, std::string(1, '\0'), req->text());
  const auto digest =
      wa::Sha256({ByteView(reinterpret_cast<const uint8_t*>(request.data()), request.size())});
  m.request_digest.assign(digest.begin(), digest.end());
  m.deadline = absl::Now() + deadline;
  auto queued = messages_->Queue(rec.id, m);
  if (!queued.ok()) return ToGrpc(queued.status());
  log_->info("session {}: message {} to {} queued", rec.id, queued->id, MaskJid(queued->chat));
  *resp->mutable_message() = ToProto(*queued);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::GetMessage(grpc::ServerContext* ctx,
                                            const v1::GetMessageRequest* req,
                                            v1::GetMessageResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kMessagesRead, &caller));
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckIdentifier("message_id", req->message_id(), 128)));
  std::string chat;
  if (!req->chat().empty()) {
    auto jid = ChatJid(req->chat(), "chat", /*groups=*/true);
    if (!jid.ok()) return ToGrpc(jid.status());
    chat = *jid;
  }
  SessionRecord rec;
  WAS_GRPC_RETURN_IF_ERROR(MessageSession(caller, req->session_id(), &rec));
  auto m = messages_->Get(rec.id, req->message_id(), chat);
  if (!m.ok()) return ToGrpc(m.status());
  *resp->mutable_message() = ToProto(*m);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::ListMessages(grpc::ServerContext* ctx,
                                              const v1::ListMessagesRequest* req,
                                              v1::ListMessagesResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kMessagesRead, &caller));
  auto chat = ChatJid(req->chat(), "chat", /*groups=*/true);
  if (!chat.ok()) return ToGrpc(chat.status());
  if (req->page_size() < 0 || req->page_size() > kMaxPageSize) {
    return Invalid(
        absl::StrCat("page_size must be 0 (default ", kDefaultPageSize, ") to ", kMaxPageSize));
  }
  const int size = req->page_size() == 0 ? kDefaultPageSize : req->page_size();
  WAS_GRPC_RETURN_IF_ERROR(CheckPageToken(req->page_token()));
  SessionRecord rec;
  WAS_GRPC_RETURN_IF_ERROR(MessageSession(caller, req->session_id(), &rec));
  auto page = messages_->List(rec.id, *chat, size + 1, req->page_token());
  if (!page.ok()) return ToGrpc(page.status());
  for (int i = 0; i < static_cast<int>(page->size()) && i < size; ++i) {
    *resp->add_messages() = ToProto((*page)[i]);
  }
  if (static_cast<int>(page->size()) > size) {
    resp->set_next_page_token(PgMessageStore::PageKey((*page)[size - 1]));
  }
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::MarkRead(grpc::ServerContext* ctx, const v1::MarkReadRequest* req,
                                          v1::MarkReadResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kMessagesSend, &caller));
  auto chat = ChatJid(req->chat(), "chat", /*groups=*/true);
  if (!chat.ok()) return ToGrpc(chat.status());
  if (req->message_ids().empty() || req->message_ids_size() > 500) {
    return Invalid("message_ids must name 1 to 500 messages");
  }
  std::vector<std::string> ids;
  for (const auto& id : req->message_ids()) {
    WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckIdentifier("message_ids", id, 128)));
    ids.push_back(id);
  }
  SessionRecord rec;
  WAS_GRPC_RETURN_IF_ERROR(MessageSession(caller, req->session_id(), &rec));
  auto found = messages_->MarkRead(rec.id, *chat, ids);
  if (!found.ok()) return ToGrpc(found.status());
  absl::flat_hash_set<std::string> marked(found->begin(), found->end());
  for (const auto& id : ids) {
    if (marked.contains(id)) {
      resp->add_marked(id);
    } else {
      resp->add_not_found(id);
    }
  }
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<v1::Message>* SessionServiceImpl::WatchMessages(
    grpc::CallbackServerContext* ctx, const v1::WatchMessagesRequest* req) {
  auto refuse = [](const grpc::Status& st) { return Refuse<v1::Message>(st); };
  Caller caller;
  if (auto st = Authorize(ctx, Scope::kMessagesRead, &caller); !st.ok()) return refuse(st);
  if (!messages_ || !feed_) {
    return refuse({grpc::StatusCode::UNIMPLEMENTED, "messages are not enabled on this replica"});
  }
  std::string session_id;
  if (!req->session_id().empty()) {
    SessionRecord rec;
    if (auto st = MessageSession(caller, req->session_id(), &rec); !st.ok()) return refuse(st);
    session_id = rec.id;
  }
  if (auto st = CheckTenantFilter(req->tenant_id()); !st.ok()) return refuse(st);
  auto tenant = TenantFilter(caller, req->tenant_id());
  if (!tenant.ok()) return refuse(ToGrpc(tenant.status()));
  auto bounds = messages_->Bounds();
  if (!bounds.ok()) return refuse(ToGrpc(bounds.status()));
  int64_t after = bounds->first;  // live only: from what is there now
  if (req->has_after_sequence()) {
    after = req->after_sequence();
    if (after < 0) return refuse(Invalid("after_sequence must be 0 or more"));
    // Where a follower that cannot have what it asked for may go on from without a gap.
    if (after > bounds->first || after < bounds->second) {
      ctx->AddTrailingMetadata(
          "x-watch-resume-after",
          absl::StrCat(after > bounds->first ? bounds->first : bounds->second));
    }
    if (after > bounds->first) {
      return refuse({grpc::StatusCode::OUT_OF_RANGE,
                     absl::StrCat("after_sequence ", after, " is past the log's end (",
                                  bounds->first, "): not a sequence of this service")});
    }
    if (after < bounds->second) {
      return refuse({grpc::StatusCode::OUT_OF_RANGE,
                     absl::StrCat("messages up to ", bounds->second,
                                  " were pruned; list the chats again and watch from now")});
    }
  }
  if (auto st = WatchStarts(caller); !st.ok()) return refuse(st);
  ctx->AddInitialMetadata("x-watch-replica", replica_);
  ctx->AddInitialMetadata("x-watch-after", absl::StrCat(after));
  return MessageWatch::Start(*feed_, *tenant, session_id, after,
                             [this, key = caller.key_name] { WatchEnded(key); });
}

}  // namespace wasentinel::session
