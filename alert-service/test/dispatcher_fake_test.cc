// The dispatcher's logic in-process, with no PostgreSQL and no sockets: an in-memory outbox
// (FakeDeliveryStore, the DeliveryStore of outbox/delivery_store.h), notifiers that record what
// they are given and answer what the test scripts (FakeWebhookNotifier, FakeEmailNotifier, the
// WebhookNotifier and EmailNotifier of delivery/webhook.h and delivery/email.h), and a
// FakeClock. What is judged here — retries and their backoff, Retry-After, dead letters, rate
// limits, claims — is judged the same against PostgreSQL and real receivers in
// dispatcher_test.cc and email_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "delivery/dispatcher.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;
using ::wasentinel::testing::StatusIs;

namespace wasentinel::alert {
namespace {

// The outbox in memory, with PgAlertStore's rules: due means PENDING or FAILED, next attempt
// reached and no live claim; Complete counts an attempt except for kDefer and leaves a SENT
// delivery as it is. Failures can be injected into the next Claim or Complete.
class FakeDeliveryStore final : public DeliveryStore {
 public:
  // Stores `alert` and a delivery of it by `channel` to `target` (an address, or an endpoint id
  // given to PutEndpoint), due at `now`. Answers the delivery's id ("1", "2", …).
  std::string Add(const v1::Alert& alert, v1::Delivery::Channel channel, const std::string& target,
                  absl::Time now, v1::Delivery::Kind kind = v1::Delivery::KIND_NOTIFY) {
    absl::MutexLock lock(&mu_);
    const int64_t number = next_id_++;
    v1::Delivery& d = rows_[number].delivery;
    d.set_id(absl::StrCat(number));
    d.set_alert_id(alert.id());
    d.set_channel(channel);
    d.set_kind(kind);
    d.set_target(target);
    d.set_status(v1::Delivery::STATUS_PENDING);
    *d.mutable_next_attempt_at() = ToProto(now);
    *d.mutable_created_at() = ToProto(now);
    v1::Alert& stored = alerts_[alert.id()];
    stored = alert;
    stored.clear_deliveries();
    return d.id();
  }
  void PutEndpoint(EndpointRecord e) {
    absl::MutexLock lock(&mu_);
    const std::string id = e.endpoint.id();
    endpoints_[id] = std::move(e);
  }
  // The delivery as stored now (an empty one, and a failure, when there is none).
  v1::Delivery Get(const std::string& id) const {
    absl::MutexLock lock(&mu_);
    int64_t number = 0;
    if (absl::SimpleAtoi(id, &number)) {
      if (auto it = rows_.find(number); it != rows_.end()) return it->second.delivery;
    }
    ADD_FAILURE() << "no delivery " << id;
    return {};
  }
  void FailNextClaim(absl::Status st) {
    absl::MutexLock lock(&mu_);
    fail_claim_ = std::move(st);
  }
  void FailNextComplete(absl::Status st) {
    absl::MutexLock lock(&mu_);
    fail_complete_ = std::move(st);
  }
  // What the last Complete answered.
  absl::Status last_complete() const {
    absl::MutexLock lock(&mu_);
    return last_complete_;
  }

