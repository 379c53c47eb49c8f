#include "message_feed.h"

#include <spdlog/spdlog.h>

#include <cctype>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "delivery/metrics.h"
#include "delivery/webhook.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/event_types.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::alert {
namespace {

namespace sv1 = wasentinel::session::v1;

// "MESSAGE_STATUS_SERVER_ACK" → "server_ack".
std::string StatusName(sv1::MessageStatus s) {
  return WebhookWord(sv1::MessageStatus_Name(s), "MESSAGE_STATUS_");
}

}  // namespace

std::string MessageEventData(const sv1::Message& m) {
  nlohmann::json data = {
      {"sequence", m.sequence()},
      {"session_id", m.session_id()},
      {"tenant_id", m.tenant_id()},
      {"message_id", m.message_id()},
      {"chat", m.chat()},
      {"sender", m.sender()},
      {"from_me", m.from_me()},
      {"kind", m.kind()},
      {"text", m.text()},
      {"status", StatusName(m.status())},
      {"failure", m.failure()},
      {"sent_at", WebhookTime(m.sent_at())},
      {"stored_at", WebhookTime(m.stored_at())},
      {"status_at", WebhookTime(m.status_at())},
      {"client_message_id", m.client_message_id()},
  };
  // A plain text says all in `text`; anything else (replies, link previews, media) keeps its
  // WhatsApp protobuf.
  if (m.kind() != "text" && m.kind() != "conversation" && !m.raw().empty()) {
    data["raw"] = Base64Encode(AsBytes(m.raw()));
  }
  return data.dump();
}

std::optional<MessageEvent> MessageEventOf(const sv1::Message& m, const Sealer& sealer) {
  MessageEvent e;
  const std::string id = absl::StrCat(m.session_id(), " ", m.chat(), " ", m.message_id());
  switch (m.status()) {
    case sv1::MESSAGE_STATUS_RECEIVED:
      // The chat's notice that a contact's security code changed is news of its own.
      e.type = m.kind() == "identity_changed" ? event_types::kIdentityChanged
                                              : event_types::kMessageReceived;
      e.key = absl::StrCat(e.type, " ", id);
      break;
    case sv1::MESSAGE_STATUS_UNDECRYPTABLE:
      // Its own event: a resend that decrypts is received again, with the text.
      e.type = event_types::kMessageReceived;
      e.key = absl::StrCat(e.type, " ", id, " undecryptable");
      break;
    case sv1::MESSAGE_STATUS_READ:
      // A received message we marked read is still its arrival to a feed that was behind (the
      // key makes it one event with the RECEIVED it may have seen first).
      e.type = m.from_me() ? event_types::kMessageStatus : event_types::kMessageReceived;
      e.key = m.from_me() ? absl::StrCat(e.type, " ", id, " read") : absl::StrCat(e.type, " ", id);
      break;
    case sv1::MESSAGE_STATUS_SERVER_ACK:
    case sv1::MESSAGE_STATUS_DELIVERED:
    case sv1::MESSAGE_STATUS_FAILED:
      e.type = event_types::kMessageStatus;
      e.key = absl::StrCat(e.type, " ", id, " ", StatusName(m.status()));
      break;
    default:  // PENDING: SendMessage answered it already
      return std::nullopt;
  }
  e.tenant_id = m.tenant_id();
  // Arrival for what was received (marking it read later does not make it news to an endpoint
  // created since); the change of status for the rest.
  e.at = e.type != event_types::kMessageStatus || !m.has_status_at() ? FromProto(m.stored_at())
                                                                     : FromProto(m.status_at());
  const std::string data = MessageEventData(m);
  Sealer::Sealed sealed = sealer.Seal(AsBytes(data));
  e.payload_key_id = std::move(sealed.key_id);
  e.sealed_payload = ToString(sealed.blob);
  return e;
}

