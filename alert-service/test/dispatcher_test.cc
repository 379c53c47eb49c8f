// Dispatchers against a real HTTP receiver on loopback and a real PostgreSQL, on a fake clock:
// signed webhooks, retries on 5xx and 429 (Retry-After), the dead letter, claims that expire
// (a dispatcher that died mid-send), and the resolved notice.
#include "delivery/dispatcher.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "alert_db.h"
#include "http_receiver.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::alert {
namespace {

struct Fixture : AlertDb {
  testing::HttpReceiver receiver;  // outlives the senders (declared first)
  wasentinel::testing::FakeClock clock;
  Sealer sealer = Sealer::FromConfig(std::string(64, 'a')).value();
  std::string secret = NewWebhookSecret();
  std::unique_ptr<Dispatcher> dispatcher;
  std::unique_ptr<CurlWebhookSender> sender;

  explicit Fixture(std::vector<absl::Duration> backoff = {absl::Seconds(10), absl::Seconds(30)}) {
    v1::CreateWebhookEndpointRequest req;
    req.set_url(receiver.url());
    auto sealed =
        sealer.Seal(ByteView(reinterpret_cast<const uint8_t*>(secret.data()), secret.size()));
    auto created = store.CreateEndpoint(
        req, sealed.key_id, std::string(sealed.blob.begin(), sealed.blob.end()), clock.Now());
    EXPECT_THAT(created, IsOk()) << created.status();
    DispatcherOptions o;
    o.worker = "a";
    o.allow_private_targets = true;
    o.backoff = std::move(backoff);
    dispatcher =
        std::make_unique<Dispatcher>(store, sealer, clock, o, MakeLogger("dispatch", "warn"));
    sender = std::make_unique<CurlWebhookSender>(absl::Seconds(5), true);
  }
  ~Fixture() { sender.reset(); }

  std::string Raise(const std::string& key = "session.offline/s1") {
    v1::RaiseAlertRequest r;
    r.set_dedup_key(key);
    r.set_event_type("session.warning");
    r.set_severity(v1::SEVERITY_WARNING);
    r.set_summary("Shop (155******67) has been offline for 5m");
    r.mutable_session()->set_session_id("s1");
    r.mutable_session()->set_phone_number_masked("155******67");
    return store.Raise(r, {}, clock.Now()).value().alert.id();
  }
  v1::Delivery Webhook(const std::string& alert_id, int index = 0) {
    auto a = store.Get(alert_id).value();
    int seen = 0;
    for (const auto& d : a.deliveries()) {
      if (d.channel() == v1::Delivery::CHANNEL_WEBHOOK && seen++ == index) return d;
    }
    ADD_FAILURE() << "no webhook delivery " << index;
    return {};
  }
};

TEST(Dispatcher, SendsASignedWebhookOnce) {
  Fixture f;
  const std::string id = f.Raise();
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  auto got = f.receiver.requests();
  ASSERT_EQ(got.size(), 1u);
  const auto& h = got[0].headers;
  const auto d = f.Webhook(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(d.attempts(), 1);
  EXPECT_EQ(h.at("webhook-id"), "msg_" + d.id());
  EXPECT_EQ(h.at("webhook-timestamp"), std::to_string(absl::ToUnixSeconds(f.clock.Now())));
  EXPECT_EQ(h.at("webhook-signature"), SignWebhook(f.secret, h.at("webhook-id"),
                                                   absl::ToUnixSeconds(f.clock.Now()), got[0].body)
                                           .value());
  auto body = nlohmann::json::parse(got[0].body);
  EXPECT_EQ(body["type"], "session.warning");
  EXPECT_EQ(body["data"]["session"]["phone_number_masked"], "155******67");
  EXPECT_EQ(body["data"]["kind"], "notify");
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 0) << "nothing more is due";

  // The resolved notice goes where the alert went.
  ASSERT_THAT(f.store.Resolve("session.offline/s1", "connected again", f.clock.Now()), IsOk());
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  got = f.receiver.requests();
  ASSERT_EQ(got.size(), 2u);
  body = nlohmann::json::parse(got[1].body);
  EXPECT_EQ(body["type"], "session.recovered");
  EXPECT_EQ(body["data"]["kind"], "resolved");
  EXPECT_NE(got[1].headers.at("webhook-id"), got[0].headers.at("webhook-id"));
}

TEST(Dispatcher, RetriesServerErrorsWithTheSameIdThenSends) {
  Fixture f;
  f.receiver.Script({{500}, {503}});
  const std::string id = f.Raise();
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  auto d = f.Webhook(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_FAILED);
  EXPECT_EQ(d.last_error(), "HTTP 500");
  const absl::Duration wait = FromProto(d.next_attempt_at()) - f.clock.Now();
  EXPECT_GE(wait, absl::Seconds(8));  // 10 s ± 20 %
  EXPECT_LE(wait, absl::Seconds(12));
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 0) << "not due yet";
  f.clock.Advance(absl::Seconds(13));
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  EXPECT_EQ(f.Webhook(id).status(), v1::Delivery::STATUS_FAILED);
  f.clock.Advance(absl::Seconds(40));
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  d = f.Webhook(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(d.attempts(), 3);
  auto got = f.receiver.requests();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].headers.at("webhook-id"), got[2].headers.at("webhook-id"));
}