  absl::StatusOr<std::vector<ClaimedDelivery>> Claim(const std::string& worker, absl::Time now,
                                                     absl::Duration lease, int limit) override {
    absl::MutexLock lock(&mu_);
    if (!fail_claim_.ok()) return std::exchange(fail_claim_, absl::OkStatus());
    std::vector<std::pair<int64_t, Row*>> due;  // in id order (the map's)
    for (auto& [number, row] : rows_) {
      const auto status = row.delivery.status();
      if (status != v1::Delivery::STATUS_PENDING && status != v1::Delivery::STATUS_FAILED) continue;
      if (FromProto(row.delivery.next_attempt_at()) > now) continue;
      if (row.claimed_until && *row.claimed_until > now) continue;
      due.emplace_back(number, &row);
    }
    // The longest overdue first (ties in id order), then answered in id order.
    std::stable_sort(due.begin(), due.end(), [](const auto& a, const auto& b) {
      return FromProto(a.second->delivery.next_attempt_at()) <
             FromProto(b.second->delivery.next_attempt_at());
    });
    due.resize(std::min(due.size(), static_cast<size_t>(std::max(limit, 0))));
    std::sort(due.begin(), due.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<ClaimedDelivery> out;
    for (const auto& entry : due) {
      Row& row = *entry.second;
      row.claimed_by = worker;
      row.claimed_until = now + lease;
      ClaimedDelivery c;
      c.delivery = row.delivery;
      if (auto a = alerts_.find(c.delivery.alert_id()); a != alerts_.end()) c.alert = a->second;
      if (c.delivery.channel() == v1::Delivery::CHANNEL_WEBHOOK) {
        if (auto e = endpoints_.find(c.delivery.target()); e != endpoints_.end()) {
          c.endpoint = e->second;
        }
      }
      out.push_back(std::move(c));
    }
    return out;
  }

  absl::StatusOr<bool> Renew(const std::string& id, const std::string& claimer, absl::Time now,
                             absl::Duration lease) override {
    absl::MutexLock lock(&mu_);
    int64_t number = 0;
    if (!absl::SimpleAtoi(id, &number)) {
      return absl::InvalidArgumentError(absl::StrCat("delivery id ", id, " is not a number"));
    }
    auto it = rows_.find(number);
    if (it == rows_.end()) return false;
    Row& row = it->second;
    const auto status = row.delivery.status();
    if (row.claimed_by != claimer ||
        (status != v1::Delivery::STATUS_PENDING && status != v1::Delivery::STATUS_FAILED)) {
      return false;
    }
    row.claimed_until = now + lease;
    return true;
  }

  absl::Status Complete(const std::string& id, const AttemptResult& result,
                        absl::Time now) override {
    absl::MutexLock lock(&mu_);
    last_complete_ = Record(id, result, now);
    return last_complete_;
  }

 private:
  struct Row {
    v1::Delivery delivery;
    std::string claimed_by;
    std::optional<absl::Time> claimed_until;
  };

  absl::Status Record(const std::string& id, const AttemptResult& result, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!fail_complete_.ok()) return std::exchange(fail_complete_, absl::OkStatus());
    int64_t number = 0;
    if (!absl::SimpleAtoi(id, &number)) {
      return absl::InvalidArgumentError(absl::StrCat("delivery id ", id, " is not a number"));
    }
    auto it = rows_.find(number);
    if (it == rows_.end() || it->second.delivery.status() == v1::Delivery::STATUS_SENT) {
      return absl::OkStatus();
    }
    Row& row = it->second;
    row.claimed_by.clear();
    row.claimed_until.reset();
    v1::Delivery& d = row.delivery;
    switch (result.kind) {
      case AttemptResult::kSent:
        d.set_status(v1::Delivery::STATUS_SENT);
        d.set_attempts(d.attempts() + 1);
        d.clear_last_error();
        *d.mutable_sent_at() = ToProto(now);
        break;
      case AttemptResult::kRetry:
        d.set_status(v1::Delivery::STATUS_FAILED);
        d.set_attempts(d.attempts() + 1);
        d.set_last_error(result.error);
        *d.mutable_next_attempt_at() = ToProto(result.next_attempt_at);
        break;
      case AttemptResult::kDefer:
        d.set_last_error(result.error);
        *d.mutable_next_attempt_at() = ToProto(result.next_attempt_at);
        break;
      case AttemptResult::kDead:
        d.set_status(v1::Delivery::STATUS_DEAD);
        d.set_attempts(d.attempts() + 1);
        d.set_last_error(result.error);
        break;
    }
    return absl::OkStatus();
  }

  mutable absl::Mutex mu_;
  std::map<int64_t, Row> rows_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Alert> alerts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, EndpointRecord> endpoints_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::Status fail_claim_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_complete_ ABSL_GUARDED_BY(mu_);
  absl::Status last_complete_ ABSL_GUARDED_BY(mu_);
};

WebhookResponse Http(long status, std::optional<absl::Duration> retry_after = std::nullopt) {
  WebhookResponse r;
  r.status = status;
  r.retry_after = retry_after;
  return r;
}

// No HTTP status: a timeout or network error, or (refused) a target refused before sending.
WebhookResponse Transport(std::string error, bool refused = false) {
  WebhookResponse r;
  r.error = std::move(error);
  r.refused = refused;
  return r;
}

// Records each request and answers the scripted responses in order; 200 once they run out.
class FakeWebhookNotifier final : public WebhookNotifier {
 public:
  void Script(std::vector<WebhookResponse> answers) {
    absl::MutexLock lock(&mu_);
    answers_.assign(answers.begin(), answers.end());
  }
  // Runs during each Send, after the request is recorded (a send that takes a while).
  void OnSend(std::function<void(const WebhookRequest&)> hook) {
    absl::MutexLock lock(&mu_);
    on_send_ = std::move(hook);
  }
  std::vector<WebhookRequest> requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

