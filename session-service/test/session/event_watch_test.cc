// WatchSessionEvents streams as callback reactors (src/api/event_watch.h), over gRPC on loopback
// with a real PostgreSQL store: a reading watcher gets every event once and in order; one that
// does not read is cut off with RESOURCE_EXHAUSTED naming where to resume, and resuming there
// loses nothing; paused watchers hold no thread each.
#include "event_watch.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "event_bus.h"
#include "pg_store.h"
#include "wasentinel/session/v1/session.grpc.pb.h"
#include "wasentinel/testing/recorder.h"
#include "wasentinel/testing/status_matchers.h"
#include "wasentinel/testing/test_database.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::session {
namespace {

constexpr size_t kBuffer = 64;

// A server that answers WatchSessionEvents only, with EventWatch over a real store and bus.
class WatchOnly final : public v1::SessionService::WithCallbackMethod_WatchSessionEvents<
                            v1::SessionService::Service> {
 public:
  WatchOnly(SessionStore& store, EventBus& bus) : store_(store), bus_(bus) {}
  grpc::ServerWriteReactor<v1::SessionEvent>* WatchSessionEvents(
      grpc::CallbackServerContext*, const v1::WatchSessionEventsRequest* req) override {
    std::optional<int64_t> after;
    if (req->has_after_sequence()) after = req->after_sequence();
    return EventWatch::Start(store_, bus_, SessionFilter{}, after, kBuffer,
                             [this](bool fell_behind) { ended.Push(fell_behind); });
  }
  wasentinel::testing::Recorder<bool> ended;  // one per finished watch: did it fall behind?

 private:
  SessionStore& store_;
  EventBus& bus_;
};

struct Fixture : wasentinel::testing::MigratedDatabase<PgSessionStore> {
  EventBus bus;
  WatchOnly service{store, bus};
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::SessionService::Stub> stub;
  std::string session_id;

  Fixture() : MigratedDatabase("session-service") {
    int port = 0;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    server = b.BuildAndStart();
    grpc::ChannelArguments args;
    // A paused reader's window stays small: no BDP probing, a small initial window, and a
    // memory quota that keeps gRPC from offering megabytes of window to the server.
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);

    channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                        grpc::InsecureChannelCredentials(), args);
    stub = v1::SessionService::NewStub(channel);
    SessionRecord r;
    r.tenant_id = "acme";
    r.session_name = "primary";
    session_id = store.Create(r).value().first.id;
  }
  ~Fixture() {
    bus.Close();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  // Stores `n` transitions (events of ~2 KB on the wire) and publishes each as the
  // transition writer does; answers the last sequence.
  int64_t Emit(int n) {
    int64_t last = 0;
    for (int i = 0; i < n; ++i) {
      Transition t;
      t.session_id = session_id;
      t.tenant_id = "acme";
      t.from = i % 2 ? v1::SESSION_STATE_CONNECTED : v1::SESSION_STATE_DISCONNECTED;
      t.to = i % 2 ? v1::SESSION_STATE_DISCONNECTED : v1::SESSION_STATE_CONNECTED;
      t.reason = v1::STATE_REASON_SERVER_ERROR;
      t.error = std::string(2000, 'e');
      t.at = absl::Now();
      auto e = store.RecordTransition(t);
      EXPECT_THAT(e, IsOk()) << e.status();
      if (!e.ok()) return last;
      bus.Publish(*e);
      last = e->sequence;
    }
    return last;
  }
};

// The sequences a stream delivers until it ends, and how it ended.
struct Drained {
  std::vector<int64_t> sequences;
  grpc::Status status;
};

Drained Drain(grpc::ClientReader<v1::SessionEvent>& reader, grpc::ClientContext& ctx,
              int64_t until = -1) {
  Drained out;
  v1::SessionEvent e;
  while (reader.Read(&e)) {
    out.sequences.push_back(e.sequence());
    if (e.sequence() == until) {
      ctx.TryCancel();
      break;
    }
  }
  out.status = reader.Finish();
  return out;
}

int Threads() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