MessageFeed::MessageFeed(PgAlertStore& store, std::shared_ptr<grpc::Channel> session_service,
                         const Sealer& sealer, Clock& clock, MessageFeedOptions options,
                         std::shared_ptr<spdlog::logger> log, std::function<void()> wake,
                         AlertMetrics* metrics)
    : store_(store),
      stub_(sv1::SessionService::NewStub(std::move(session_service))),
      sealer_(sealer),
      clock_(clock),
      options_(std::move(options)),
      pauses_(options_.pauses, 0.2, Backoff::AfterLast::kRepeatLast),
      log_(std::move(log)),
      wake_(std::move(wake)),
      metrics_(metrics) {}

MessageFeed::~MessageFeed() { Stop(); }

void MessageFeed::Start() {
  thread_ = std::thread([this] { Loop(); });
  renewer_ = std::make_unique<PeriodicThread>(options_.lease / 3, [this] { Renew(); });
}

void MessageFeed::Stop() {
  if (renewer_) renewer_->Stop();
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (current_) current_->TryCancel();
  }
  if (!thread_.joinable()) return;
  thread_.join();
  if (auto st = store_.ReleaseFeed(kFeed, options_.replica); !st.ok()) {
    log_->warn("message feed: letting it go: {}", st);
  }
}

bool MessageFeed::following() const {
  absl::MutexLock lock(&mu_);
  return following_;
}

void MessageFeed::Renew() {
  if (!following()) return;
  auto hold = store_.HoldFeed(kFeed, options_.replica, clock_.Now(), options_.lease);
  if (hold.ok() && hold->held) return;
  // Not renewed: another replica took the feed, or the database does not answer — then the
  // lease runs out and another may take it; stop before that.
  log_->warn("message feed: hold not renewed ({}); ending the stream",
             hold.ok() ? "another replica holds it" : hold.status().ToString());
  absl::MutexLock lock(&mu_);
  if (current_) current_->TryCancel();
}

bool MessageFeed::Wait(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
  return mu_.AwaitWithTimeout(absl::Condition(&stopping), d);
}

void MessageFeed::Loop() {
  std::mt19937 rng(std::random_device{}());
  int failures = 0;
  bool standby_logged = false;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    auto hold = store_.HoldFeed(kFeed, options_.replica, clock_.Now(), options_.lease);
    if (!hold.ok() || !hold->held) {
      if (!hold.ok()) {
        log_->warn("message feed: cannot take it: {}", hold.status());
      } else if (!standby_logged) {
        log_->info("message feed: another replica follows it; standing by");
        standby_logged = true;
      }
      if (Wait(options_.poll)) return;
      continue;
    }
    standby_logged = false;
    const absl::Time opened = clock_.Now();
    const Outcome outcome = Follow(hold->after_sequence);
    // A stream that carried messages or stayed up a while was working: start the pauses over.
    if (outcome != Outcome::kFailed || clock_.Now() - opened > absl::Seconds(5)) failures = 0;
    const absl::Duration pause = outcome == Outcome::kLost
                                     ? options_.poll
                                     : pauses_.Next(failures++, rng).value_or(absl::Seconds(1));
    if (Wait(pause)) return;
  }
}

// How the feed moves from `from` to `to` (in `what`); kAborted: the hold is lost.
absl::StatusOr<int> MessageFeed::Advance(std::optional<int64_t> from, int64_t to,
                                         const MessageEvent* event) {
  return store_.AdvanceFeed(kFeed, options_.replica, from, to, event, clock_.Now(), options_.lease);
}