  WebhookResponse Send(const WebhookRequest& req) override {
    std::function<void(const WebhookRequest&)> hook;
    WebhookResponse answer = Http(200);
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(req);
      hook = on_send_;
      if (!answers_.empty()) {
        answer = answers_.front();
        answers_.pop_front();
      }
    }
    if (hook) hook(req);
    return answer;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<WebhookRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::deque<WebhookResponse> answers_ ABSL_GUARDED_BY(mu_);
  std::function<void(const WebhookRequest&)> on_send_ ABSL_GUARDED_BY(mu_);
};

SmtpResult Smtp(long code, bool permanent, std::string error) {
  SmtpResult r;
  r.code = code;
  r.permanent = permanent;
  r.error = std::move(error);
  return r;
}

// Records each message and answers the scripted results in order; sent once they run out.
class FakeEmailNotifier final : public EmailNotifier {
 public:
  void Script(std::vector<SmtpResult> answers) {
    absl::MutexLock lock(&mu_);
    answers_.assign(answers.begin(), answers.end());
  }
  std::vector<EmailMessage> messages() const {
    absl::MutexLock lock(&mu_);
    return messages_;
  }

  SmtpResult Send(const EmailMessage& message, absl::Time) override {
    absl::MutexLock lock(&mu_);
    messages_.push_back(message);
    SmtpResult answer;
    answer.sent = true;
    answer.code = 250;
    if (!answers_.empty()) {
      answer = answers_.front();
      answers_.pop_front();
    }
    return answer;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<EmailMessage> messages_ ABSL_GUARDED_BY(mu_);
  std::deque<SmtpResult> answers_ ABSL_GUARDED_BY(mu_);
};

constexpr char kEndpoint[] = "0d9c3a2e-5b7f-4c1a-9e8d-000000000001";
constexpr char kOwner[] = "owner@acme.example";

struct Fixture {
  wasentinel::testing::FakeClock clock;
  Sealer sealer = Sealer::FromConfig(std::string(64, 'a')).value();
  std::string secret = NewWebhookSecret();
  FakeDeliveryStore store;
  FakeWebhookNotifier webhooks;
  FakeEmailNotifier email;
  DispatcherOptions options;
  v1::Alert alert;
  std::unique_ptr<Dispatcher> dispatcher;  // after what it refers to: destroyed first

  Fixture() {
    options.worker = "a";
    options.backoff = {absl::Seconds(10), absl::Seconds(30)};  // 3 attempts
    alert.set_id("4a0c6a57-1d2e-4f00-8000-000000000001");
    alert.set_dedup_key("session.offline/s1");
    alert.set_event_type("session.warning");
    alert.set_severity(v1::SEVERITY_WARNING);
    alert.set_status(v1::Alert::STATUS_OPEN);
    alert.set_summary("Shop (155******67) has been offline for 5m");
    alert.set_raise_count(1);
    *alert.mutable_raised_at() = ToProto(clock.Now());
    alert.mutable_session()->set_session_id("s1");
    alert.mutable_session()->set_account_name("Shop");
    alert.mutable_session()->set_phone_number_masked("155******67");
    store.PutEndpoint(Endpoint(kEndpoint, secret));
  }

  std::string Sealed(const std::string& plain, std::string* key_id) const {
    const Sealer::Sealed s = sealer.Seal(wasentinel::AsBytes(plain));
    *key_id = s.key_id;
    return std::string(s.blob.begin(), s.blob.end());
  }
  // An enabled endpoint with `webhook_secret` sealed, and no rate limit of its own.
  EndpointRecord Endpoint(const std::string& id, const std::string& webhook_secret) const {
    EndpointRecord e;
    e.endpoint.set_id(id);
    e.endpoint.set_url("https://hooks.example.com/wa");
    e.endpoint.set_enabled(true);
    e.sealed_secret = Sealed(webhook_secret, &e.secret_key_id);
    return e;
  }

