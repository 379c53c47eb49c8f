// Benchmark client: GetSession calls per second against a running session-service.
//
//   get_session_rate --addr=HOST:PORT [--seconds=10] [--threads=8] [--channels=4]
//
// Reads up to 500 session ids with ListSessions, then `threads` threads call GetSession on
// them round-robin (blocking stubs over `channels` separate connections) for `seconds`.
// Prints one JSON line: calls, errors, calls_per_second, latency p50/p99 in microseconds.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "nlohmann/json.hpp"
#include "wasentinel/session/v1/session.grpc.pb.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:7001", "session-service gRPC address");
ABSL_FLAG(int, seconds, 10, "how long to call");
ABSL_FLAG(int, threads, 8, "calling threads");
ABSL_FLAG(int, channels, 4, "gRPC connections the threads share");

namespace v1 = wasentinel::session::v1;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int nthreads = std::max(1, absl::GetFlag(FLAGS_threads));
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
  const auto until = Clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_seconds));
  std::atomic<int64_t> errors{0};
  std::vector<std::vector<int32_t>> latencies(nthreads);  // µs
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int t = 0; t < nthreads; ++t) {
    threads.emplace_back([&, t] {
      auto& stub = *stubs[t % nchannels];
      auto& mine = latencies[t];
      mine.reserve(1 << 20);
      for (size_t i = t; Clock::now() < until; i += nthreads) {
        grpc::ClientContext ctx;
        v1::GetSessionRequest req;
        req.set_id(ids[i % ids.size()]);
        v1::GetSessionResponse resp;
        const auto t0 = Clock::now();
        if (!stub.GetSession(&ctx, req, &resp).ok()) ++errors;
        mine.push_back(static_cast<int32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
      }
    });
  }
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<int32_t> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0 : all[static_cast<size_t>(p * (all.size() - 1))];
  };
  std::cout << nlohmann::json{{"benchmark", "get_session_rate"},
                              {"calls", all.size()},
                              {"errors", errors.load()},
                              {"seconds", elapsed},
                              {"calls_per_second", static_cast<int64_t>(all.size() / elapsed)},
                              {"threads", nthreads},
                              {"channels", nchannels},
                              {"p50_us", pct(0.5)},
                              {"p99_us", pct(0.99)}}
                   .dump()
            << std::endl;
  return 0;
}
