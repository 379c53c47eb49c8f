// Strict configuration (common/config.h): environment fallbacks parsed by each flag's own
// parser, command line over environment, and every range check a usage error (exit 2) that
// names the variable and never shows a secret.
#include "wasentinel/common/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <vector>

ABSL_FLAG(bool, test_require_tls, false, "a boolean [WAS_TEST_REQUIRE_TLS]");
ABSL_FLAG(int, test_dispatchers, 4, "an integer [WAS_TEST_DISPATCHERS]");
ABSL_FLAG(double, test_rate, 20, "a rate [WAS_TEST_RATE]");
ABSL_FLAG(absl::Duration, test_timeout, absl::Seconds(10), "a duration [WAS_TEST_TIMEOUT]");
ABSL_FLAG(std::string, test_interval, "20s,30s", "a range [WAS_TEST_INTERVAL]");
ABSL_FLAG(std::string, test_backoff, "5s,15s", "a list [WAS_TEST_BACKOFF]");
ABSL_FLAG(std::string, test_listen, "0.0.0.0:9101", "an address; empty disables [WAS_TEST_LISTEN]");
ABSL_FLAG(std::string, test_log_level, "info", "a level [WAS_TEST_LOG_LEVEL]");
ABSL_FLAG(std::string, test_api_key, "", "a secret [WAS_TEST_API_KEY]");
ABSL_FLAG(std::string, test_no_env, "default", "a flag without a variable");