  std::string AddWebhook(const std::string& endpoint = kEndpoint) {
    return store.Add(alert, v1::Delivery::CHANNEL_WEBHOOK, endpoint, clock.Now());
  }
  std::string AddEmail(const std::string& to = kOwner) {
    return store.Add(alert, v1::Delivery::CHANNEL_EMAIL, to, clock.Now());
  }

  // One round; the dispatcher is made at the first, with the options as they are then.
  int Run(bool email_on = true) {
    if (!dispatcher) {
      dispatcher = std::make_unique<Dispatcher>(store, sealer, clock, options,
                                                MakeLogger("dispatch", "warn"));
    }
    return dispatcher->RunOnce(webhooks, email_on ? &email : nullptr);
  }

  // How long until the delivery is due again.
  absl::Duration Wait(const std::string& id) {
    return FromProto(store.Get(id).next_attempt_at()) - clock.Now();
  }
};

TEST(DispatcherFake, A2xxIsSentOnceSignedAndRecordedSent) {
  Fixture f;
  f.webhooks.Script({Http(204)});
  const std::string id = f.AddWebhook();
  EXPECT_EQ(f.Run(), 1);
  const v1::Delivery d = f.store.Get(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(d.attempts(), 1);
  EXPECT_EQ(d.last_error(), "");
  EXPECT_EQ(FromProto(d.sent_at()), f.clock.Now());
  const auto got = f.webhooks.requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].url, "https://hooks.example.com/wa");
  EXPECT_EQ(got[0].id, "msg_" + id);
  EXPECT_EQ(got[0].timestamp, absl::ToUnixSeconds(f.clock.Now()));
  EXPECT_EQ(got[0].body, WebhookBody(f.alert, v1::Delivery::KIND_NOTIFY, f.clock.Now()));
  auto signature = SignWebhook(f.secret, got[0].id, got[0].timestamp, got[0].body);
  ASSERT_THAT(signature, IsOk());
  EXPECT_EQ(got[0].signatures, std::vector<std::string>{*signature});
  f.clock.Advance(absl::Hours(1));
  EXPECT_EQ(f.Run(), 0) << "nothing more is due";
  EXPECT_EQ(f.webhooks.requests().size(), 1u);
}

TEST(DispatcherFake, A500IsRetriedAfterTheFirstBackoffStepThenSent) {
  Fixture f;
  f.webhooks.Script({Http(500), Http(200)});
  const std::string id = f.AddWebhook();
  EXPECT_EQ(f.Run(), 1);
  v1::Delivery d = f.store.Get(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_FAILED);
  EXPECT_EQ(d.attempts(), 1);
  EXPECT_EQ(d.last_error(), "HTTP 500");
  const absl::Duration wait = f.Wait(id);
  EXPECT_GE(wait, absl::Seconds(8)) << "10 s - 20 %";
  EXPECT_LE(wait, absl::Seconds(12)) << "10 s + 20 %";
  const absl::Time due = FromProto(d.next_attempt_at());
  f.clock.Set(due - absl::Milliseconds(1));
  EXPECT_EQ(f.Run(), 0) << "not due yet";
  EXPECT_EQ(f.webhooks.requests().size(), 1u);
  f.clock.Set(due);
  EXPECT_EQ(f.Run(), 1);
  d = f.store.Get(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(d.attempts(), 2);
  EXPECT_EQ(f.webhooks.requests().size(), 2u);
}

TEST(DispatcherFake, TheJitterStaysWithinTwentyPercentAndVaries) {
  Fixture f;
  f.options.batch = 40;
  f.options.webhook_rate_per_second = 0;  // no limit: all 40 go at once
  std::vector<std::string> ids;
  std::vector<WebhookResponse> answers;
  for (int i = 0; i < 40; ++i) {
    ids.push_back(f.AddWebhook());
    answers.push_back(Http(503));
  }
  f.webhooks.Script(answers);
  EXPECT_EQ(f.Run(), 40);
  std::set<int64_t> waits;
  for (const auto& id : ids) {
    const absl::Duration wait = f.Wait(id);
    EXPECT_GE(wait, absl::Seconds(8)) << id;
    EXPECT_LE(wait, absl::Seconds(12)) << id;
    waits.insert(absl::ToInt64Microseconds(wait));
  }
  EXPECT_GT(waits.size(), 1u) << "jittered, not all at once";
}

TEST(DispatcherFake, A429sRetryAfterIsAFloorOnTheWait) {
  Fixture f;
  f.webhooks.Script({Http(429, absl::Seconds(120)), Http(429, absl::Seconds(1))});
  const std::string longer = f.AddWebhook();
  const std::string shorter = f.AddWebhook();
  EXPECT_EQ(f.Run(), 2);
  EXPECT_EQ(f.store.Get(longer).status(), v1::Delivery::STATUS_FAILED);
  EXPECT_EQ(f.store.Get(longer).last_error(), "HTTP 429");
  EXPECT_EQ(f.Wait(longer), absl::Seconds(120)) << "longer than the backoff step: honoured";
  const absl::Duration wait = f.Wait(shorter);
  EXPECT_GE(wait, absl::Seconds(8)) << "shorter than the backoff step: the step stays";
  EXPECT_LE(wait, absl::Seconds(12));
}

TEST(DispatcherFake, A404IsDeadAtOnce) {
  Fixture f;
  f.webhooks.Script({Http(404)});
  const std::string id = f.AddWebhook();
  EXPECT_EQ(f.Run(), 1);
  const v1::Delivery d = f.store.Get(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_DEAD) << "retrying would not change the answer";
  EXPECT_EQ(d.attempts(), 1);
  EXPECT_EQ(d.last_error(), "HTTP 404");
  f.clock.Advance(absl::Hours(4));
  EXPECT_EQ(f.Run(), 0);
  EXPECT_EQ(f.webhooks.requests().size(), 1u);
}

TEST(DispatcherFake, ARefusedTargetIsDeadAtOnceAndATimeoutIsRetried) {
  Fixture f;
  f.webhooks.Script(
      {Transport("refused: the URL resolves to a private or loopback address (SSRF)", true),
       Transport("Timeout was reached")});
  const std::string refused = f.AddWebhook();
  const std::string timed_out = f.AddWebhook();
  EXPECT_EQ(f.Run(), 2);
  EXPECT_EQ(f.store.Get(refused).status(), v1::Delivery::STATUS_DEAD);
  EXPECT_NE(f.store.Get(refused).last_error().find("SSRF"), std::string::npos);
  EXPECT_EQ(f.store.Get(timed_out).status(), v1::Delivery::STATUS_FAILED);
  EXPECT_EQ(f.store.Get(timed_out).last_error(), "Timeout was reached");
}

TEST(DispatcherFake, TheLastBackoffStepEndsInTheDeadLetter) {
  Fixture f;  // backoff 10 s, 30 s: three attempts
  f.webhooks.Script({Http(503), Http(503), Http(503), Http(200)});
  const std::string id = f.AddWebhook();
  EXPECT_EQ(f.Run(), 1);
  f.clock.Advance(absl::Seconds(12));
  EXPECT_EQ(f.Run(), 1);
  EXPECT_EQ(f.store.Get(id).status(), v1::Delivery::STATUS_FAILED);
  const absl::Duration second = f.Wait(id);
  EXPECT_GE(second, absl::Seconds(24)) << "the second step: 30 s ± 20 %";
  EXPECT_LE(second, absl::Seconds(36));
  f.clock.Advance(absl::Seconds(36));
  EXPECT_EQ(f.Run(), 1);
  const v1::Delivery d = f.store.Get(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_DEAD);
  EXPECT_EQ(d.attempts(), 3);
  EXPECT_EQ(d.last_error(), "HTTP 503; no attempts left");
  f.clock.Advance(absl::Hours(4));
  EXPECT_EQ(f.Run(), 0) << "a dead letter stays until redelivered";
  EXPECT_EQ(f.webhooks.requests().size(), 3u);
}

TEST(DispatcherFake, EveryRetryCarriesTheSameWebhookIdFreshlySigned) {
  Fixture f;
  f.webhooks.Script({Http(500), Transport("Couldn't connect to server"), Http(200)});
  const std::string id = f.AddWebhook();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(f.Run(), 1) << "attempt " << i + 1;
    f.clock.Advance(absl::Minutes(1));
  }
  EXPECT_EQ(f.store.Get(id).status(), v1::Delivery::STATUS_SENT);
  const auto got = f.webhooks.requests();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& r : got) {
    EXPECT_EQ(r.id, "msg_" + id) << "receivers drop duplicates by it";
    auto signature = SignWebhook(f.secret, r.id, r.timestamp, r.body);
    ASSERT_THAT(signature, IsOk());
    EXPECT_EQ(r.signatures, std::vector<std::string>{*signature}) << "signed at its own time";
  }
  EXPECT_LT(got[0].timestamp, got[2].timestamp);
  // Another delivery has an id of its own.
  const std::string other = f.AddWebhook();
  EXPECT_EQ(f.Run(), 1);
  EXPECT_EQ(f.webhooks.requests().back().id, "msg_" + other);
  EXPECT_NE(other, id);
}

TEST(DispatcherFake, AnEndpointsRateLimitDefersWithoutSpendingAnAttempt) {
  Fixture f;
  EndpointRecord limited = f.Endpoint(kEndpoint, f.secret);
  limited.endpoint.set_rate_limit_per_second(2);
  f.store.PutEndpoint(limited);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(f.AddWebhook());
  EXPECT_EQ(f.Run(), 3);
  EXPECT_EQ(f.webhooks.requests().size(), 2u) << "a burst of one second's worth";
  v1::Delivery third = f.store.Get(ids[2]);
  EXPECT_EQ(third.status(), v1::Delivery::STATUS_PENDING);
  EXPECT_EQ(third.attempts(), 0) << "waiting its turn is not an attempt";
  EXPECT_NE(third.last_error().find("rate limited"), std::string::npos) << third.last_error();
  EXPECT_EQ(f.Wait(ids[2]), absl::Milliseconds(500));
  EXPECT_EQ(f.Run(), 0) << "not its turn yet";
  f.clock.Advance(absl::Milliseconds(500));
  EXPECT_EQ(f.Run(), 1);
  third = f.store.Get(ids[2]);
  EXPECT_EQ(third.status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(third.attempts(), 1);
  EXPECT_EQ(f.webhooks.requests().size(), 3u);
}

TEST(DispatcherFake, TheServiceRateAppliesToEndpointsWithoutTheirOwn) {
  Fixture f;
  f.options.webhook_rate_per_second = 1;
  const std::string first = f.AddWebhook();
  const std::string second = f.AddWebhook();
  EXPECT_EQ(f.Run(), 2);
  EXPECT_EQ(f.store.Get(first).status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(f.store.Get(second).status(), v1::Delivery::STATUS_PENDING);
  EXPECT_EQ(f.store.Get(second).attempts(), 0);
  EXPECT_EQ(f.Wait(second), absl::Seconds(1));
}

TEST(DispatcherFake, ADeletedOrDisabledEndpointIsADeadLetter) {
  Fixture f;
  EndpointRecord off = f.Endpoint("0d9c3a2e-5b7f-4c1a-9e8d-000000000002", f.secret);
  off.endpoint.set_enabled(false);
  f.store.PutEndpoint(off);
  const std::string deleted = f.AddWebhook("0d9c3a2e-5b7f-4c1a-9e8d-00000000dead");
  const std::string disabled = f.AddWebhook(off.endpoint.id());
  EXPECT_EQ(f.Run(), 2);
  EXPECT_EQ(f.store.Get(deleted).status(), v1::Delivery::STATUS_DEAD);
  EXPECT_EQ(f.store.Get(deleted).last_error(), "the webhook endpoint was deleted");
  EXPECT_EQ(f.store.Get(disabled).status(), v1::Delivery::STATUS_DEAD);
  EXPECT_EQ(f.store.Get(disabled).last_error(), "the webhook endpoint is disabled");
  EXPECT_TRUE(f.webhooks.requests().empty());
}

TEST(DispatcherFake, DuringARotationsGraceBothSecretsSign) {
  Fixture f;
  const std::string fresh = NewWebhookSecret();
  EndpointRecord rotated = f.Endpoint(kEndpoint, fresh);
  rotated.sealed_previous_secret = f.Sealed(f.secret, &rotated.previous_secret_key_id);
  rotated.previous_valid_until = f.clock.Now() + absl::Hours(24);
  f.store.PutEndpoint(rotated);
  f.AddWebhook();
  EXPECT_EQ(f.Run(), 1);
  f.clock.Advance(absl::Hours(25));
  f.AddWebhook();
  EXPECT_EQ(f.Run(), 1);
  const auto got = f.webhooks.requests();
  ASSERT_EQ(got.size(), 2u);
  auto sign = [&](const std::string& key, const WebhookRequest& r) {
    return SignWebhook(key, r.id, r.timestamp, r.body).value_or("(cannot sign)");
  };
  EXPECT_EQ(got[0].signatures,
            (std::vector<std::string>{sign(fresh, got[0]), sign(f.secret, got[0])}))
      << "the new secret first, then the old one";
  EXPECT_EQ(got[1].signatures, std::vector<std::string>{sign(fresh, got[1])})
      << "after the grace period, only the new one";
}

TEST(DispatcherFake, AnSmtp5xxForTheRecipientIsDeadAtOnce) {
  Fixture f;
  f.email.Script({Smtp(550, true, "SMTP 550: Failed sending data to the peer")});
  const std::string id = f.AddEmail();
  EXPECT_EQ(f.Run(), 1);
  const v1::Delivery d = f.store.Get(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_DEAD);
  EXPECT_EQ(d.attempts(), 1);
  EXPECT_NE(d.last_error().find("550"), std::string::npos) << d.last_error();
  const auto sent = f.email.messages();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].to, kOwner);
  EXPECT_NE(sent[0].message_id.find(absl::StrCat(f.alert.id(), ".", id, "@")), std::string::npos)
      << sent[0].message_id;
  f.clock.Advance(absl::Hours(4));
  EXPECT_EQ(f.Run(), 0);
}

TEST(DispatcherFake, TransientSmtpFailuresAreRetriedWithTheSameMessageId) {
  Fixture f;
  f.email.Script({Smtp(421, false, "SMTP 421: Service not available"),
                  Smtp(0, false, "Couldn't connect to server")});
  const std::string id = f.AddEmail();
  EXPECT_EQ(f.Run(), 1);
  v1::Delivery d = f.store.Get(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_FAILED);
  EXPECT_EQ(d.last_error(), "SMTP 421: Service not available");
  EXPECT_GE(f.Wait(id), absl::Seconds(8));
  EXPECT_LE(f.Wait(id), absl::Seconds(12));
  f.clock.Advance(absl::Seconds(12));
  EXPECT_EQ(f.Run(), 1);
  EXPECT_EQ(f.store.Get(id).status(), v1::Delivery::STATUS_FAILED);
  EXPECT_EQ(f.store.Get(id).last_error(), "Couldn't connect to server");
  f.clock.Advance(absl::Seconds(36));
  EXPECT_EQ(f.Run(), 1);
  d = f.store.Get(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(d.attempts(), 3);
  const auto sent = f.email.messages();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].message_id, sent[2].message_id) << "receivers drop duplicates by it";
}

