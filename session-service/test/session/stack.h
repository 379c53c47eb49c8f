// The session-service test stack in one process: PostgreSQL (fixture pg), wa-sim on loopback,
// the App with its gRPC server on 127.0.0.1:0, a gRPC client, and a WatchSessionEvents recorder.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <thread>

#include "app.h"
#include "e2ee/signal.h"
#include "fake_creds.h"
#include "sim_control.h"
#include "sim_server.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/session/v1/session.grpc.pb.h"
#include "wasentinel/testing/recorder.h"
#include "wasentinel/testing/status_matchers.h"
#include "wasentinel/testing/test_database.h"

namespace wasentinel::session {

using ::wasentinel::testing::Recorder;

inline constexpr char kKey[] =
    "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

class Sim {
 public:
  explicit Sim(std::function<void(sim::SimOptions&)> tweak = nullptr) {
    sim::SimOptions o;
    o.ws_port = 0;
    o.control_port = 0;
    if (tweak) tweak(o);
    server_ = std::move(
        sim::SimServer::Create(
            io_, o,
            MakeLogger("wa-sim", std::getenv("WAS_SIM_LOG") ? std::getenv("WAS_SIM_LOG") : "warn"))
            .value());
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Sim() {
    io_.stop();
    thread_.join();
  }
  std::string url() const {
    return "ws://127.0.0.1:" + std::to_string(server_->ws_port()) + "/ws/chat";
  }
  const std::array<uint8_t, 32>& root() const { return server_->root_public_key(); }
  sim::SimControl control() const { return sim::SimControl(server_->control_port()); }
  uint16_t control_port() const { return server_->control_port(); }

  // A device known to wa-sim, as a Baileys creds.json.
  std::string Device(uint64_t phone, uint32_t device = 5) {
    wa::KeyPair noise = wa::KeyPair::Generate();
    std::string creds = wasentinel::testing::BaileysCredsJson(noise, phone, device);
    EXPECT_TRUE(control().Post("/devices", {{"creds", nlohmann::json::parse(creds)}}).ok());
    return creds;
  }

 private:
  boost::asio::io_context io_{1};
  std::unique_ptr<sim::SimServer> server_;
  std::thread thread_;
};

inline Options StackOptions(const std::string& db_url, const Sim& sim) {
  Options o;
  o.runtime.grpc_listen = "127.0.0.1:0";
  o.runtime.metrics_listen = "127.0.0.1:0";
  o.runtime.database_url = db_url;
  o.auth_state_keys = kKey;
  o.runtime.log_level = std::getenv("WAS_TEST_LOG") ? std::getenv("WAS_TEST_LOG") : "warn";
  auto& c = o.manager.connection;
  c.url = sim.url();
  c.root_key = sim.root();
  c.connect_timeout = absl::Seconds(5);
  c.keepalive_interval_min = absl::Milliseconds(30);
  c.keepalive_interval_max = absl::Milliseconds(50);
  c.keepalive_response_timeout = absl::Milliseconds(100);
  c.keepalive_max_silence = absl::Milliseconds(300);
  o.manager.backoff = {absl::Milliseconds(50), absl::Milliseconds(50), absl::Milliseconds(50)};
  o.manager.restore_per_second = 0;
  o.phone_seen_flush_interval = absl::Milliseconds(100);
  // No page to read here (tests of `auto` point it at wa-sim's).
  o.wa_version.version = wa::kDefaultWaVersion.ToString();
  return o;
}

// Reads a server stream on a thread of its own into a recorder, until the stream ends or the
// reader is destroyed (which cancels the call).
template <class Msg>
class StreamRecorder {
 public:
  /// `open(ctx)` starts the call and answers its ClientReader.
  template <class Open>
  explicit StreamRecorder(Open open) {
    reader_ = open(&ctx_);
    thread_ = std::thread([this] {
      reader_->WaitForInitialMetadata();  // the service's headers: the stream is in place
      started.Push(true);
      Msg m;
      while (reader_->Read(&m)) messages.Push(m);
      status_ = reader_->Finish();
      done.Push(true);
    });
  }
  ~StreamRecorder() {
    ctx_.TryCancel();
    thread_.join();
  }
  void Cancel() { ctx_.TryCancel(); }
  /// How the stream ended; read after `done` recorded it.
  const grpc::Status& status() const { return status_; }

