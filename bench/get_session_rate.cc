// Benchmark client: GetSession calls per second against a running session-service.
//
//   get_session_rate --addr=HOST:PORT [--seconds=10] [--in_flight=64] [--channels=4]
//
// Reads up to 500 session ids with ListSessions, then keeps `in_flight` GetSession calls
// outstanding (gRPC callback stubs over `channels` separate connections, each finished call
// starting the next) for `seconds`. A closed loop like ghz or h2load: the client costs little
// CPU, so on a shared machine most of the cores go to the server under test.
// Prints one JSON line: calls, errors, calls_per_second, latency p50/p99 in microseconds.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "wasentinel/common/process.h"
#include "wasentinel/session/v1/session.grpc.pb.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:7001", "session-service gRPC address");
ABSL_FLAG(int, seconds, 10, "how long to call");
ABSL_FLAG(int, in_flight, 64, "calls kept outstanding");
ABSL_FLAG(int, channels, 4, "gRPC connections the calls share");

namespace v1 = wasentinel::session::v1;
using Clock = std::chrono::steady_clock;

namespace {

// One call slot: when its call finishes it records the latency and starts the next call,
// until the deadline passes.
struct Lane {
  v1::SessionService::Stub* stub = nullptr;
  const std::vector<std::string>* ids = nullptr;
  size_t next = 0;
  size_t stride = 1;
  Clock::time_point until;
  std::vector<int32_t> latencies_us;
  int64_t errors = 0;
  std::unique_ptr<grpc::ClientContext> ctx;
  v1::GetSessionRequest req;
  v1::GetSessionResponse resp;
  Clock::time_point started;
  std::function<void()> on_done;

  void Start() {
    ctx = std::make_unique<grpc::ClientContext>();
    req.set_id((*ids)[next % ids->size()]);
    next += stride;
    resp.Clear();
    started = Clock::now();
    stub->async()->GetSession(ctx.get(), &req, &resp, [this](grpc::Status st) {
      const auto now = Clock::now();
      if (!st.ok()) ++errors;
      latencies_us.push_back(static_cast<int32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - started).count()));
      if (now < until) {
        Start();
      } else {
        on_done();
      }
    });
  }
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  wasentinel::DisableMutexDeadlockDetection();
  const int in_flight = std::max(1, absl::GetFlag(FLAGS_in_flight));
  const int nchannels = std::max(1, absl::GetFlag(FLAGS_channels));
  std::vector<std::unique_ptr<v1::SessionService::Stub>> stubs;
  for (int i = 0; i < nchannels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("wasentinel.bench.channel", i);  // a distinct connection per channel
    stubs.push_back(v1::SessionService::NewStub(grpc::CreateCustomChannel(
        absl::GetFlag(FLAGS_addr), grpc::InsecureChannelCredentials(), args)));
  }
  std::vector<std::string> ids;
  {
    grpc::ClientContext ctx;
    v1::ListSessionsRequest req;
    req.set_page_size(500);
    v1::ListSessionsResponse resp;
    if (auto st = stubs[0]->ListSessions(&ctx, req, &resp); !st.ok()) {
      std::cerr << "ListSessions: " << st.error_message() << "\n";
      return 1;
    }
    for (const auto& s : resp.sessions()) ids.push_back(s.id());
  }
  if (ids.empty()) {
    std::cerr << "no sessions to get\n";
    return 1;
  }
  absl::Mutex mu;
  int running = in_flight;
  std::vector<Lane> lanes(in_flight);
  const auto start = Clock::now();
  const auto until = start + std::chrono::seconds(absl::GetFlag(FLAGS_seconds));
  for (int i = 0; i < in_flight; ++i) {
    Lane& lane = lanes[i];
    lane.stub = stubs[i % nchannels].get();
    lane.ids = &ids;
    lane.next = i;
    lane.stride = in_flight;
    lane.until = until;
    lane.latencies_us.reserve(1 << 18);
    lane.on_done = [&] {
      absl::MutexLock lock(&mu);
      --running;
    };
  }
  for (auto& lane : lanes) lane.Start();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int* n) { return *n == 0; }, &running));
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<int32_t> all;
  int64_t errors = 0;
  for (auto& lane : lanes) {
    all.insert(all.end(), lane.latencies_us.begin(), lane.latencies_us.end());
    errors += lane.errors;
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0 : all[static_cast<size_t>(p * (all.size() - 1))];
  };
  std::cout << nlohmann::json{{"benchmark", "get_session_rate"},
                              {"calls", all.size()},
                              {"errors", errors},
                              {"seconds", elapsed},
                              {"calls_per_second", static_cast<int64_t>(all.size() / elapsed)},
                              {"in_flight", in_flight},
                              {"channels", nchannels},
                              {"p50_us", pct(0.5)},
                              {"p99_us", pct(0.99)}}
                   .dump()
            << std::endl;
  return 0;
}