TEST(DispatcherFake, WithEmailOffEmailDeliveriesAreDeadLettersSayingSo) {
  Fixture f;
  const std::string mail = f.AddEmail();
  const std::string hook = f.AddWebhook();
  EXPECT_EQ(f.Run(/*email_on=*/false), 2);
  const v1::Delivery d = f.store.Get(mail);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_DEAD);
  EXPECT_EQ(d.attempts(), 1);
  EXPECT_EQ(d.last_error(), "e-mail is off on this alert-service (no --smtp_url)");
  EXPECT_TRUE(f.email.messages().empty());
  EXPECT_EQ(f.store.Get(hook).status(), v1::Delivery::STATUS_SENT) << "webhooks still go";
}

TEST(DispatcherFake, ThePerRecipientRateLimitDefersWithoutSpendingAnAttempt) {
  Fixture f;
  f.options.emails_per_recipient_per_hour = 2;
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(f.AddEmail());
  const std::string elsewhere = f.AddEmail("ops@acme.example");
  EXPECT_EQ(f.Run(), 4);
  EXPECT_EQ(f.email.messages().size(), 3u) << "two to the owner, one elsewhere";
  EXPECT_EQ(f.store.Get(elsewhere).status(), v1::Delivery::STATUS_SENT);
  const v1::Delivery third = f.store.Get(ids[2]);
  EXPECT_EQ(third.status(), v1::Delivery::STATUS_PENDING);
  EXPECT_EQ(third.attempts(), 0);
  EXPECT_EQ(f.Wait(ids[2]), absl::Hours(1));
  f.clock.Advance(absl::Hours(1));
  EXPECT_EQ(f.Run(), 1);
  EXPECT_EQ(f.store.Get(ids[2]).status(), v1::Delivery::STATUS_SENT);
}

