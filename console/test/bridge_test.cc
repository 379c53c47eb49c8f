// The console's HTTP server and gRPC-Web bridge, end to end on loopback: a real HTTP client
// (libcurl) calls a real gRPC server through them. The upstream is gRPC's own health service
// (grpc.health.v1), which has a unary method (Check) and a server-streaming one (Watch), so the
// generic forwarding is shown on both shapes without any of our services.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpc/health/v1/health.pb.h"
#include "grpc_bridge.h"
#include "grpc_web.h"
#include "http_server.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/session/v1/session.grpc.pb.h"
#include "wasentinel/testing/recorder.h"

namespace wasentinel::console {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

struct HttpAnswer {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;
};

size_t CollectBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t CollectHeader(char* data, size_t size, size_t n, void* out) {
  const std::string_view line(data, size * n);
  if (const size_t colon = line.find(':'); colon != std::string_view::npos) {
    (*static_cast<std::map<std::string, std::string>*>(
        out))[absl::AsciiStrToLower(Sv(line.substr(0, colon)))] =
        std::string(absl::StripAsciiWhitespace(Sv(line.substr(colon + 1))));
  }
  return size * n;
}

// One HTTP request with libcurl; `headers` as "Name: value".
HttpAnswer Request(int port, const std::string& method, const std::string& path,
                   const std::string& body, const std::vector<std::string>& headers) {
  HttpAnswer answer;
  CURL* curl = curl_easy_init();
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  const std::string url = absl::StrCat("http://127.0.0.1:", port, path);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  if (method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, CollectBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, CollectHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &answer.headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
  EXPECT_EQ(curl_easy_perform(curl), CURLE_OK) << method << " " << path;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return answer;
}

std::string Frame(uint8_t flags, std::string_view payload) {
  std::string out(5, '\0');
  out[0] = static_cast<char>(flags);
  const auto n = static_cast<uint32_t>(payload.size());
  out[1] = static_cast<char>(n >> 24);
  out[2] = static_cast<char>(n >> 16);
  out[3] = static_cast<char>(n >> 8);
  out[4] = static_cast<char>(n);
  return out + std::string(payload);
}

struct Frames {
  std::vector<std::string> messages;
  std::string trailers;  // the trailers frame's text; empty when there was none
};

Frames SplitFrames(std::string_view body) {
  Frames out;
  while (body.size() >= 5) {
    const auto* b = reinterpret_cast<const uint8_t*>(body.data());
    const size_t n = (size_t{b[1]} << 24) | (size_t{b[2]} << 16) | (size_t{b[3]} << 8) | b[4];
    if (body.size() < 5 + n) break;
    const std::string payload(body.substr(5, n));
    if (b[0] & 0x80) {
      out.trailers = payload;
    } else {
      out.messages.push_back(payload);
    }
    body.remove_prefix(5 + n);
  }
  return out;
}

std::string CheckBody(const std::string& service) {
  HealthCheckRequest req;
  req.set_service(service);
  return Frame(0, req.SerializeAsString());
}

const std::vector<std::string> kBinary = {"Content-Type: application/grpc-web+proto",
                                          "X-Grpc-Web: 1"};

double GaugeValue(prometheus::Registry& registry, const std::string& name) {
  for (const auto& family : registry.Collect()) {
    if (family.name == name && !family.metric.empty()) return family.metric[0].gauge.value;
  }
  return -1;
}

// A server-streaming call a client holds open on a thread of its own, as a browser holds
// WatchSessionEvents, until Leave() closes its connection. Every chunk of the answer is
// recorded for the test to wait on.
class HeldStream {
 public:
  HeldStream(int port, const std::string& body)
      : body_(body), thread_([this, port] { Run(port); }) {}
  ~HeldStream() { Leave(); }

  void Leave() {
    leave_ = true;
    if (thread_.joinable()) thread_.join();
  }
  /// What came so far, for messages.
  std::string Received() { return absl::CEscape(absl::StrJoin(chunks_.Snapshot(), "")); }
  /// Waits for at least `n` response messages; answers the frames seen by then.
  Frames AwaitMessages(size_t n) {
    Frames frames;
    EXPECT_TRUE(chunks_.WaitFor([&](const std::vector<std::string>& chunks) {
      frames = SplitFrames(absl::StrJoin(chunks, ""));
      return frames.messages.size() >= n;
    })) << "waiting for "
        << n << " messages";
    return frames;
  }

 private:
  void Run(int port) {
    CURL* curl = curl_easy_init();
    curl_slist* list = nullptr;
    for (const auto& h : kBinary) list = curl_slist_append(list, h.c_str());
    const std::string url = absl::StrCat("http://127.0.0.1:", port, "/grpc.health.v1.Health/Watch");
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body_.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body_.size()));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* self) -> size_t {
          static_cast<HeldStream*>(self)->chunks_.Push(std::string(data, size * n));
          return size * n;
        });
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, this);
    // libcurl asks at least once a second whether to go on: Leave() aborts the transfer there.
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(
        curl, CURLOPT_XFERINFOFUNCTION,
        +[](void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
          return static_cast<HeldStream*>(self)->leave_.load() ? 1 : 0;
        });
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, this);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_perform(curl);
    curl_slist_free_all(list);
    curl_easy_cleanup(curl);
  }

  const std::string body_;
  std::atomic<bool> leave_{false};
  wasentinel::testing::Recorder<std::string> chunks_;
  std::thread thread_;  // last: it starts once everything it uses is built
};

class BridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &grpc_port_);
    // A synchronous service for the server to poll with (every method UNIMPLEMENTED); the calls
    // under test go to the built-in health service.
    builder.RegisterService(&unimplemented_);
    grpc_server_ = builder.BuildAndStart();
    ASSERT_NE(grpc_server_, nullptr);
    grpc_server_->GetHealthCheckService()->SetServingStatus("shop", true);

    web_root_ =
        std::filesystem::temp_directory_path() / absl::StrCat("console-bridge-test-", getpid());
    std::filesystem::create_directories(web_root_ / "assets");
    std::ofstream(web_root_ / "index.html") << "<!doctype html><title>console</title>";
    std::ofstream(web_root_ / "assets" / "app-1a2b3c.js") << "console.log(1)";

    bridge_ = std::make_unique<GrpcBridge>(
        std::vector<Upstream>{{"health", "grpc.health.v1",
                               grpc::CreateChannel(absl::StrCat("127.0.0.1:", grpc_port_),
                                                   grpc::InsecureChannelCredentials())}});
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.web_root = web_root_.string();
    options.max_message_bytes = 4096;
    options.max_calls_per_client = 2;
    options.allowed_origins = {"https://shop.example"};
    auto server = ConsoleServer::Start(options, *bridge_, registry_, MakeLogger("test", "warn"));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    port_ = server_->port();
  }
  void TearDown() override {
    if (server_) server_->Stop(absl::Seconds(5));
    if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now());
    std::filesystem::remove_all(web_root_);
  }

  int grpc_port_ = 0;
  wasentinel::session::v1::SessionService::Service unimplemented_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::filesystem::path web_root_;
  prometheus::Registry registry_;
  std::unique_ptr<GrpcBridge> bridge_;
  std::unique_ptr<ConsoleServer> server_;
  int port_ = 0;
};

TEST_F(BridgeTest, UnaryCallAnswersTheMessageThenTrailers) {
  const auto answer =
      Request(port_, "POST", "/grpc.health.v1.Health/Check", CheckBody("shop"), kBinary);
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.headers.at("content-type"), "application/grpc-web+proto");
  const Frames frames = SplitFrames(answer.body);
  ASSERT_EQ(frames.messages.size(), 1u);
  HealthCheckResponse response;
  ASSERT_TRUE(response.ParseFromString(frames.messages[0]));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  EXPECT_EQ(frames.trailers.substr(0, 16), "grpc-status: 0\r\n");
}

