// The client connection against wa-sim over loopback: login, keepalive, every way a session
// ends (stream errors, conflict, drops, blackhole), inbound messages, probe, clean close.
#include "connection.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <future>
#include <thread>

#include "sim_control.h"
#include "sim_server.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/testing/recorder.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::wa {
namespace {

using wasentinel::testing::Recorder;

struct Event {
  enum Kind { kLoggedIn, kClosed, kPong, kMessage } kind;
  CloseInfo close;
};

class RecordingObserver : public ConnectionObserver {
 public:
  void OnLoggedIn(const LoginInfo&) override { events.Push({Event::kLoggedIn, {}}); }
  void OnClosed(const CloseInfo& info) override { events.Push({Event::kClosed, info}); }
  void OnPong(absl::Duration) override { events.Push({Event::kPong, {}}); }
  void OnInboundMessage(absl::Time) override { events.Push({Event::kMessage, {}}); }

  bool Has(Event::Kind kind) const {
    for (const auto& e : events.Snapshot()) {
      if (e.kind == kind) return true;
    }
    return false;
  }
  // Waits until `n` events of `kind` were recorded.
  ::testing::AssertionResult WaitFor(Event::Kind kind, size_t n = 1) {
    return events.WaitFor([kind, n](const std::vector<Event>& v) {
      return static_cast<size_t>(std::count_if(
                 v.begin(), v.end(), [kind](const Event& e) { return e.kind == kind; })) >= n;
    });
  }
  CloseInfo Closed() {
    for (const auto& e : events.Snapshot()) {
      if (e.kind == Event::kClosed) return e.close;
    }
    return {};
  }

  Recorder<Event> events;
};

// wa-sim in this process, on its own io thread; the client on another.
class Loopback {
 public:
  explicit Loopback(bool trust_sim_tls = true)
      : sim_log_(MakeLogger("wa-sim", "warn")), client_log_(MakeLogger("client", "warn")) {
    sim::SimOptions opts;
    opts.ws_port = 0;
    opts.control_port = 0;
    opts.tls_port = 0;
    opts.tls_cert_file = WAS_SIM_TESTDATA "/tls-cert.pem";
    opts.tls_key_file = WAS_SIM_TESTDATA "/tls-key.pem";
    tls_.set_verify_mode(boost::asio::ssl::verify_peer);
    if (trust_sim_tls) {
      tls_.load_verify_file(opts.tls_cert_file);
    } else {
      tls_.set_default_verify_paths();
    }
    sim_ = std::move(sim::SimServer::Create(sim_io_, opts, sim_log_).value());
    sim_thread_ = std::thread([this] { sim_io_.run(); });
    client_thread_ = std::thread([this] { client_io_.run(); });
  }
  ~Loopback() {
    client_work_.reset();
    client_thread_.join();
    sim_io_.stop();
    sim_thread_.join();
  }

  DeviceCredentials RegisterDevice(uint64_t phone = 15551234567, uint32_t device = 12) {
    DeviceCredentials creds;
    creds.noise_key = KeyPair::Generate();
    creds.phone = phone;
    creds.device = device;
    creds.push_name = "Loopback";
    auto r = control().Post("/devices", {{"jid", creds.Jid()},
                                         {"noise_public_key", Base64Encode(creds.noise_key.pub)}});
    EXPECT_THAT(r, IsOk()) << r.status();
    return creds;
  }

  ConnectionOptions Options() const {
    ConnectionOptions o;
    o.url = "ws://127.0.0.1:" + std::to_string(sim_->ws_port()) + "/ws/chat";
    o.root_key = sim_->root_public_key();
    o.connect_timeout = absl::Seconds(5);
    o.keepalive_interval_min = absl::Milliseconds(20);
    o.keepalive_interval_max = absl::Milliseconds(40);
    o.keepalive_response_timeout = absl::Milliseconds(100);
    o.keepalive_max_silence = absl::Milliseconds(300);
    return o;
  }

  std::shared_ptr<Connection> Connect(const DeviceCredentials& creds,
                                      std::shared_ptr<RecordingObserver> observer,
                                      std::optional<ConnectionOptions> options = std::nullopt) {
    return Connection::Start(client_io_.get_executor(), tls_, options.value_or(Options()), creds,
                             observer, client_log_);
  }

