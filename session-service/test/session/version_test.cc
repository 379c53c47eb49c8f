// The WhatsApp Web version session-service announces, against wa-sim refusing outdated
// clients (405) and publishing the current version on its WhatsApp Web page: `auto` reads it,
// a 405 reads it again once, a second 405 is CLIENT_OUTDATED; the last good one is kept in
// PostgreSQL; a page that is unreachable, malformed or huge changes nothing.
#include <boost/asio/ip/tcp.hpp>

#include "absl/strings/str_cat.h"
#include "session/stack.h"
#include "version_keeper.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::session {
namespace {

constexpr uint32_t kLive = wa::kDefaultWaVersion.tertiary + 1000;

// A Stack whose wa-sim refuses the compiled default and publishes `kLive`, and whose
// session-service reads wa-sim's page.
struct VersionStack : Stack {
  VersionStack()
      : Stack([this](Options& o) { Auto(o); }, [](sim::SimOptions& s) { s.min_version = kLive; }) {}
  void Auto(Options& o) {
    o.wa_version.version = "auto";
    o.wa_version.url = absl::StrCat("http://127.0.0.1:", sim.control_port(), "/");
    o.wa_version.refetch_after = absl::ZeroDuration();
  }
  v1::GetHealthResponse Health() {
    grpc::ClientContext ctx;
    v1::GetHealthResponse resp;
    EXPECT_TRUE(stub->GetHealth(&ctx, v1::GetHealthRequest(), &resp).ok());
    return resp;
  }
  nlohmann::json Stats() { return sim.control().Get("/stats").value(); }
};

std::string Version(uint32_t n) { return absl::StrCat("2.3000.", n); }

TEST(Version, AutoReadsThePageAndAFailure405ReadsItAgainOnce) {
  VersionStack s;
  Watcher w(*s.stub);
  auto session = s.Create("v", s.sim.Device(15550081001)).value();
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
  auto health = s.Health();
  EXPECT_EQ(health.wa_version(), Version(kLive));
  EXPECT_EQ(health.wa_version_source(), "live");
  EXPECT_EQ(s.Stats()["outdated_refused"], 0);

  // WhatsApp moves on: the next login meets 405, the page is read again, the login repeated.
  ASSERT_THAT(s.sim.control().Post("/version", {{"min", kLive + 1}, {"web", kLive + 1}}), IsOk());
  ASSERT_THAT(s.sim.control().Post("/connections/15550081001:5/drop"), IsOk());
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_RETRY));
  ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));
  EXPECT_EQ(s.Stats()["outdated_refused"], 1);
  EXPECT_EQ(s.Health().wa_version(), Version(kLive + 1));
  for (const auto& e : w.Of(session.id())) {
    EXPECT_NE(e.reason(), v1::STATE_REASON_CLIENT_OUTDATED) << "one 405 is not the end";
  }

  // The page names the version refused again: CLIENT_OUTDATED, said with the version, not
  // retried.
  ASSERT_THAT(s.sim.control().Post("/version", {{"min", kLive + 2}}), IsOk());
  ASSERT_THAT(s.sim.control().Post("/connections/15550081001:5/drop"), IsOk());
  ASSERT_TRUE(
      w.WaitFor(session.id(), v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_CLIENT_OUTDATED));
  v1::Session got;
  ASSERT_THAT(s.Get(session.id(), &got), IsOk());
  EXPECT_EQ(got.failure_code(), 405);
  EXPECT_NE(got.last_error().find("announced " + Version(kLive + 1)), std::string::npos)
      << got.last_error();
  EXPECT_EQ(s.Stats()["outdated_refused"], 2);

  // A person fixes it (WhatsApp Web caught up) and connects: one fresh try with a fresh read.
  ASSERT_THAT(s.sim.control().Post("/version", {{"web", kLive + 2}}), IsOk());
  grpc::ClientContext ctx;
  v1::ConnectRequest req;
  req.set_id(session.id());
  v1::ConnectResponse resp;
  ASSERT_TRUE(s.stub->Connect(&ctx, req, &resp).ok());
  ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_CONNECTED));
  EXPECT_EQ(s.Health().wa_version(), Version(kLive + 2));
}

