#include "wasentinel/common/config.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iostream>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::config {
namespace {

// Flags whose value came from the environment: flag name → variable name. Written once by
// ParseFlags before any thread starts.
absl::flat_hash_map<std::string, std::string>& FromEnvironment() {
  static auto* map = new absl::flat_hash_map<std::string, std::string>();
  return *map;
}

// "… [WAS_NAME]" at the end of a flag's help → "WAS_NAME".
std::string EnvironmentName(const absl::CommandLineFlag& flag) {
  const std::string text = flag.Help();
  absl::string_view help = absl::StripTrailingAsciiWhitespace(text);
  if (!absl::ConsumeSuffix(&help, "]")) return "";
  const auto open = help.rfind('[');
  if (open == absl::string_view::npos) return "";
  const absl::string_view name = help.substr(open + 1);
  if (!absl::StartsWith(name, "WAS_")) return "";
  for (char c : name) {
    if (!absl::ascii_isupper(c) && !absl::ascii_isdigit(c) && c != '_') return "";
  }
  return std::string(name);
}

// Is `name` given on the command line (--name, --name=…, -name…, --noname for booleans)?
bool OnCommandLine(int argc, char** argv, absl::string_view name) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "-")) continue;
    absl::ConsumePrefix(&arg, "-");
    arg = arg.substr(0, arg.find('='));
    if (arg == name || (absl::ConsumePrefix(&arg, "no") && arg == name)) return true;
  }
  return false;
}

bool Secret(absl::string_view flag_name) {
  for (absl::string_view word : {"key", "password", "secret", "token"}) {
    if (absl::StrContains(flag_name, word)) return true;
  }
  return false;
}

// The value as an error message may show it: hidden for secrets, URL credentials removed,
// control characters escaped, at most 64 characters.
std::string Shown(absl::string_view flag_name, absl::string_view value) {
  if (Secret(flag_name)) return "(hidden)";
  return QuoteForLog(RedactUrlCredentials(std::string(value)), 64);
}

[[noreturn]] void Exit(std::string_view message) {
  std::cerr << program_invocation_short_name << ": " << message << "\n";
  std::exit(kUsageExit);
}

}  // namespace

std::string Source(const absl::CommandLineFlag& flag) {
  const auto& env = FromEnvironment();
  if (auto it = env.find(flag.Name()); it != env.end()) return it->second;
  return absl::StrCat("--", flag.Name());
}

void Refuse(const absl::CommandLineFlag& flag, std::string_view wants) {
  Exit(absl::StrCat(Source(flag), "=", Shown(flag.Name(), flag.CurrentValue()), ": ", Sv(wants)));
}

void RefuseConfig(std::string_view message) { Exit(message); }

std::vector<char*> ParseFlags(int argc, char** argv, std::string_view usage) {
  static bool usage_set = false;  // absl allows one usage message per process
  if (!usage_set) absl::SetProgramUsageMessage(Sv(usage));
  usage_set = true;
  // The environment first, so that ParseCommandLine's values (which win) come after; a flag on
  // the command line does not read its variable at all.
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    const std::string var = EnvironmentName(*flag);
    if (var.empty() || OnCommandLine(argc, argv, name)) continue;
    const char* value = std::getenv(var.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      Exit(absl::StrCat(var, "=", Shown(name, value), ": ", error));
    }
    FromEnvironment()[std::string(name)] = var;
  }
  return absl::ParseCommandLine(argc, argv);
}

int IntIn(const absl::Flag<int>& flag, int lo, int hi) {
  const int v = absl::GetFlag(flag);
  if (v < lo || v > hi) Refuse(Handle(flag), absl::StrCat("wants an integer ", lo, "..", hi));
  return v;
}

double NonNegative(const absl::Flag<double>& flag, double max) {
  const double v = absl::GetFlag(flag);
  if (!std::isfinite(v) || v < 0 || v > max) {
    Refuse(Handle(flag), absl::StrCat("wants a number 0..", max));
  }
  return v;
}

