// Message events in the outbox (feed/message_feed.h, PgAlertStore::AdvanceFeed) on a real
// PostgreSQL and a real HTTP receiver, on a fake clock: which message is which event, which
// endpoints get it, one delivery per event even when the feed reads a message twice, the
// feed's hold and its cursor as a fencing token, the signed body, and pruning.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "alert_db.h"
#include "delivery/dispatcher.h"
#include "feed/message_feed.h"
#include "http_receiver.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::alert {
namespace {

namespace sv1 = wasentinel::session::v1;

sv1::Message Inbound(const std::string& id, sv1::MessageStatus status, absl::Time at) {
  sv1::Message m;
  m.set_sequence(7);
  m.set_session_id("shop");
  m.set_tenant_id("acme");
  m.set_message_id(id);
  m.set_chat("15550001111@s.whatsapp.net");
  m.set_sender("15550001111:0@s.whatsapp.net");
  m.set_kind("text");
  m.set_text("hello shop");
  m.set_status(status);
  *m.mutable_stored_at() = ToProto(at);
  *m.mutable_status_at() = ToProto(at);
  return m;
}

sv1::Message Outbound(const std::string& id, sv1::MessageStatus status, absl::Time at) {
  sv1::Message m = Inbound(id, status, at);
  m.set_from_me(true);
  m.set_sender("15559990000:12@s.whatsapp.net");
  m.set_client_message_id("order-1");
  return m;
}

struct Fixture : AlertDb {
  testing::HttpReceiver receiver;
  wasentinel::testing::FakeClock clock;
  Sealer sealer = Sealer::FromConfig(std::string(64, 'a')).value();
  std::string secret = NewWebhookSecret();

  std::string Endpoint(std::vector<std::string> types, const std::string& tenant = "",
                       const std::string& path = "/hook") {
    v1::CreateWebhookEndpointRequest req;
    req.set_url(receiver.url(path));
    for (auto& t : types) req.add_event_types(t);
    auto sealed = sealer.Seal(AsBytes(secret));
    auto created =
        store.CreateEndpoint(req, sealed.key_id, ToString(sealed.blob), clock.Now(), tenant);
    EXPECT_THAT(created, IsOk()) << created.status();
    return created->id();
  }
  std::vector<v1::Delivery> Deliveries() {
    v1::ListDeliveriesRequest req;
    return store.ListDeliveries(req, 100).value().first;
  }
};

TEST(MessageEvents, EachMessageIsTheEventItsStatusSays) {
  Sealer sealer = Sealer::FromConfig(std::string(64, 'a')).value();
  const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  EXPECT_FALSE(MessageEventOf(Outbound("A", sv1::MESSAGE_STATUS_PENDING, t), sealer))
      << "SendMessage answered it already";
  auto received = MessageEventOf(Inbound("A", sv1::MESSAGE_STATUS_RECEIVED, t), sealer);
  auto read = MessageEventOf(Inbound("A", sv1::MESSAGE_STATUS_READ, t), sealer);
  auto broken = MessageEventOf(Inbound("A", sv1::MESSAGE_STATUS_UNDECRYPTABLE, t), sealer);
  ASSERT_TRUE(received && read && broken);
  EXPECT_EQ(received->type, "message.received");
  EXPECT_EQ(read->type, "message.received") << "marked read before the feed saw it";
  EXPECT_EQ(read->key, received->key) << "one event either way";
  EXPECT_EQ(broken->type, "message.received");
  EXPECT_NE(broken->key, received->key) << "a resend that decrypts is news";
  EXPECT_EQ(received->tenant_id, "acme");
  EXPECT_EQ(received->at, t);

  sv1::Message notice = Inbound("identity-1", sv1::MESSAGE_STATUS_RECEIVED, t);
  notice.set_kind("identity_changed");
  EXPECT_EQ(MessageEventOf(notice, sealer)->type, "session.identity_changed");

  std::set<std::string> keys;
  for (auto s : {sv1::MESSAGE_STATUS_SERVER_ACK, sv1::MESSAGE_STATUS_DELIVERED,
                 sv1::MESSAGE_STATUS_READ, sv1::MESSAGE_STATUS_FAILED}) {
    auto e = MessageEventOf(Outbound("B", s, t), sealer);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->type, "message.status");
    keys.insert(e->key);
  }
  EXPECT_EQ(keys.size(), 4u) << "one event per status";