  sim::SimControl control() const { return sim::SimControl(sim_->control_port()); }
  std::string TlsUrl(const std::string& host = "localhost") const {
    return "wss://" + host + ":" + std::to_string(sim_->tls_port()) + "/ws/chat";
  }

 private:
  std::shared_ptr<spdlog::logger> sim_log_, client_log_;
  boost::asio::io_context sim_io_{1};
  boost::asio::io_context client_io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> client_work_{
      client_io_.get_executor()};
  boost::asio::ssl::context tls_{boost::asio::ssl::context::tls_client};
  std::unique_ptr<sim::SimServer> sim_;
  std::thread sim_thread_, client_thread_;
};

TEST(Connection, LogsInAndKeepsAlive) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto obs = std::make_shared<RecordingObserver>();
  auto conn = lb.Connect(creds, obs);
  ASSERT_TRUE(obs->WaitFor(Event::kLoggedIn));
  ASSERT_TRUE(obs->WaitFor(Event::kPong, 3));
  EXPECT_GE(conn->stats().keepalive_rtt_us.load(), 0);
  EXPECT_GT(conn->stats().last_pong_unix_ms.load(), 0);
  EXPECT_TRUE(wasentinel::testing::Eventually([&] {
    return conn->stats().prekey_count.load() == 0;
  })) << "the device uploaded no pre-keys to wa-sim, which answers its real count";
  auto conns = lb.control().Get("/connections").value();
  ASSERT_EQ(conns["connections"].size(), 1u);
  EXPECT_EQ(conns["connections"][0]["jid"], "15551234567:12");
  EXPECT_EQ(conns["connections"][0]["presence"], "unavailable")
      << "a kept session never marks the account online (the phone would stop notifying)";
  // A probe is a ping alone: still no `available`.
  std::promise<absl::StatusOr<absl::Duration>> probed;
  conn->Probe([&](absl::StatusOr<absl::Duration> rtt) { probed.set_value(rtt); }, absl::Seconds(5));
  EXPECT_THAT(probed.get_future().get(), IsOk());
  conns = lb.control().Get("/connections").value();
  for (const auto& p : conns["connections"][0]["presences"]) EXPECT_NE(p, "available");
  EXPECT_FALSE(obs->Has(Event::kClosed));
}

TEST(Connection, AcksCarryEveryAttributeTheServerExpects) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto obs = std::make_shared<RecordingObserver>();
  auto conn = lb.Connect(creds, obs);
  ASSERT_TRUE(obs->WaitFor(Event::kLoggedIn));
  const std::string path = "/connections/15551234567:12/stanza";
  const nlohmann::json stanzas[] = {
      {{"tag", "message"},
       {"from", "120363000000000001@g.us"},
       {"type", "text"},
       {"participant", "15550001111@s.whatsapp.net"}},
      {{"tag", "message"},
       {"from", "15551234567@s.whatsapp.net"},
       {"type", "text"},
       {"recipient", "15550002222@s.whatsapp.net"}},
      {{"tag", "receipt"}, {"from", "15550001111@s.whatsapp.net"}, {"type", "read"}},
      {{"tag", "notification"}, {"from", "s.whatsapp.net"}, {"type", "server_sync"}},
      {{"tag", "status"}, {"from", "15550001111@s.whatsapp.net"}},
      {{"tag", "appdata"}, {"from", "s.whatsapp.net"}, {"type", "sync"}},
  };
  for (const auto& stanza : stanzas) ASSERT_THAT(lb.control().Post(path, stanza), IsOk());
  EXPECT_TRUE(wasentinel::testing::Eventually([&] {
    auto c = lb.control().Get("/connections").value()["connections"][0];
    return c["acks_matched"] == 6 && c["unacked"] == 0;
  })) << lb.control().Get("/connections").value().dump();
  auto c = lb.control().Get("/connections").value()["connections"][0];
  EXPECT_EQ(c["acks_mismatched"], 0) << c.dump();
}

struct FaultCase {
  std::string name;
  std::string action;
  nlohmann::json body;
  CloseCause cause;
  int code;
};

class ConnectionFault : public ::testing::TestWithParam<FaultCase> {};