TEST_F(BridgeTest, TextFormatIsBase64BothWays) {
  const auto answer = Request(
      port_, "POST", "/grpc.health.v1.Health/Check", Base64Encode(AsBytes(CheckBody("shop"))),
      {"Content-Type: application/grpc-web-text", "Accept: application/grpc-web-text"});
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.headers.at("content-type"), "application/grpc-web-text+proto");
  // One padded base64 chunk per frame: the message, then the trailers.
  HealthCheckResponse serving;
  serving.set_status(HealthCheckResponse::SERVING);
  const std::string message = Base64Encode(AsBytes(Frame(0, serving.SerializeAsString())));
  ASSERT_EQ(answer.body.substr(0, message.size()), message);
  auto trailers = Base64Decode(std::string_view(answer.body).substr(message.size()));
  ASSERT_TRUE(trailers.ok()) << answer.body;
  EXPECT_EQ(SplitFrames(std::string(trailers->begin(), trailers->end())).trailers.substr(0, 16),
            "grpc-status: 0\r\n");
}

TEST_F(BridgeTest, AnErrorBeforeAnyAnswerIsTrailersOnly) {
  // The service failed the call without sending initial metadata: its status travels in the
  // HTTP headers and the body is empty (gRPC-Web's trailers-only answer).
  const auto answer =
      Request(port_, "POST", "/grpc.health.v1.Health/Check", CheckBody("nobody"), kBinary);
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.body, "");
  EXPECT_EQ(answer.headers.at("grpc-status"), "5");
  EXPECT_EQ(answer.headers.at("grpc-message"), "service name unknown");
}