  // The data, sealed.
  auto opened = sealer.Open(received->payload_key_id, AsBytes(received->sealed_payload));
  ASSERT_THAT(opened, IsOk());
  auto data = nlohmann::json::parse(ToString(*opened));
  EXPECT_EQ(data["text"], "hello shop");
  EXPECT_EQ(data["status"], "received");
  EXPECT_EQ(data["chat"], "15550001111@s.whatsapp.net");
  EXPECT_EQ(data["from_me"], false);
  EXPECT_EQ(data["stored_at"], "2027-01-15T08:00:00.000Z");
  EXPECT_FALSE(data.contains("raw")) << "a plain text's raw protobuf says nothing more";
  sv1::Message image = Inbound("C", sv1::MESSAGE_STATUS_RECEIVED, t);
  image.set_kind("image");
  image.set_raw(std::string("\x0a\x01\xff", 3));
  EXPECT_EQ(nlohmann::json::parse(MessageEventData(image))["raw"], "CgH/");
}

TEST(MessageEvents, OnlyEndpointsThatNameTheEventGetItOncePerEvent) {
  Fixture f;
  const std::string named = f.Endpoint({"message.received"});
  const std::string acme = f.Endpoint({"message.received", "message.status"}, "acme");
  f.Endpoint({});                                    // every alert: no messages
  f.Endpoint({"message.status"});                    // another event
  f.Endpoint({"message.received"}, "other-tenant");  // another tenant
  f.clock.Advance(absl::Seconds(1));

  auto hold = f.store.HoldFeed("messages", "a", f.clock.Now(), absl::Seconds(30));
  ASSERT_THAT(hold, IsOk());
  EXPECT_TRUE(hold->held);
  EXPECT_FALSE(hold->after_sequence) << "never followed";

  auto e = MessageEventOf(Inbound("A", sv1::MESSAGE_STATUS_RECEIVED, f.clock.Now()), f.sealer);
  auto n =
      f.store.AdvanceFeed("messages", "a", std::nullopt, 7, &*e, f.clock.Now(), absl::Seconds(30));
  ASSERT_THAT(n, IsOk()) << n.status();
  EXPECT_EQ(*n, 2);
  std::set<std::string> targets;
  for (const auto& d : f.Deliveries()) {
    EXPECT_EQ(d.kind(), v1::Delivery::KIND_MESSAGE);
    EXPECT_EQ(d.event_type(), "message.received");
    EXPECT_EQ(d.alert_id(), "");
    targets.insert(d.target());
  }
  EXPECT_EQ(targets, (std::set<std::string>{named, acme}));

  // The same message read again (marked read before a restarted feed saw it): no new delivery.
  auto again = MessageEventOf(Inbound("A", sv1::MESSAGE_STATUS_READ, f.clock.Now()), f.sealer);
  EXPECT_EQ(
      f.store.AdvanceFeed("messages", "a", 7, 9, &*again, f.clock.Now(), absl::Seconds(30)).value(),
      0);
  // A message older than an endpoint reaches only the endpoints that existed then.
  f.clock.Advance(absl::Minutes(1));
  const std::string late = f.Endpoint({"message.received"});
  auto old = MessageEventOf(
      Inbound("B", sv1::MESSAGE_STATUS_RECEIVED, f.clock.Now() - absl::Seconds(30)), f.sealer);
  EXPECT_EQ(
      f.store.AdvanceFeed("messages", "a", 9, 10, &*old, f.clock.Now(), absl::Seconds(30)).value(),
      2);
  // Tenant-scoped listing sees its tenant's message deliveries.
  v1::ListDeliveriesRequest req;
  EXPECT_EQ(f.store.ListDeliveries(req, 100, "acme").value().first.size(), 4u);
  EXPECT_EQ(f.store.ListDeliveries(req, 100, "other-tenant").value().first.size(), 0u);
  for (const auto& d : f.Deliveries()) EXPECT_NE(d.target(), late);
}