MessageFeed::Outcome MessageFeed::Follow(std::optional<int64_t> after) {
  grpc::ClientContext ctx;
  if (!options_.api_key.empty()) ctx.AddMetadata("x-api-key", options_.api_key);
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return Outcome::kFailed;
    current_ = &ctx;
    following_ = true;
  }
  // Never followed: from the log's end (the first start does not replay the retention).
  sv1::WatchMessagesRequest req;
  if (after) req.set_after_sequence(*after);
  auto reader = stub_->WatchMessages(&ctx, req);
  Outcome outcome = Outcome::kFailed;
  int64_t events = 0;
  // A failure writing the message at `sequence`; true when the stream must end.
  auto failed = [&](int64_t sequence, const absl::Status& st) {
    if (st.code() == absl::StatusCode::kAborted) {
      log_->info("message feed: {}; stopping", st.message());
      outcome = Outcome::kLost;
      return;
    }
    const bool transient = st.code() == absl::StatusCode::kUnavailable ||
                           st.code() == absl::StatusCode::kDeadlineExceeded ||
                           st.code() == absl::StatusCode::kResourceExhausted;
    stuck_count_ = stuck_sequence_ == sequence ? stuck_count_ + 1 : 1;
    stuck_sequence_ = sequence;
    if (!transient && stuck_count_ >= 3) {
      // The same message refused three times for a reason that will not pass (the data): past
      // it without its event, so the feed does not stop for good.
      if (Advance(after, sequence, nullptr).ok()) {
        log_->error("message feed: message {} skipped after {} attempts: {}", sequence,
                    stuck_count_, st);
        if (metrics_) metrics_->MessageSkipped();
        stuck_count_ = 0;
        return;
      }
    }
    log_->warn(
        "message feed: message {} not enqueued ({}); following again from the stored "
        "cursor",
        sequence, st);
  };
  reader->WaitForInitialMetadata();
  const auto& md = ctx.GetServerInitialMetadata();
  if (auto it = md.find("x-watch-after"); it != md.end()) {
    int64_t start = 0;
    if (!after &&
        absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &start)) {
      // Store where the first stream starts, so a restart before any message misses none.
      if (auto st = Advance(std::nullopt, start, nullptr); st.ok()) {
        after = start;
      } else {
        failed(start, st.status());
        ctx.TryCancel();
      }
    }
    if (after) {
      log_->info("message feed: following session-service's messages after sequence {}", *after);
    }
  }
  sv1::Message m;
  while (after && reader->Read(&m)) {
    const std::optional<MessageEvent> event = MessageEventOf(m, sealer_);
    auto written = Advance(after, m.sequence(), event ? &*event : nullptr);
    if (!written.ok()) {
      failed(m.sequence(), written.status());
      ctx.TryCancel();
      break;
    }
    after = m.sequence();
    outcome = Outcome::kEnded;
    if (event) {
      ++events;
      if (metrics_) metrics_->MessageEvent(event->type, *written);
      if (*written > 0) wake_();
    }
  }
  const grpc::Status st = reader->Finish();
  {
    absl::MutexLock lock(&mu_);
    current_ = nullptr;
    following_ = false;
  }
  if (st.error_code() == grpc::StatusCode::OUT_OF_RANGE) {
    // Pruned before this feed read them (it was down longer than session-service keeps
    // messages), or another log: go on from where session-service says nothing more is lost.
    const auto& trailer = ctx.GetServerTrailingMetadata();
    int64_t resume = 0;
    auto it = trailer.find("x-watch-resume-after");
    if (it != trailer.end() &&
        absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &resume)) {
      auto moved = Advance(after, resume, nullptr);
      log_->error(
          "message feed: {}: messages after sequence {} up to {} cannot be sent as webhooks; "
          "going on after {}{}",
          st.error_message(), after.value_or(0), resume, resume,
          moved.ok() ? "" : absl::StrCat(" (not stored: ", moved.status().ToString(), ")"));
      if (!moved.ok() && moved.status().code() == absl::StatusCode::kAborted) {
        outcome = Outcome::kLost;
      }
    } else {
      log_->error("message feed: {} (no resume point given)", st.error_message());
    }
  } else if (outcome != Outcome::kLost && !st.ok() &&
             st.error_code() != grpc::StatusCode::CANCELLED) {
    log_->warn("message feed: stream ended ({}: {}) after {} events",
               static_cast<int>(st.error_code()), st.error_message(), events);
  }
  return outcome;
}

}  // namespace wasentinel::alert