  Recorder<Msg> messages;
  Recorder<bool> started;  ///< once, when the headers came (or the call ended without them)
  Recorder<bool> done;

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<Msg>> reader_;
  grpc::Status status_;
  std::thread thread_;
};

// Streams WatchSessionEvents into a recorder until destroyed.
class Watcher : public StreamRecorder<v1::SessionEvent> {
 public:
  // Replays from `after` (default: everything; each test has a database of its own), so no
  // event is missed between starting the stream and the first call.
  Watcher(v1::SessionService::Stub& stub, std::optional<int64_t> after = 0)
      : StreamRecorder([&](grpc::ClientContext* ctx) {
          v1::WatchSessionEventsRequest req;
          if (after) req.set_after_sequence(*after);
          return stub.WatchSessionEvents(ctx, req);
        }) {}
  // Waits for an event of `session` reaching `state` (optionally with `reason`).
  ::testing::AssertionResult WaitFor(const std::string& session, v1::SessionState state,
                                     v1::StateReason reason = v1::STATE_REASON_UNSPECIFIED,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
    return events.WaitFor(
        [&](const std::vector<v1::SessionEvent>& v) {
          for (const auto& e : v) {
            if (e.session_id() == session && e.to_state() == state &&
                (reason == v1::STATE_REASON_UNSPECIFIED || e.reason() == reason)) {
              return true;
            }
          }
          return false;
        },
        timeout);
  }
  std::vector<v1::SessionEvent> Of(const std::string& session) {
    return Of(events.Snapshot(), session);
  }
  static std::vector<v1::SessionEvent> Of(const std::vector<v1::SessionEvent>& all,
                                          const std::string& session) {
    std::vector<v1::SessionEvent> out;
    for (const auto& e : all) {
      if (e.session_id() == session) out.push_back(e);
    }
    return out;
  }
  // Waits until the latest event of `session` reached `state`.
  ::testing::AssertionResult WaitForLatest(const std::string& session, v1::SessionState state) {
    return events.WaitFor([&](const std::vector<v1::SessionEvent>& all) {
      auto mine = Of(all, session);
      return !mine.empty() && mine.back().to_state() == state;
    });
  }
  Recorder<v1::SessionEvent>& events = messages;
};

struct Stack {
  wasentinel::testing::TestDatabase db;
  Sim sim;
  std::unique_ptr<App> app;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::SessionService::Stub> stub;

  explicit Stack(std::function<void(Options&)> tweak = nullptr,
                 std::function<void(sim::SimOptions&)> sim_tweak = nullptr)
      : sim(std::move(sim_tweak)) {
    Start(tweak);
  }
  void Start(std::function<void(Options&)> tweak = nullptr) {
    Options o = StackOptions(db.url(), sim);
    if (tweak) tweak(o);
    app = std::move(App::Create(o).value());
    EXPECT_TRUE(app->Start().ok());
    channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(app->grpc_port()),
                                  grpc::InsecureChannelCredentials());
    stub = v1::SessionService::NewStub(channel);
  }
  void Stop() {
    app->Shutdown(absl::Seconds(5));
    stub.reset();
    channel.reset();
    app.reset();
  }

  absl::StatusOr<v1::Session> Create(const std::string& tenant, const std::string& creds,
                                     bool auto_connect = true) {
    grpc::ClientContext ctx;
    v1::CreateSessionRequest req;
    req.set_tenant_id(tenant);
    req.set_account_name("Shop " + tenant);
    req.set_owner_email("ops@example.com");
    req.set_creds_json(creds);
    req.set_auto_connect(auto_connect);
    v1::CreateSessionResponse resp;
    grpc::Status st = stub->CreateSession(&ctx, req, &resp);
    if (!st.ok())
      return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
    return resp.session();
  }
  grpc::Status Get(const std::string& id, v1::Session* out) {
    grpc::ClientContext ctx;
    v1::GetSessionRequest req;
    req.set_id(id);
    v1::GetSessionResponse resp;
    grpc::Status st = stub->GetSession(&ctx, req, &resp);
    if (out) *out = resp.session();
    return st;
  }
};

// A device's creds.json with a real Signal identity and signed pre-key (what pairing makes),
// registered at wa-sim; `identity` and `signed_key` say what they are.
inline nlohmann::json SignalCreds(Stack& s, uint64_t phone, signal::Context& context,
                                  signal::Identity* identity = nullptr,
                                  signal::SignedPreKey* signed_key = nullptr) {
  signal::Identity id = context.GenerateIdentity().value();
  signal::SignedPreKey spk = context.GenerateSignedPreKey(id, 7).value();
  auto buffer = [](const Bytes& b) { return wasentinel::testing::BufferJson(b); };
  auto creds = nlohmann::json::parse(
      wasentinel::testing::BaileysCredsJson(wa::KeyPair::Generate(), phone, 5));
  creds["signedIdentityKey"] = {{"private", buffer(id.key.priv)}, {"public", buffer(id.key.pub)}};
  creds["registrationId"] = id.registration_id;
  creds["signedPreKey"] = {
      {"keyPair", {{"private", buffer(spk.key.priv)}, {"public", buffer(spk.key.pub)}}},
      {"signature", buffer(spk.signature)},
      {"keyId", spk.id}};
  EXPECT_THAT(s.sim.control().Post("/devices", {{"creds", creds}}), ::wasentinel::testing::IsOk());
  if (identity) *identity = id;
  if (signed_key) *signed_key = spk;
  return creds;
}

}  // namespace wasentinel::session