TEST(MessageEvents, TheCursorFencesAReplicaThatLostItsHold) {
  Fixture f;
  f.Endpoint({"message.received"});
  f.clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(f.store.HoldFeed("messages", "a", f.clock.Now(), absl::Seconds(30))->held);
  EXPECT_FALSE(f.store.HoldFeed("messages", "b", f.clock.Now(), absl::Seconds(30))->held)
      << "a holds it";
  ASSERT_THAT(f.store.AdvanceFeed("messages", "a", std::nullopt, 3, nullptr, f.clock.Now(),
                                  absl::Seconds(30)),
              IsOk());
  // A stale cursor writes nothing, whoever holds the feed.
  auto e = MessageEventOf(Inbound("A", sv1::MESSAGE_STATUS_RECEIVED, f.clock.Now()), f.sealer);
  EXPECT_EQ(f.store.AdvanceFeed("messages", "a", 1, 4, &*e, f.clock.Now(), absl::Seconds(30))
                .status()
                .code(),
            absl::StatusCode::kAborted);
  EXPECT_TRUE(f.Deliveries().empty());

  // a stalls past its lease; b takes the feed where a left it.
  f.clock.Advance(absl::Seconds(31));
  auto b = f.store.HoldFeed("messages", "b", f.clock.Now(), absl::Seconds(30));
  ASSERT_TRUE(b->held);
  EXPECT_EQ(b->after_sequence, 3);
  EXPECT_EQ(f.store.AdvanceFeed("messages", "a", 3, 4, &*e, f.clock.Now(), absl::Seconds(30))
                .status()
                .code(),
            absl::StatusCode::kAborted)
      << "a woke up: its writes are refused";
  EXPECT_EQ(
      f.store.AdvanceFeed("messages", "b", 3, 4, &*e, f.clock.Now(), absl::Seconds(30)).value(), 1);
  // Letting go hands it over at once.
  ASSERT_THAT(f.store.ReleaseFeed("messages", "b"), IsOk());
  auto a = f.store.HoldFeed("messages", "a", f.clock.Now(), absl::Seconds(30));
  ASSERT_TRUE(a->held);
  EXPECT_EQ(a->after_sequence, 4);
}

TEST(MessageEvents, ADispatcherSendsTheEventSignedAndItIsPrunedLater) {
  Fixture f;
  const std::string endpoint = f.Endpoint({"message.status"});
  f.clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(f.store.HoldFeed("messages", "a", f.clock.Now(), absl::Seconds(30))->held);
  auto e =
      MessageEventOf(Outbound("3EB0AA", sv1::MESSAGE_STATUS_DELIVERED, f.clock.Now()), f.sealer);
  ASSERT_EQ(
      f.store.AdvanceFeed("messages", "a", std::nullopt, 8, &*e, f.clock.Now(), absl::Seconds(30))
          .value(),
      1);

  DispatcherOptions o;
  o.worker = "d";
  o.allow_private_targets = true;
  Dispatcher dispatcher(f.store, f.sealer, f.clock, o, MakeLogger("dispatch", "warn"));
  CurlWebhookSender sender(absl::Seconds(5), true);
  EXPECT_EQ(dispatcher.RunOnce(sender), 1);
  auto got = f.receiver.requests();
  ASSERT_EQ(got.size(), 1u);
  const auto& h = got[0].headers;
  EXPECT_EQ(h.at("webhook-signature"), SignWebhook(f.secret, h.at("webhook-id"),
                                                   absl::ToUnixSeconds(f.clock.Now()), got[0].body)
                                           .value());
  auto body = nlohmann::json::parse(got[0].body);
  EXPECT_EQ(body["type"], "message.status");
  EXPECT_EQ(body["data"]["message_id"], "3EB0AA");
  EXPECT_EQ(body["data"]["status"], "delivered");
  EXPECT_EQ(body["data"]["client_message_id"], "order-1");
  EXPECT_EQ(body["data"]["from_me"], true);
  auto sent = f.Deliveries();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(sent[0].target(), endpoint);

  EXPECT_EQ(f.store.PruneMessageDeliveries(f.clock.Now() - absl::Hours(1), 100).value(), 0)
      << "young";
  EXPECT_EQ(f.store.PruneMessageDeliveries(f.clock.Now() + absl::Hours(1), 100).value(), 1);
  EXPECT_TRUE(f.Deliveries().empty());
}

}  // namespace
}  // namespace wasentinel::alert