TEST(Dispatcher, HonoursRetryAfterOn429) {
  Fixture f;
  f.receiver.Script({{429, "120"}});
  const std::string id = f.Raise();
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  auto d = f.Webhook(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_FAILED);
  EXPECT_GE(FromProto(d.next_attempt_at()) - f.clock.Now(), absl::Seconds(120));
}

TEST(Dispatcher, OtherClientErrorsAndTheLastAttemptAreDeadLetters) {
  Fixture f;
  f.receiver.Script({{404}, {503}, {503}, {503}});
  const std::string a = f.Raise("k/a");
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  EXPECT_EQ(f.Webhook(a).status(), v1::Delivery::STATUS_DEAD) << "404 is not retried";
  EXPECT_EQ(f.Webhook(a).last_error(), "HTTP 404");
  const std::string b = f.Raise("k/b");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
    f.clock.Advance(absl::Minutes(1));
  }
  auto d = f.Webhook(b);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_DEAD);
  EXPECT_EQ(d.attempts(), 3);
  EXPECT_EQ(d.last_error(), "HTTP 503; no attempts left");
}

TEST(Dispatcher, AClaimThatExpiresIsTakenByAnother) {
  Fixture f;
  f.Raise();
  // Dispatcher "a" claims and dies before sending (its claim is never completed).
  auto claimed = f.store.Claim("a", f.clock.Now(), absl::Minutes(1), 10);
  ASSERT_THAT(claimed, IsOk());
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_TRUE(f.store.Claim("b", f.clock.Now(), absl::Minutes(1), 10).value().empty())
      << "claimed: no one else takes it";
  f.clock.Advance(absl::Minutes(1));
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1) << "the claim expired";
  EXPECT_EQ(f.receiver.requests().size(), 1u);
}

TEST(Dispatcher, ADeliveryWhoseClaimLapsedMidBatchIsNotSentTwice) {
  Fixture f;
  f.Raise("k/1");
  const std::string second = f.Raise("k/2");
  std::vector<ClaimedDelivery> taken;
  f.receiver.Script({{200, "", [&] {
                        // The first send outlasts the batch's claim; another replica takes over.
                        f.clock.Advance(absl::Minutes(2));
                        taken = f.store.Claim("b#1", f.clock.Now(), absl::Minutes(1), 10).value();
                      }}});
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 2);
  EXPECT_EQ(f.receiver.requests().size(), 1u) << "the second is b's now: a does not send it";
  EXPECT_EQ(taken.size(), 2u);
  EXPECT_EQ(f.Webhook(second).status(), v1::Delivery::STATUS_PENDING);
  EXPECT_EQ(f.Webhook(second).attempts(), 0);
}

