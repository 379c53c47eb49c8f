#include "dispatcher.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/validation.h"

namespace wasentinel::alert {

std::string WebhookBody(const v1::Alert& a, v1::Delivery::Kind kind, absl::Time now) {
  const auto& s = a.session();
  nlohmann::json data = {
      {"alert_id", a.id()},
      {"dedup_key", a.dedup_key()},
      {"kind", WebhookWord(v1::Delivery::Kind_Name(kind), "KIND_")},
      {"severity", WebhookWord(v1::Severity_Name(a.severity()), "SEVERITY_")},
      {"status", WebhookWord(v1::Alert::Status_Name(a.status()), "STATUS_")},
      {"summary", a.summary()},
      {"raised_at", WebhookTime(a.raised_at())},
      {"raise_count", a.raise_count()},
      {"session",
       {{"session_id", s.session_id()},
        {"tenant_id", s.tenant_id()},
        {"account_name", s.account_name()},
        {"phone_number_masked", s.phone_number_masked()},
        {"state", s.state()},
        {"reason", s.reason()},
        {"offline_since", WebhookTime(s.offline_since())},
        {"last_connected_at", WebhookTime(s.last_connected_at())}}},
  };
  if (a.has_resolved_at()) data["resolved_at"] = WebhookTime(a.resolved_at());
  const std::string type =
      kind == v1::Delivery::KIND_RESOLVED ? "session.recovered" : a.event_type();
  return nlohmann::json{{"type", type}, {"timestamp", WebhookTime(now)}, {"data", std::move(data)}}
      .dump();
}

std::optional<std::string> MessageWebhookBody(const std::string& type, std::string_view data,
                                              absl::Time now) {
  nlohmann::json parsed = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::nullopt;
  return nlohmann::json{
      {"type", type}, {"timestamp", WebhookTime(now)}, {"data", std::move(parsed)}}
      .dump();
}

Dispatcher::Dispatcher(DeliveryStore& store, const Sealer& sealer, Clock& clock,
                       DispatcherOptions options, std::shared_ptr<spdlog::logger> log,
                       AlertMetrics* metrics)
    : store_(store),
      sealer_(sealer),
      clock_(clock),
      options_(std::move(options)),
      backoff_(options_.backoff, 0.2),
      log_(std::move(log)),
      metrics_(metrics) {}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { Loop(); });
}

void Dispatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void Dispatcher::Wake() {
  absl::MutexLock lock(&mu_);
  ++wakes_;
}

void Dispatcher::Loop() {
  CurlWebhookSender sender(options_.webhook_timeout, options_.allow_private_targets,
                           options_.webhook_ca_file);
  std::unique_ptr<EmailNotifier> email;
  if (!options_.smtp.url.empty()) email = std::make_unique<CurlEmailSender>(options_.smtp);
  uint64_t seen = 0;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      seen = wakes_;
    }
    if (RunOnce(sender, email.get()) > 0) continue;  // more may be due
    absl::MutexLock lock(&mu_);
    auto woken = [this, seen]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || wakes_ != seen; };
    mu_.AwaitWithTimeout(absl::Condition(&woken), options_.poll);
  }
}