TEST(DispatcherFake, AFailedClaimSendsNothingAndLosesNothing) {
  Fixture f;
  const std::string id = f.AddWebhook();
  f.store.FailNextClaim(absl::UnavailableError("database down"));
  EXPECT_EQ(f.Run(), 0);
  EXPECT_TRUE(f.webhooks.requests().empty());
  EXPECT_EQ(f.Run(), 1) << "the next round claims it";
  EXPECT_EQ(f.store.Get(id).status(), v1::Delivery::STATUS_SENT);
}

TEST(DispatcherFake, AnAttemptNotRecordedIsSentAgainWhenItsClaimExpires) {
  Fixture f;
  const std::string id = f.AddWebhook();
  f.store.FailNextComplete(absl::UnavailableError("database down"));
  EXPECT_EQ(f.Run(), 1);
  EXPECT_THAT(f.store.last_complete(), StatusIs(absl::StatusCode::kUnavailable, "database down"));
  EXPECT_EQ(f.store.Get(id).status(), v1::Delivery::STATUS_PENDING);
  EXPECT_EQ(f.Run(), 0) << "still claimed: no one else takes it";
  auto other = f.store.Claim("b#1", f.clock.Now(), absl::Minutes(1), 10);
  ASSERT_THAT(other, IsOk());
  EXPECT_TRUE(other->empty());
  f.clock.Advance(f.options.lease);
  EXPECT_EQ(f.Run(), 1) << "the claim expired: at least once";
  EXPECT_THAT(f.store.last_complete(), IsOk());
  EXPECT_EQ(f.store.Get(id).status(), v1::Delivery::STATUS_SENT);
  const auto got = f.webhooks.requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, got[1].id);
}