namespace wasentinel::config {
namespace {

// Runs ParseFlags over `args` (after the program name) with `env` set, then restores nothing:
// each test sets what it reads.
void Parse(std::vector<std::string> args, std::vector<std::pair<const char*, const char*>> env) {
  for (const auto& [name, value] : env) setenv(name, value, 1);
  std::vector<std::string> storage = {"config_test"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  ParseFlags(static_cast<int>(argv.size()), argv.data(), "config_test");
  for (const auto& [name, value] : env) unsetenv(name);
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetFlag(&FLAGS_test_require_tls, false);
    absl::SetFlag(&FLAGS_test_dispatchers, 4);
    absl::SetFlag(&FLAGS_test_rate, 20);
    absl::SetFlag(&FLAGS_test_timeout, absl::Seconds(10));
    absl::SetFlag(&FLAGS_test_interval, "20s,30s");
    absl::SetFlag(&FLAGS_test_listen, "0.0.0.0:9101");
    absl::SetFlag(&FLAGS_test_log_level, "info");
  }
};

TEST_F(ConfigTest, BooleansFromTheEnvironmentMeanWhatTheySay) {
  for (const char* yes : {"1", "yes", "TRUE", "true", "y", "t"}) {
    absl::SetFlag(&FLAGS_test_require_tls, false);
    Parse({}, {{"WAS_TEST_REQUIRE_TLS", yes}});
    EXPECT_TRUE(absl::GetFlag(FLAGS_test_require_tls)) << yes;
  }
  for (const char* no : {"0", "no", "FALSE", "false"}) {
    absl::SetFlag(&FLAGS_test_require_tls, true);
    Parse({}, {{"WAS_TEST_REQUIRE_TLS", no}});
    EXPECT_FALSE(absl::GetFlag(FLAGS_test_require_tls)) << no;
  }
  EXPECT_EXIT(Parse({}, {{"WAS_TEST_REQUIRE_TLS", "maybe"}}), ::testing::ExitedWithCode(2),
              "WAS_TEST_REQUIRE_TLS=\"maybe\"");
}

TEST_F(ConfigTest, NumbersThatDoNotParseStopTheProcess) {
  EXPECT_EXIT(Parse({}, {{"WAS_TEST_DISPATCHERS", "four"}}), ::testing::ExitedWithCode(2),
              "WAS_TEST_DISPATCHERS=\"four\"");
  EXPECT_EXIT(Parse({}, {{"WAS_TEST_RATE", "fast"}}), ::testing::ExitedWithCode(2),
              "WAS_TEST_RATE");
  EXPECT_EXIT(Parse({}, {{"WAS_TEST_TIMEOUT", "ten"}}), ::testing::ExitedWithCode(2),
              "WAS_TEST_TIMEOUT");
  EXPECT_EXIT(Parse({}, {{"WAS_TEST_DISPATCHERS", ""}}), ::testing::ExitedWithCode(2),
              "WAS_TEST_DISPATCHERS");
}

TEST_F(ConfigTest, TheCommandLineWinsAndItsVariableIsNotRead) {
  Parse({"--test_dispatchers=7"}, {{"WAS_TEST_DISPATCHERS", "four"}});
  EXPECT_EQ(absl::GetFlag(FLAGS_test_dispatchers), 7);
  EXPECT_EQ(Source(Handle(FLAGS_test_dispatchers)), "--test_dispatchers");
  Parse({}, {{"WAS_TEST_DISPATCHERS", "9"}});
  EXPECT_EQ(absl::GetFlag(FLAGS_test_dispatchers), 9);
  EXPECT_EQ(Source(Handle(FLAGS_test_dispatchers)), "WAS_TEST_DISPATCHERS");
}

TEST_F(ConfigTest, RangesAreChecked) {
  Parse({}, {{"WAS_TEST_DISPATCHERS", "65"}});
  EXPECT_EXIT(IntIn(FLAGS_test_dispatchers, 0, 64), ::testing::ExitedWithCode(2),
              "WAS_TEST_DISPATCHERS=\"65\": wants an integer 0..64");
  for (const char* bad : {"-5", "nan", "inf", "-inf"}) {
    Parse({}, {{"WAS_TEST_RATE", bad}});
    EXPECT_EXIT(NonNegative(FLAGS_test_rate), ::testing::ExitedWithCode(2), "WAS_TEST_RATE") << bad;
  }
  Parse({}, {{"WAS_TEST_RATE", "0"}});
  EXPECT_EQ(NonNegative(FLAGS_test_rate), 0);

  Parse({}, {{"WAS_TEST_TIMEOUT", "0s"}});
  EXPECT_EXIT(DurationIn(FLAGS_test_timeout, absl::Milliseconds(100)), ::testing::ExitedWithCode(2),
              "WAS_TEST_TIMEOUT=\"0\"");
  Parse({}, {{"WAS_TEST_TIMEOUT", "-1s"}});
  EXPECT_EXIT(DurationIn(FLAGS_test_timeout, absl::ZeroDuration()), ::testing::ExitedWithCode(2),
              "WAS_TEST_TIMEOUT");
  Parse({}, {{"WAS_TEST_TIMEOUT", "inf"}});
  EXPECT_EXIT(DurationIn(FLAGS_test_timeout, absl::ZeroDuration()), ::testing::ExitedWithCode(2),
              "WAS_TEST_TIMEOUT");

  Parse({}, {{"WAS_TEST_INTERVAL", "0s"}});
  EXPECT_EXIT(DurationRange(FLAGS_test_interval, absl::Seconds(1), absl::Minutes(10)),
              ::testing::ExitedWithCode(2), "WAS_TEST_INTERVAL");
  Parse({}, {{"WAS_TEST_INTERVAL", "30s,20s"}});
  EXPECT_EXIT(DurationRange(FLAGS_test_interval, absl::Seconds(1), absl::Minutes(10)),
              ::testing::ExitedWithCode(2), "LOW not above HIGH");
  EXPECT_EQ(DurationRange(FLAGS_test_interval, absl::Seconds(1), absl::Minutes(10), false),
            std::make_pair(absl::Seconds(30), absl::Seconds(20)));
  Parse({}, {{"WAS_TEST_INTERVAL", "25s"}});
  EXPECT_EQ(DurationRange(FLAGS_test_interval, absl::Seconds(1), absl::Minutes(10)),
            std::make_pair(absl::Seconds(25), absl::Seconds(25)));

  Parse({}, {{"WAS_TEST_BACKOFF", "1s,-2s"}});
  EXPECT_EXIT(DurationList(FLAGS_test_backoff, absl::Seconds(1)), ::testing::ExitedWithCode(2),
              "WAS_TEST_BACKOFF");
}

TEST_F(ConfigTest, AddressesAndEmptyValues) {
  Parse({}, {{"WAS_TEST_LISTEN", ""}});
  EXPECT_EQ(Address(FLAGS_test_listen, /*empty_allowed=*/true), "")
      << "an empty variable is the empty value, not the default";
  EXPECT_EXIT(Address(FLAGS_test_listen), ::testing::ExitedWithCode(2), "is required");
  for (const char* good : {"127.0.0.1:0", "[::1]:7001", "session-service:7001", "unix:/run/x"}) {
    Parse({}, {{"WAS_TEST_LISTEN", good}});
    EXPECT_EQ(Address(FLAGS_test_listen), good);
  }
  for (const char* bad : {"nonsense", "127.0.0.1:99999", "host:", ":80", "[::1:80", "a b:1"}) {
    Parse({}, {{"WAS_TEST_LISTEN", bad}});
    EXPECT_EXIT(Address(FLAGS_test_listen), ::testing::ExitedWithCode(2), "WAS_TEST_LISTEN") << bad;
  }
}

TEST_F(ConfigTest, LogLevelsAreKnownOrRefused) {
  Parse({}, {{"WAS_TEST_LOG_LEVEL", "INFO"}});
  EXPECT_EQ(LogLevel(FLAGS_test_log_level), "info");
  Parse({}, {{"WAS_TEST_LOG_LEVEL", "Warning"}});
  EXPECT_EQ(LogLevel(FLAGS_test_log_level), "warn");
  Parse({}, {{"WAS_TEST_LOG_LEVEL", "verbose"}});
  EXPECT_EXIT(LogLevel(FLAGS_test_log_level), ::testing::ExitedWithCode(2),
              "WAS_TEST_LOG_LEVEL=\"verbose\": wants trace, debug, info");
}

TEST_F(ConfigTest, SecretsAndUrlCredentialsNeverShow) {
  Parse({}, {{"WAS_TEST_API_KEY", "hunter2-hunter2-hunter2"}});
  EXPECT_EXIT(Refuse(Handle(FLAGS_test_api_key), "nope"), ::testing::ExitedWithCode(2),
              "WAS_TEST_API_KEY=\\(hidden\\): nope");
  Parse({}, {{"WAS_TEST_LISTEN", "ftp://user:hunter2@host/"}});
  EXPECT_EXIT(Address(FLAGS_test_listen), ::testing::ExitedWithCode(2),
              "WAS_TEST_LISTEN=\"ftp://\\*\\*\\*@host/\"");
}

TEST_F(ConfigTest, FlagsWithoutAVariableIgnoreTheEnvironment) {
  Parse({}, {{"WAS_TEST_NO_ENV", "changed"}});
  EXPECT_EQ(absl::GetFlag(FLAGS_test_no_env), "default");
}

}  // namespace
}  // namespace wasentinel::config