int Dispatcher::RunOnce(WebhookNotifier& sender, EmailNotifier* email) {
  // Each claim has a token of its own (its fencing token): threads and replicas never share one.
  const std::string claimer = absl::StrCat(options_.worker, "#", ++claims_);
  const absl::Time claimed_until = clock_.Now() + options_.lease;
  auto claimed = store_.Claim(claimer, clock_.Now(), options_.lease, options_.batch);
  if (!claimed.ok()) {
    log_->warn("claiming deliveries: {}", claimed.status());
    return 0;
  }
  for (const auto& c : *claimed) {
    // A batch sent one by one can outlast its claim (receivers that hang until the timeout):
    // before a send that could end after the claim, the claim is renewed — and not sent when
    // another dispatcher has taken it over meanwhile, so nothing is sent twice without a crash.
    const absl::Duration longest =
        (c.delivery.channel() == v1::Delivery::CHANNEL_EMAIL ? options_.smtp.timeout
                                                             : options_.webhook_timeout) +
        absl::Seconds(1);
    if (claimed_until - clock_.Now() < longest) {
      const absl::Time now = clock_.Now();
      auto held = store_.Renew(c.delivery.id(), claimer, now, options_.lease);
      if (!held.ok() || !*held) {
        log_->info("delivery {}: {}; not sending it", c.delivery.id(),
                   held.ok() ? "its claim lapsed and was taken over" : held.status().ToString());
        continue;
      }
    }
    const AttemptResult result = c.delivery.channel() == v1::Delivery::CHANNEL_WEBHOOK
                                     ? SendWebhook(sender, c)
                                     : SendEmail(email, c);
    const absl::Time now = clock_.Now();
    if (auto st = store_.Complete(c.delivery.id(), result, now); !st.ok()) {
      // The claim expires and another attempt follows: at least once.
      log_->warn("recording delivery {}: {}", c.delivery.id(), st);
    }
    if (metrics_) {
      metrics_->Attempt(c.delivery.channel() == v1::Delivery::CHANNEL_EMAIL ? "email" : "webhook",
                        result.kind == AttemptResult::kSent    ? "sent"
                        : result.kind == AttemptResult::kRetry ? "retry"
                        : result.kind == AttemptResult::kDefer ? "deferred"
                                                               : "dead",
                        now - FromProto(c.delivery.created_at()));
    }
  }
  return static_cast<int>(claimed->size());
}

AttemptResult Dispatcher::SendWebhook(WebhookNotifier& sender, const ClaimedDelivery& c) {
  AttemptResult dead;
  dead.kind = AttemptResult::kDead;
  if (!c.endpoint) {
    dead.error = "the webhook endpoint was deleted";
    return dead;
  }
  const EndpointRecord& e = *c.endpoint;
  if (!e.endpoint.enabled()) {
    dead.error = "the webhook endpoint is disabled";
    return dead;
  }
  const absl::Time now = clock_.Now();
  const double rate = e.endpoint.rate_limit_per_second() > 0 ? e.endpoint.rate_limit_per_second()
                                                             : options_.webhook_rate_per_second;
  if (rate > 0) {
    if (const absl::Time next = TakeToken(e.endpoint.id(), rate, now); next > now) {
      AttemptResult later;
      later.kind = AttemptResult::kDefer;
      later.error = absl::StrCat("rate limited: ", rate, " webhooks per second to this endpoint");
      later.next_attempt_at = next;
      return later;
    }
  }
  WebhookRequest req;
  req.url = e.endpoint.url();
  req.id = absl::StrCat("msg_", c.delivery.id());
  req.timestamp = absl::ToUnixSeconds(now);
  if (c.delivery.kind() == v1::Delivery::KIND_MESSAGE) {
    auto data = sealer_.Open(c.payload_key_id, AsBytes(c.sealed_payload));
    if (!data.ok()) {
      dead.error = absl::StrCat("the message event does not open: ", data.status().message());
      return dead;
    }
    auto body = MessageWebhookBody(c.delivery.event_type(), ToString(*data), now);
    if (!body) {
      dead.error = "the message event is not JSON";
      return dead;
    }
    req.body = *std::move(body);
  } else {
    req.body = WebhookBody(c.alert, c.delivery.kind(), now);
  }
  auto sign = [&](const std::string& key_id, const std::string& sealed) -> absl::Status {
    auto secret = sealer_.Open(
        key_id, ByteView(reinterpret_cast<const uint8_t*>(sealed.data()), sealed.size()));
    if (!secret.ok()) return secret.status();
    auto sig =
        SignWebhook(std::string(secret->begin(), secret->end()), req.id, req.timestamp, req.body);
    if (!sig.ok()) return sig.status();
    req.signatures.push_back(*std::move(sig));
    return absl::OkStatus();
  };
  if (auto st = sign(e.secret_key_id, e.sealed_secret); !st.ok()) {
    dead.error = absl::StrCat("cannot sign: ", st.message());
    return dead;
  }
  // While a rotated-out secret is in its grace period, receivers may still hold it.
  if (!e.sealed_previous_secret.empty() && e.previous_valid_until &&
      *e.previous_valid_until > now) {
    (void)sign(e.previous_secret_key_id, e.sealed_previous_secret);
  }
  const WebhookResponse r = sender.Send(req);
  AttemptResult result = Judge(r, c.delivery.attempts() + 1);
  if (result.kind != AttemptResult::kSent) {
    log_->info("webhook {} to endpoint {}: {}{}", req.id, e.endpoint.id(), result.error,
               result.kind == AttemptResult::kDead ? " (dead letter)" : "");
  }
  return result;
}