TEST(Dispatcher, AnEndpointsRateLimitDefersTheRest) {
  Fixture f;
  v1::UpdateWebhookEndpointRequest limit;
  limit.set_id(f.store.ListEndpoints().value().front().id());
  limit.set_rate_limit_per_second(2);
  ASSERT_THAT(f.store.UpdateEndpoint(limit), IsOk());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(f.Raise("k/" + std::to_string(i)));
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 3);
  EXPECT_EQ(f.receiver.requests().size(), 2u) << "a burst of one second's worth";
  const auto third = f.Webhook(ids[2]);
  EXPECT_EQ(third.status(), v1::Delivery::STATUS_PENDING);
  EXPECT_EQ(third.attempts(), 0) << "waiting its turn is not an attempt";
  EXPECT_EQ(FromProto(third.next_attempt_at()), f.clock.Now() + absl::Milliseconds(500));
  f.clock.Advance(absl::Milliseconds(500));
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  EXPECT_EQ(f.receiver.requests().size(), 3u);
}

TEST(Dispatcher, DuringARotationsGraceBothSecretsSign) {
  Fixture f;
  const std::string endpoint = f.store.ListEndpoints().value().front().id();
  const std::string fresh = NewWebhookSecret();
  auto sealed =
      f.sealer.Seal(ByteView(reinterpret_cast<const uint8_t*>(fresh.data()), fresh.size()));
  ASSERT_THAT(f.store.RotateSecret(endpoint, sealed.key_id,
                                   std::string(sealed.blob.begin(), sealed.blob.end()),
                                   f.clock.Now() + absl::Hours(24), f.clock.Now()),
              IsOk());
  f.Raise("k/during");
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  auto got = f.receiver.requests();
  ASSERT_EQ(got.size(), 1u);
  const auto& h = got[0].headers;
  const int64_t ts = absl::ToUnixSeconds(f.clock.Now());
  const std::string both = SignWebhook(fresh, h.at("webhook-id"), ts, got[0].body).value() + " " +
                           SignWebhook(f.secret, h.at("webhook-id"), ts, got[0].body).value();
  EXPECT_EQ(h.at("webhook-signature"), both) << "the new secret first, then the old one";
  // After the grace period, only the new one.
  f.clock.Advance(absl::Hours(25));
  f.Raise("k/after");
  EXPECT_EQ(f.dispatcher->RunOnce(*f.sender), 1);
  got = f.receiver.requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].headers.at("webhook-signature"),
            SignWebhook(fresh, got[1].headers.at("webhook-id"), absl::ToUnixSeconds(f.clock.Now()),
                        got[1].body)
                .value());
}

TEST(Dispatcher, AnEndpointRefusedAtSendTimeIsDeadAtOnce) {
  // An endpoint stored before today's rules (the store does not check URLs; the API does).
  Fixture f;
  v1::CreateWebhookEndpointRequest req;
  req.set_url("https://[64:ff9b::7f00:1]/hook");  // NAT64 form of 127.0.0.1
  auto sealed =
      f.sealer.Seal(ByteView(reinterpret_cast<const uint8_t*>(f.secret.data()), f.secret.size()));
  ASSERT_THAT(
      f.store.CreateEndpoint(req, sealed.key_id,
                             std::string(sealed.blob.begin(), sealed.blob.end()), f.clock.Now()),
      IsOk());
  DispatcherOptions o;
  o.worker = "strict";
  o.allow_private_targets = false;
  o.backoff = {absl::Seconds(10), absl::Seconds(30)};
  Dispatcher strict(f.store, f.sealer, f.clock, o, MakeLogger("dispatch", "warn"));
  CurlWebhookSender sender(absl::Seconds(2), /*allow_private=*/false);
  const std::string id = f.Raise();
  strict.RunOnce(sender);
  const auto d = f.Webhook(id, 1);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_DEAD) << d.last_error();
  EXPECT_EQ(d.attempts(), 1);
  EXPECT_NE(d.last_error().find("SSRF"), std::string::npos) << d.last_error();
}

}  // namespace
}  // namespace wasentinel::alert