// What the server queued while the device was offline, and what an earlier connection never
// acknowledged, comes at the next login after <ib><offline_preview>; the client asks for it
// (<ib><offline_batch>), acks every stanza, and so nothing comes a second time.
TEST(Connection, OfflineStanzasAreFetchedAckedAndNeverRedelivered) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  const std::string device = "/devices/15551234567:12";
  // Queued before the first login.
  for (const char* tag : {"message", "receipt", "notification"}) {
    ASSERT_THAT(
        lb.control().Post(device + "/stanza",
                          {{"tag", tag}, {"from", "15550001111@s.whatsapp.net"}, {"type", "text"}}),
        IsOk());
  }
  auto stats = [&] { return lb.control().Get("/stats").value(); };
  auto conn_json = [&] { return lb.control().Get("/connections").value()["connections"]; };
  auto delivered = [&](int acked) {
    return wasentinel::testing::Eventually([&] {
      auto c = conn_json();
      return c.size() == 1 && c[0]["offline_done"] == true && c[0]["acks_matched"] == acked &&
             c[0]["unacked"] == 0;
    });
  };
  auto obs = std::make_shared<RecordingObserver>();
  auto conn = lb.Connect(creds, obs);
  ASSERT_TRUE(obs->WaitFor(Event::kLoggedIn));
  ASSERT_TRUE(delivered(3));
  EXPECT_EQ(conn_json()[0]["offline_batch_requested"], true);
  EXPECT_EQ(stats()["offline_delivered"], 3);
  EXPECT_EQ(stats()["offline_batches"], 1);

  // A stanza the server never sees acknowledged (the connection is blackholed) waits for the
  // next login.
  ASSERT_THAT(lb.control().Post("/connections/15551234567:12/blackhole"), IsOk());
  ASSERT_THAT(
      lb.control().Post("/connections/15551234567:12/stanza",
                        {{"tag", "notification"}, {"from", "s.whatsapp.net"}, {"type", "devices"}}),
      IsOk());
  conn->Abort();
  ASSERT_TRUE(obs->WaitFor(Event::kClosed));
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    return conn_json().empty() &&
           lb.control().Get("/devices").value()["devices"][0]["offline_queued"] == 1;
  }));
  auto obs2 = std::make_shared<RecordingObserver>();
  auto conn2 = lb.Connect(creds, obs2);
  ASSERT_TRUE(obs2->WaitFor(Event::kLoggedIn));
  ASSERT_TRUE(delivered(1));
  EXPECT_EQ(stats()["offline_delivered"], 4);
  conn2->Abort();
  ASSERT_TRUE(obs2->WaitFor(Event::kClosed));

  // Every stanza was acked: a third login finds nothing.
  ASSERT_TRUE(wasentinel::testing::Eventually([&] { return conn_json().empty(); }));
  auto obs3 = std::make_shared<RecordingObserver>();
  auto conn3 = lb.Connect(creds, obs3);
  ASSERT_TRUE(obs3->WaitFor(Event::kLoggedIn));
  ASSERT_TRUE(delivered(0));
  EXPECT_EQ(stats()["offline_delivered"], 4);
  EXPECT_EQ(stats()["offline_batches"], 2);
}

TEST_P(ConnectionFault, EndsWithTheRightCause) {
  const FaultCase& fc = GetParam();
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto obs = std::make_shared<RecordingObserver>();
  auto conn = lb.Connect(creds, obs);
  ASSERT_TRUE(obs->WaitFor(Event::kLoggedIn));
  auto r = lb.control().Post("/connections/" + creds.Jid() + "/" + fc.action, fc.body);
  ASSERT_THAT(r, IsOk()) << r.status();
  ASSERT_TRUE(obs->WaitFor(Event::kClosed));
  CloseInfo info = obs->Closed();
  EXPECT_EQ(info.cause, fc.cause) << CloseCauseName(info.cause) << ": " << info.detail;
  EXPECT_EQ(info.code, fc.code) << info.detail;
}

INSTANTIATE_TEST_SUITE_P(
    AllFaults, ConnectionFault,
    ::testing::Values(
        FaultCase{"restart", "stream-error", {{"code", 515}}, CloseCause::kRestartRequired, 515},
        FaultCase{"logged_out", "stream-error", {{"code", 401}}, CloseCause::kLoggedOut, 401},
        FaultCase{"server_error", "stream-error", {{"code", 503}}, CloseCause::kServerError, 503},
        FaultCase{"replaced", "conflict", nlohmann::json::object(), CloseCause::kReplaced, 440},
        FaultCase{"drop_close", "drop", {{"mode", "close"}}, CloseCause::kSocketClosed, 0},
        FaultCase{"drop_rst", "drop", {{"mode", "rst"}}, CloseCause::kSocketClosed, 0},
        FaultCase{"blackhole", "blackhole", {{"enabled", true}}, CloseCause::kKeepaliveTimeout, 0}),
    [](const auto& info) { return info.param.name; });