AttemptResult Dispatcher::SendEmail(EmailNotifier* sender, const ClaimedDelivery& c) {
  AttemptResult out;
  if (!sender) {
    out.kind = AttemptResult::kDead;
    out.error = "e-mail is off on this alert-service (no --smtp_url)";
    return out;
  }
  const absl::Time now = clock_.Now();
  const std::string& to = c.delivery.target();
  // Recipients are checked when they are stored; one stored before the rule was tightened never
  // reaches an SMTP command.
  if (auto st = CheckMailbox("recipient", to); !st.ok()) {
    out.kind = AttemptResult::kDead;
    out.error = std::string(st.message());
    return out;
  }
  if (options_.emails_per_recipient_per_hour > 0) {
    absl::MutexLock lock(&mu_);
    auto& sent = sent_to_[to];
    while (!sent.empty() && sent.front() <= now - absl::Hours(1)) sent.pop_front();
    if (static_cast<int>(sent.size()) >= options_.emails_per_recipient_per_hour) {
      out.kind = AttemptResult::kDefer;
      out.error = absl::StrCat("rate limited: ", options_.emails_per_recipient_per_hour,
                               " e-mails per hour to this address");
      out.next_attempt_at = sent.front() + absl::Hours(1);
      return out;
    }
  }
  const EmailMessage msg = RenderAlertEmail(c.alert, c.delivery.kind(), c.delivery.id(), to,
                                            options_.smtp, options_.templates, now);
  const SmtpResult r = sender->Send(msg, now);
  if (r.sent) {
    if (options_.emails_per_recipient_per_hour > 0) {
      absl::MutexLock lock(&mu_);
      sent_to_[to].push_back(now);
    }
    return out;
  }
  if (r.permanent) {
    out.kind = AttemptResult::kDead;
    out.error = r.error;
  } else {
    out = RetryOrDead(r.error, c.delivery.attempts() + 1, absl::ZeroDuration());
  }
  log_->info("e-mail {} (delivery {}): {}{}", msg.message_id, c.delivery.id(), out.error,
             out.kind == AttemptResult::kDead ? " (dead letter)" : "");
  return out;
}

absl::Time Dispatcher::TakeToken(const std::string& endpoint, double rate, absl::Time now) {
  absl::MutexLock lock(&mu_);
  const double capacity = std::max(1.0, rate);
  Bucket& b = buckets_[endpoint];
  if (b.tokens < 0) {
    b.tokens = capacity;
  } else {
    b.tokens = std::min(capacity, b.tokens + absl::ToDoubleSeconds(now - b.at) * rate);
  }
  b.at = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return now;
  }
  return now + absl::Seconds((1 - b.tokens) / rate);
}

AttemptResult Dispatcher::Judge(const WebhookResponse& r, int attempt) {
  AttemptResult out;
  if (r.error.empty() && r.status >= 200 && r.status < 300) return out;
  std::string error = r.error.empty() ? absl::StrCat("HTTP ", r.status) : r.error;
  const bool transient = !r.refused && (!r.error.empty() || r.status == 429 || r.status >= 500);
  if (!transient) {
    out.kind = AttemptResult::kDead;
    out.error = std::move(error);
    return out;
  }
  return RetryOrDead(std::move(error), attempt, r.retry_after.value_or(absl::ZeroDuration()));
}

AttemptResult Dispatcher::RetryOrDead(std::string error, int attempt, absl::Duration floor) {
  AttemptResult out;
  out.error = std::move(error);
  std::optional<absl::Duration> wait;
  {
    absl::MutexLock lock(&mu_);
    wait = backoff_.Next(attempt - 1, rng_);
  }
  if (!wait) {
    out.kind = AttemptResult::kDead;
    absl::StrAppend(&out.error, "; no attempts left");
    return out;
  }
  out.kind = AttemptResult::kRetry;
  out.next_attempt_at = clock_.Now() + std::max(*wait, floor);
  return out;
}

}  // namespace wasentinel::alert