TEST(EventWatch, AReadingWatcherGetsEveryEventOnceInOrder) {
  Fixture f;
  const int64_t before = f.store.LatestSequence().value();
  grpc::ClientContext ctx;
  v1::WatchSessionEventsRequest req;
  req.set_after_sequence(before);
  auto reader = f.stub->WatchSessionEvents(&ctx, req);
  wasentinel::testing::Recorder<int64_t> got;
  std::thread reading([&] {
    v1::SessionEvent e;
    while (reader->Read(&e)) got.Push(e.sequence());
  });
  // Rounds of half the buffer, each read before the next: the stream keeps up.
  int64_t last = 0;
  for (int round = 0; round < 10; ++round) {
    last = f.Emit(kBuffer / 2);
    ASSERT_TRUE(
        got.WaitFor([&](const std::vector<int64_t>& v) { return !v.empty() && v.back() == last; }));
  }
  ctx.TryCancel();
  reading.join();
  (void)reader->Finish();
  const std::vector<int64_t> seen = got.Snapshot();
  ASSERT_EQ(seen.size(), 10 * kBuffer / 2);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], before + 1 + static_cast<int64_t>(i));
  EXPECT_TRUE(f.service.ended.WaitFor([](const std::vector<bool>& v) {
    return v.size() == 1 && !v.front();
  })) << "it ended because the watcher left, not because it fell behind";
}

TEST(EventWatch, AWatcherThatDoesNotReadIsCutOffAndResumesWithoutLoss) {
  Fixture f;
  const int64_t first = f.store.LatestSequence().value();
  grpc::ClientContext ctx;
  auto reader = f.stub->WatchSessionEvents(&ctx, v1::WatchSessionEventsRequest());
  reader->WaitForInitialMetadata();  // the watch is in place: it sees every event from here
  // Nothing read: the stream's flow-control window fills, the message in flight stays there,
  // and the watch's bounded queue overflows. The stream is finished at once (its queue freed);
  // the watcher learns it when it reads again.
  const int emitted = 500;  // ~1 MB
  const int64_t last = f.Emit(emitted);
  const Drained cut = Drain(*reader, ctx);
  ASSERT_TRUE(f.service.ended.WaitFor([](const std::vector<bool>& v) { return !v.empty(); }));
  EXPECT_TRUE(f.service.ended.Snapshot().front()) << "it fell behind";
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_FALSE(cut.sequences.empty());
  ASSERT_LT(cut.sequences.size(), static_cast<size_t>(emitted));
  const std::string resume = "resume with after_sequence = " + std::to_string(cut.sequences.back());
  EXPECT_NE(cut.status.error_message().find(resume), std::string::npos)
      << cut.status.error_message();

  // Resuming where it says: the rest, from the store, then live.
  grpc::ClientContext again;
  v1::WatchSessionEventsRequest req;
  req.set_after_sequence(cut.sequences.back());
  auto resumed = f.stub->WatchSessionEvents(&again, req);
  const Drained rest = Drain(*resumed, again, last);
  std::vector<int64_t> all = cut.sequences;
  all.insert(all.end(), rest.sequences.begin(), rest.sequences.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(emitted)) << "nothing lost, nothing twice";
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], first + 1 + static_cast<int64_t>(i));
}

TEST(EventWatch, PausedWatchersHoldNoThreadEach) {
  Fixture f;
  const int before = Threads();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::SessionEvent>>> readers;
  for (int i = 0; i < 200; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(
        f.stub->WatchSessionEvents(contexts.back().get(), v1::WatchSessionEventsRequest()));
  }
  for (auto& r : readers) r->WaitForInitialMetadata();
  f.Emit(20);
  const int during = Threads();
  EXPECT_LT(during - before, 50) << "200 open watches, " << during - before << " more threads";
  for (auto& c : contexts) c->TryCancel();
  for (auto& r : readers) (void)r->Finish();
  EXPECT_TRUE(f.service.ended.WaitFor([](const std::vector<bool>& v) { return v.size() == 200; }));
}

}  // namespace
}  // namespace wasentinel::session
