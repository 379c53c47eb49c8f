#include "message_watch.h"

#include <boost/asio/post.hpp>

#include "e2ee/message_content.h"
#include "wasentinel/common/grpc_status.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::session {
namespace {

constexpr int kBatch = 100;

v1::MessageStatus StatusOf(const std::string& s) {
  v1::MessageStatus out = v1::MESSAGE_STATUS_UNSPECIFIED;
  v1::MessageStatus_Parse("MESSAGE_STATUS_" + s, &out);
  return out;
}

}  // namespace

v1::Message ToProto(const StoredMessage& m) {
  v1::Message p;
  p.set_sequence(m.sequence);
  p.set_session_id(m.session_id);
  p.set_tenant_id(m.tenant_id);
  p.set_message_id(m.id);
  p.set_chat(m.chat);
  p.set_sender(m.sender);
  p.set_from_me(m.from_me);
  p.set_kind(m.kind);
  if (auto content = signal::ParseMessageContent(m.body); content.ok() && content->text) {
    p.set_text(*content->text);
  }
  p.set_raw(std::string(m.body.begin(), m.body.end()));
  p.set_status(StatusOf(m.status));
  p.set_failure(m.failure.empty() ? m.sealed_body_error : m.failure);
  *p.mutable_sent_at() = ::wasentinel::ToProto(m.sent_at);
  *p.mutable_stored_at() = ::wasentinel::ToProto(m.stored_at);
  *p.mutable_status_at() = ::wasentinel::ToProto(m.status_at);
  p.set_client_message_id(m.client_message_id);
  return p;
}

MessageFeed::~MessageFeed() { reader_.join(); }

void MessageFeed::Notify(int64_t newest) {
  std::vector<std::shared_ptr<MessageWatch>> live;
  {
    absl::MutexLock lock(&mu_);
    newest_ = std::max(newest_, newest);
    if (newest != 0) newest = newest_;  // 0 (look again) is passed on as it is
    for (auto& w : watches_) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& w : live) w->Wake(newest);
}

void MessageFeed::Post(std::function<void()> fn) { boost::asio::post(reader_, std::move(fn)); }

void MessageFeed::Add(const std::shared_ptr<MessageWatch>& w) {
  absl::MutexLock lock(&mu_);
  watches_.push_back(w);
}

void MessageFeed::Remove(const MessageWatch* w) {
  absl::MutexLock lock(&mu_);
  std::erase_if(watches_, [w](const std::weak_ptr<MessageWatch>& p) {
    auto s = p.lock();
    return !s || s.get() == w;
  });
}

grpc::ServerWriteReactor<v1::Message>* MessageWatch::Start(MessageFeed& feed, std::string tenant_id,
                                                           std::string session_id, int64_t after,
                                                           std::function<void()> done) {
  std::shared_ptr<MessageWatch> w(
      new MessageWatch(feed, std::move(tenant_id), std::move(session_id), after, std::move(done)));
  {
    absl::MutexLock lock(&w->mu_);
    w->self_ = w;
    w->dirty_ = true;  // whatever the log holds now past `after` is read at once (the replay)
  }
  feed.Add(w);
  w->StartSendInitialMetadata();
  w->Pump();
  return w.get();
}

MessageWatch::MessageWatch(MessageFeed& feed, std::string tenant_id, std::string session_id,
                           int64_t after, std::function<void()> done)
    : feed_(feed),
      tenant_id_(std::move(tenant_id)),
      session_id_(std::move(session_id)),
      done_callback_(std::move(done)),
      cursor_(after) {}

void MessageWatch::Wake(int64_t newest) {
  {
    absl::MutexLock lock(&mu_);
    // 0: the listener reconnected and may have missed notifications; look again.
    if (newest == 0 || newest > cursor_) dirty_ = true;
    known_ = std::max(known_, newest);
  }
  Pump();
}

void MessageWatch::Pump() {
  absl::MutexLock lock(&mu_);
  if (finished_ || writing_ || reading_) return;
  if (!backlog_.empty()) {
    current_ = std::move(backlog_.front());
    backlog_.pop_front();
    writing_ = true;
    StartWrite(&current_);
    return;
  }
  if (!dirty_) return;
  dirty_ = false;
  reading_ = true;
  feed_.Post([self = shared_from_this()] { self->Read(); });
}

void MessageWatch::Read() {
  int64_t from, known;
  {
    absl::MutexLock lock(&mu_);
    from = cursor_;
    known = known_;
  }
  auto batch = feed_.store().After(from, tenant_id_, session_id_, kBatch);
  {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    if (finished_) return;
    if (!batch.ok()) {
      FinishLocked(ToGrpc(absl::UnavailableError(
          absl::StrCat("the message log could not be read (", batch.status().message(),
                       "); resume with after_sequence = ", cursor_))));
      return;
    }
    for (const auto& m : *batch) {
      backlog_.push_back(ToProto(m));
      cursor_ = std::max(cursor_, m.sequence);
    }
    if (static_cast<int>(batch->size()) == kBatch) {
      dirty_ = true;  // there may be more
    } else {
      // Every row numbered up to `known` had committed before its notification came (rows are
      // numbered in commit order), so the read saw them all: what it did not return is other
      // sessions' and need not be read again.
      cursor_ = std::max(cursor_, known);
    }
  }
  Pump();
}

void MessageWatch::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status::CANCELLED);
      return;
    }
  }
  Pump();
}

void MessageWatch::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status::CANCELLED);
}

void MessageWatch::FinishLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  Finish(status);
}

void MessageWatch::OnDone() {
  feed_.Remove(this);
  if (done_callback_) done_callback_();
  std::shared_ptr<MessageWatch> self;
  absl::MutexLock lock(&mu_);
  self = std::move(self_);  // released after the lock
}

}  // namespace wasentinel::session