TEST(Connection, UnknownDeviceIsLoggedOut) {
  Loopback lb;
  DeviceCredentials creds;
  creds.noise_key = KeyPair::Generate();
  creds.phone = 15550000000;
  creds.device = 3;
  auto obs = std::make_shared<RecordingObserver>();
  auto conn = lb.Connect(creds, obs);
  ASSERT_TRUE(obs->WaitFor(Event::kClosed));
  EXPECT_EQ(obs->Closed().cause, CloseCause::kLoggedOut);
  EXPECT_EQ(obs->Closed().code, 401);
  EXPECT_FALSE(obs->Has(Event::kLoggedIn));
}

TEST(Connection, WrongRootKeyFailsTheHandshake) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto obs = std::make_shared<RecordingObserver>();
  auto options = lb.Options();
  options.root_key = kWhatsAppRootKey;  // the real root does not sign wa-sim's chain
  auto conn = lb.Connect(creds, obs, options);
  ASSERT_TRUE(obs->WaitFor(Event::kClosed));
  EXPECT_EQ(obs->Closed().cause, CloseCause::kHandshakeFailed);
  EXPECT_NE(obs->Closed().detail.find("server certificate"), std::string::npos)
      << obs->Closed().detail;
}

TEST(Connection, NothingListeningIsAConnectFailure) {
  Loopback lb;
  auto obs = std::make_shared<RecordingObserver>();
  auto options = lb.Options();
  options.url = "ws://127.0.0.1:1/ws/chat";
  auto conn = lb.Connect(lb.RegisterDevice(), obs, options);
  ASSERT_TRUE(obs->WaitFor(Event::kClosed));
  EXPECT_EQ(obs->Closed().cause, CloseCause::kConnectFailed);
}

TEST(Connection, LogsInOverTls) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto obs = std::make_shared<RecordingObserver>();
  auto options = lb.Options();
  options.url = lb.TlsUrl();
  auto conn = lb.Connect(creds, obs, options);
  ASSERT_TRUE(obs->WaitFor(Event::kLoggedIn)) << obs->Closed().detail;
  ASSERT_TRUE(obs->WaitFor(Event::kPong));
  ASSERT_THAT(lb.control().Post("/connections/" + creds.Jid() + "/stream-error", {{"code", 515}}),
              IsOk());
  ASSERT_TRUE(obs->WaitFor(Event::kClosed));
  EXPECT_EQ(obs->Closed().cause, CloseCause::kRestartRequired);
}

// TlsSocket (src/wa/tls_socket.h) carries reads and writes that interleave (acks going out
// while stanzas come in), verifies an IP address against the certificate's SAN, and closes
// with the WebSocket close handshake over TLS.
TEST(Connection, CarriesStanzasOverTlsToAnIpAddressAndClosesCleanly) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto obs = std::make_shared<RecordingObserver>();
  auto options = lb.Options();
  options.url = lb.TlsUrl("127.0.0.1");
  auto conn = lb.Connect(creds, obs, options);
  ASSERT_TRUE(obs->WaitFor(Event::kLoggedIn)) << obs->Closed().detail;
  for (int i = 0; i < 50; ++i) {
    ASSERT_THAT(lb.control().Post("/connections/" + creds.Jid() + "/message"), IsOk());
  }
  ASSERT_TRUE(obs->WaitFor(Event::kMessage, 50));
  EXPECT_TRUE(wasentinel::testing::Eventually([&] {
    auto c = lb.control().Get("/connections");
    return c.ok() && (*c)["connections"].size() == 1 && (*c)["connections"][0]["acks"] == 50;
  }));
  conn->Close();
  ASSERT_TRUE(obs->WaitFor(Event::kClosed));
  EXPECT_EQ(obs->Closed().cause, CloseCause::kClosedByUs) << obs->Closed().detail;
}

TEST(Connection, UntrustedTlsCertificateIsAConnectFailure) {
  Loopback lb(/*trust_sim_tls=*/false);
  auto obs = std::make_shared<RecordingObserver>();
  auto options = lb.Options();
  options.url = lb.TlsUrl();
  auto conn = lb.Connect(lb.RegisterDevice(), obs, options);
  ASSERT_TRUE(obs->WaitFor(Event::kClosed));
  EXPECT_EQ(obs->Closed().cause, CloseCause::kConnectFailed);
  EXPECT_NE(obs->Closed().detail.find("certificate"), std::string::npos) << obs->Closed().detail;
}