TEST(DispatcherFake, ASlowBatchRenewsItsClaimBeforeTheNextSend) {
  Fixture f;
  const std::string first = f.AddWebhook();
  const std::string second = f.AddWebhook();
  bool slow = true;
  f.webhooks.OnSend([&](const WebhookRequest&) {
    if (std::exchange(slow, false)) f.clock.Advance(absl::Seconds(55));  // 5 s of claim left
  });
  EXPECT_EQ(f.Run(), 2);
  EXPECT_EQ(f.webhooks.requests().size(), 2u) << "renewed, still its own: sent";
  EXPECT_EQ(f.store.Get(first).status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(f.store.Get(second).status(), v1::Delivery::STATUS_SENT);
}

TEST(DispatcherFake, ADeliveryWhoseClaimLapsedMidBatchIsNotSentTwice) {
  Fixture f;
  f.AddWebhook();
  const std::string second = f.AddWebhook();
  std::vector<ClaimedDelivery> taken;
  bool slow = true;
  f.webhooks.OnSend([&](const WebhookRequest&) {
    if (!std::exchange(slow, false)) return;
    // The first send outlasts the batch's claim; another replica takes over.
    f.clock.Advance(absl::Minutes(2));
    auto claimed = f.store.Claim("b#1", f.clock.Now(), absl::Minutes(1), 10);
    EXPECT_THAT(claimed, IsOk());
    if (claimed.ok()) taken = *std::move(claimed);
  });
  EXPECT_EQ(f.Run(), 2);
  EXPECT_EQ(f.webhooks.requests().size(), 1u) << "the second is b's now: a does not send it";
  EXPECT_EQ(taken.size(), 2u);
  EXPECT_EQ(f.store.Get(second).status(), v1::Delivery::STATUS_PENDING);
  EXPECT_EQ(f.store.Get(second).attempts(), 0);
}

}  // namespace
}  // namespace wasentinel::alert