TEST_F(BridgeTest, ServerStreamRelaysEachMessageAndEndsWhenTheBrowserLeaves) {
  HeldStream stream(port_, CheckBody("shop"));
  stream.AwaitMessages(1);
  grpc_server_->GetHealthCheckService()->SetServingStatus("shop", false);
  const Frames frames = stream.AwaitMessages(2);
  ASSERT_GE(frames.messages.size(), 2u);
  HealthCheckResponse a, b;
  ASSERT_TRUE(a.ParseFromString(frames.messages[0]));
  ASSERT_TRUE(b.ParseFromString(frames.messages[1]));
  EXPECT_EQ(a.status(), HealthCheckResponse::SERVING);
  EXPECT_EQ(b.status(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(GaugeValue(registry_, "console_grpc_web_calls_open"), 1);
  stream.Leave();
  // The browser's FIN cancels the upstream call: nothing stays open.
  EXPECT_TRUE(wasentinel::testing::Eventually(
      [&] { return GaugeValue(registry_, "console_grpc_web_calls_open") == 0; }));
}

TEST_F(BridgeTest, RefusesWhatItCannotForwardWithAGrpcStatus) {
  auto status_of = [](const HttpAnswer& a) {
    return a.headers.count("grpc-status") ? a.headers.at("grpc-status") : "none";
  };
  EXPECT_EQ(status_of(Request(port_, "POST", "/grpc.health.v1.Health/Check",
                              std::string("\x00\x00", 2), kBinary)),
            "3");
  EXPECT_EQ(status_of(Request(port_, "POST", "/other.v1.Thing/Do", CheckBody("x"), kBinary)), "12");
  EXPECT_EQ(status_of(Request(port_, "POST", "/grpc.health.v1.Health", CheckBody("x"), kBinary)),
            "12");
  const std::string oversized = Frame(0, std::string(5000, 'x'));
  const auto big = Request(port_, "POST", "/grpc.health.v1.Health/Check", oversized, kBinary);
  EXPECT_EQ(status_of(big), "8");
  EXPECT_NE(big.headers.at("grpc-message").find("larger than 4096"), std::string::npos);
  // A frame that claims more than the limit inside a body that is not: refused by its length.
  EXPECT_EQ(status_of(Request(port_, "POST", "/grpc.health.v1.Health/Check",
                              std::string("\x00\x00\x01\x00\x00", 5), kBinary)),
            "8");
  auto with_origin = kBinary;
  with_origin.push_back("Origin: https://evil.example");
  EXPECT_EQ(status_of(Request(port_, "POST", "/grpc.health.v1.Health/Check", CheckBody("shop"),
                              with_origin)),
            "7");
  with_origin.back() = "Origin: https://shop.example";
  const auto allowed =
      Request(port_, "POST", "/grpc.health.v1.Health/Check", CheckBody("shop"), with_origin);
  EXPECT_EQ(allowed.headers.at("access-control-allow-origin"), "https://shop.example");
  EXPECT_EQ(SplitFrames(allowed.body).messages.size(), 1u);
  with_origin.back() = absl::StrCat("Origin: http://127.0.0.1:", port_);
  EXPECT_EQ(SplitFrames(Request(port_, "POST", "/grpc.health.v1.Health/Check", CheckBody("shop"),
                                with_origin)
                            .body)
                .messages.size(),
            1u);
}

TEST_F(BridgeTest, ServesTheAppWithAStrictPolicy) {
  const auto index = Request(port_, "GET", "/", "", {});
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.body, "<!doctype html><title>console</title>");
  EXPECT_NE(index.headers.at("content-security-policy").find("script-src 'self'"),
            std::string::npos);
  EXPECT_EQ(index.headers.at("x-content-type-options"), "nosniff");
  EXPECT_EQ(index.headers.at("cache-control"), "no-cache");
  // The app's own routes (links from alert e-mails) load the app.
  EXPECT_EQ(Request(port_, "GET", "/sessions/shop-berlin", "", {}).body, index.body);
  const auto asset = Request(port_, "GET", "/assets/app-1a2b3c.js", "", {});
  EXPECT_EQ(asset.headers.at("content-type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(asset.headers.at("cache-control"), "public, max-age=31536000, immutable");
  EXPECT_EQ(Request(port_, "GET", "/assets/missing.js", "", {}).status, 404);
  EXPECT_EQ(Request(port_, "GET", "/../etc/passwd", "", {}).status, 400);
  EXPECT_EQ(Request(port_, "GET", "/healthz", "", {}).status, 200);
  EXPECT_EQ(Request(port_, "GET", "/readyz", "", {}).status, 200);
  EXPECT_EQ(Request(port_, "DELETE", "/", "", {}).status, 405);
}

TEST_F(BridgeTest, LimitsCallsPerClient) {
  // Two streams held open (the limit in this test): the third call is refused until one ends.
  auto status_of = [](const HttpAnswer& a) {
    return a.headers.count("grpc-status") ? a.headers.at("grpc-status") : "";
  };
  auto first = std::make_unique<HeldStream>(port_, CheckBody("shop"));
  HeldStream second(port_, CheckBody("shop"));
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    return GaugeValue(registry_, "console_grpc_web_calls_open") == 2;
  })) << "open: "
      << GaugeValue(registry_, "console_grpc_web_calls_open") << "; first stream got "
      << first->Received() << ", second " << second.Received();
  EXPECT_EQ(
      status_of(Request(port_, "POST", "/grpc.health.v1.Health/Check", CheckBody("shop"), kBinary)),
      "8");
  first.reset();
  ASSERT_TRUE(wasentinel::testing::Eventually(
      [&] { return GaugeValue(registry_, "console_grpc_web_calls_open") == 1; }));
  const auto answer =
      Request(port_, "POST", "/grpc.health.v1.Health/Check", CheckBody("shop"), kBinary);
  EXPECT_EQ(status_of(answer), "");
  EXPECT_EQ(SplitFrames(answer.body).messages.size(), 1u);
}

}  // namespace
}  // namespace wasentinel::console