TEST(Connection, AcknowledgesInboundMessages) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto obs = std::make_shared<RecordingObserver>();
  auto conn = lb.Connect(creds, obs);
  ASSERT_TRUE(obs->WaitFor(Event::kLoggedIn));
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(lb.control().Post("/connections/" + creds.Jid() + "/message"), IsOk());
  }
  ASSERT_TRUE(obs->WaitFor(Event::kMessage, 3));
  EXPECT_EQ(conn->stats().inbound_messages.load(), 3);
  EXPECT_GT(conn->stats().last_inbound_unix_ms.load(), 0);
  EXPECT_TRUE(wasentinel::testing::Eventually([&] {
    auto c = lb.control().Get("/connections");
    return c.ok() && (*c)["connections"].size() == 1 && (*c)["connections"][0]["acks"] == 3;
  }));
}

TEST(Connection, ProbeAnswersTheRoundTrip) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto obs = std::make_shared<RecordingObserver>();
  auto options = lb.Options();
  options.keepalive_interval_min = options.keepalive_interval_max = absl::Hours(1);
  auto conn = lb.Connect(creds, obs, options);
  ASSERT_TRUE(obs->WaitFor(Event::kLoggedIn));
  Recorder<absl::StatusOr<absl::Duration>> probes;
  conn->Probe([&](absl::StatusOr<absl::Duration> rtt) { probes.Push(rtt); }, absl::Seconds(5));
  ASSERT_TRUE(probes.WaitForCount(1));
  EXPECT_THAT(probes.Snapshot()[0], IsOk()) << probes.Snapshot()[0].status();
}

TEST(Connection, CloseSaysGoodbye) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto obs = std::make_shared<RecordingObserver>();
  auto conn = lb.Connect(creds, obs);
  ASSERT_TRUE(obs->WaitFor(Event::kLoggedIn));
  conn->Close();
  ASSERT_TRUE(obs->WaitFor(Event::kClosed));
  EXPECT_EQ(obs->Closed().cause, CloseCause::kClosedByUs);
  EXPECT_TRUE(wasentinel::testing::Eventually([&] {
    auto c = lb.control().Get("/connections");
    return c.ok() && (*c)["connections"].empty();
  }));
}

TEST(Connection, CloseWhileConnectingNeverLogsInLater) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto options = lb.Options();
  options.url = "ws://localhost:" + options.url.substr(options.url.rfind(':') + 1);  // resolve
  auto first = std::make_shared<RecordingObserver>();
  auto c1 = lb.Connect(creds, first, options);
  c1->Close();  // before the name lookup can finish
  ASSERT_TRUE(first->WaitFor(Event::kClosed));
  EXPECT_EQ(first->Closed().cause, CloseCause::kClosedByUs);
  // A later connection of the same device stays up: no straggler logs in and replaces it.
  auto second = std::make_shared<RecordingObserver>();
  auto c2 = lb.Connect(creds, second, options);
  ASSERT_TRUE(second->WaitFor(Event::kLoggedIn));
  ASSERT_TRUE(second->WaitFor(Event::kPong, 5));
  EXPECT_FALSE(second->Has(Event::kClosed));
  EXPECT_FALSE(first->Has(Event::kLoggedIn));
  EXPECT_EQ(lb.control().Get("/stats").value()["logins"], 1);
}

TEST(Connection, SecondLoginReplacesTheFirst) {
  Loopback lb;
  auto creds = lb.RegisterDevice();
  auto first = std::make_shared<RecordingObserver>();
  auto c1 = lb.Connect(creds, first);
  ASSERT_TRUE(first->WaitFor(Event::kLoggedIn));
  auto second = std::make_shared<RecordingObserver>();
  auto c2 = lb.Connect(creds, second);
  ASSERT_TRUE(second->WaitFor(Event::kLoggedIn));
  ASSERT_TRUE(first->WaitFor(Event::kClosed));
  EXPECT_EQ(first->Closed().cause, CloseCause::kReplaced);
  EXPECT_FALSE(second->Has(Event::kClosed));
}

}  // namespace
}  // namespace wasentinel::wa