absl::Duration DurationIn(const absl::Flag<absl::Duration>& flag, absl::Duration min,
                          absl::Duration max) {
  const absl::Duration d = absl::GetFlag(flag);
  if (d < min || d > max || d == absl::InfiniteDuration()) {
    Refuse(Handle(flag), absl::StrCat("wants a duration ", min == absl::ZeroDuration() ? "0s" : "",
                                      min == absl::ZeroDuration() ? "" : absl::FormatDuration(min),
                                      "..", absl::FormatDuration(max), " (like 30s, 5m, 1h30m)"));
  }
  return d;
}

std::vector<absl::Duration> DurationList(const absl::Flag<std::string>& flag, absl::Duration min,
                                         absl::Duration max, size_t max_steps) {
  auto steps = Backoff::ParseSteps(absl::GetFlag(flag));
  const std::string wants =
      absl::StrCat("wants 1 to ", max_steps, " durations A[,B,...], each ",
                   absl::FormatDuration(min), "..", absl::FormatDuration(max));
  if (!steps.ok() || steps->empty() || steps->size() > max_steps) Refuse(Handle(flag), wants);
  for (absl::Duration d : *steps) {
    if (d < min || d > max) Refuse(Handle(flag), wants);
  }
  return *std::move(steps);
}

std::pair<absl::Duration, absl::Duration> DurationRange(const absl::Flag<std::string>& flag,
                                                        absl::Duration min, absl::Duration max,
                                                        bool ordered) {
  auto steps = Backoff::ParseSteps(absl::GetFlag(flag));
  const std::string wants =
      absl::StrCat(ordered ? "wants LOW[,HIGH] durations, each " : "wants A[,B] durations, each ",
                   absl::FormatDuration(min), "..", absl::FormatDuration(max),
                   ordered ? ", LOW not above HIGH" : "");
  if (!steps.ok() || steps->empty() || steps->size() > 2) Refuse(Handle(flag), wants);
  const absl::Duration a = steps->front(), b = steps->back();
  if (a < min || b < min || a > max || b > max || (ordered && a > b)) Refuse(Handle(flag), wants);
  return {a, b};
}

std::string Address(const absl::Flag<std::string>& flag, bool empty_allowed) {
  std::string value = absl::GetFlag(flag);
  if (value.empty()) {
    if (!empty_allowed) Refuse(Handle(flag), "is required: host:port");
    return value;
  }
  constexpr std::string_view kWants = "wants host:port, [IPv6]:port or unix:/path";
  absl::string_view rest = value;
  if (absl::ConsumePrefix(&rest, "unix:")) {
    if (rest.empty()) Refuse(Handle(flag), kWants);
    return value;
  }
  const auto colon = rest.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) Refuse(Handle(flag), kWants);
  absl::string_view host = rest.substr(0, colon);
  const absl::string_view port = rest.substr(colon + 1);
  int port_number = -1;
  if (port.empty() || port.size() > 5 || !absl::SimpleAtoi(port, &port_number) || port_number < 0 ||
      port_number > 65535 || !absl::ascii_isdigit(port.front())) {
    Refuse(Handle(flag), kWants);
  }
  if (absl::ConsumePrefix(&host, "[")) {
    if (!absl::ConsumeSuffix(&host, "]") || host.empty()) Refuse(Handle(flag), kWants);
    for (char c : host) {
      if (!absl::ascii_isxdigit(c) && c != ':' && c != '.') Refuse(Handle(flag), kWants);
    }
    return value;
  }
  for (char c : host) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '-' && c != '_') Refuse(Handle(flag), kWants);
  }
  return value;
}

std::string LogLevel(const absl::Flag<std::string>& flag) {
  std::string level = absl::AsciiStrToLower(absl::GetFlag(flag));
  if (level == "warning") level = "warn";
  for (const char* known : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    if (level == known) return level;
  }
  Refuse(Handle(flag), "wants trace, debug, info, warn, error, critical or off");
}

std::string Required(const absl::Flag<std::string>& flag, std::string_view wants) {
  std::string v = absl::GetFlag(flag);
  if (v.empty()) Refuse(Handle(flag), absl::StrCat("is required: ", Sv(wants)));
  return v;
}

}  // namespace wasentinel::config