TEST(Version, TheLastGoodVersionOutlivesARestartWhenThePageIsGone) {
  VersionStack s;
  EXPECT_EQ(s.Health().wa_version_source(), "live");
  s.Stop();
  // The page is unreachable now: a port nobody listens on.
  uint16_t closed = 0;
  {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    closed = a.local_endpoint().port();
  }
  s.Start([&](Options& o) {
    s.Auto(o);
    o.wa_version.url = absl::StrCat("http://127.0.0.1:", closed, "/");
  });
  Watcher w(*s.stub);
  auto health = s.Health();
  EXPECT_EQ(health.wa_version(), Version(kLive));
  EXPECT_EQ(health.wa_version_source(), "stored");
  auto session = s.Create("v", s.sim.Device(15550081002)).value();
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
}

TEST(Version, AFixedVersionIsAnnouncedAsIsAndA405IsFinal) {
  Sim sim([](sim::SimOptions& s) { s.min_version = kLive; });
  VersionOptions o;
  o.version = Version(kLive - 1);
  auto keeper = VersionKeeper::Create(o, nullptr, nullptr, MakeLogger("test", "warn")).value();
  keeper->Start();
  EXPECT_EQ(keeper->Current().ToString(), Version(kLive - 1));
  EXPECT_EQ(keeper->source(), VersionKeeper::Source::kFixed);
  std::optional<std::optional<wa::WaVersion>> answer;
  keeper->Outdated(keeper->Current(), [&](std::optional<wa::WaVersion> v) { answer = v; });
  ASSERT_TRUE(answer.has_value()) << "answered at once";
  EXPECT_FALSE(answer->has_value());
  for (const char* bad : {"", "latest", "2.3000", "2.3000.0", "1.2.3"}) {
    o.version = bad;
    auto refused = VersionKeeper::Create(o, nullptr, nullptr, MakeLogger("test", "warn"));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Version, AnUnreadablePageChangesNothing) {
  Sim sim;
  const std::string page = absl::StrCat("http://127.0.0.1:", sim.control_port(), "/");
  VersionOptions o;
  o.url = page;
  o.max_page_bytes = 1 << 20;
  o.fetch_timeout = absl::Seconds(5);
  auto keeper = VersionKeeper::Create(o, nullptr, nullptr, MakeLogger("test", "warn")).value();
  ASSERT_TRUE(keeper->ReadLive().ok());
  const wa::WaVersion read = keeper->Current();
  struct Case {
    const char* name;
    nlohmann::json page;
    absl::StatusCode code;
  };
  for (const Case& c : {
           Case{"malformed",
                {{"page", "<html>down for maintenance</html>"}},
                absl::StatusCode::kInvalidArgument},
           Case{"garbage revision",
                {{"page", R"({"client_revision":"abc"})"}},
                absl::StatusCode::kInvalidArgument},
           Case{"revision too big",
                {{"page", R"({"client_revision":99999999999})"}},
                absl::StatusCode::kInvalidArgument},
           Case{"huge", {{"page_bytes", 2 << 20}}, absl::StatusCode::kResourceExhausted},
       }) {
    SCOPED_TRACE(c.name);
    ASSERT_THAT(sim.control().Post("/version", c.page), IsOk());
    auto st = keeper->ReadLive();
    EXPECT_EQ(st.code(), c.code) << st;
    EXPECT_EQ(keeper->Current(), read);
    EXPECT_EQ(keeper->source(), VersionKeeper::Source::kLive);
    ASSERT_THAT(sim.control().Post("/version", {{"page", nullptr}}), IsOk());
  }
  // Unreachable: nobody listens on the port.
  uint16_t closed = 0;
  {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    closed = a.local_endpoint().port();
  }
  o.url = absl::StrCat("http://127.0.0.1:", closed, "/");
  auto lost = VersionKeeper::Create(o, nullptr, nullptr, MakeLogger("test", "warn")).value();
  lost->Start();  // a warning, the compiled default
  EXPECT_EQ(lost->Current(), wa::kDefaultWaVersion);
  EXPECT_EQ(lost->source(), VersionKeeper::Source::kDefault);
  EXPECT_EQ(lost->ReadLive().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace wasentinel::session
