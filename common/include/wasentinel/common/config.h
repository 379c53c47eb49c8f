// Strict configuration for the executables' main(): every flag that names an environment
// variable in its help ("… [WAS_NAME]") takes that variable's value when the command line does
// not set the flag, parsed by the flag's own parser (so WAS_SMTP_REQUIRE_TLS=1, yes and TRUE all
// mean true, and WAS_DISPATCHERS=four is an error, not 0). Then each value is range-checked by
// the helpers below.
//
// Precedence: command line > environment > built-in default. An environment variable that is
// set but empty is the empty value: for text flags what the README's Configuration tables say
// empty means (WAS_METRICS_LISTEN= disables the exposer); for numbers, booleans and durations
// it is an error.
//
// Every refusal is a usage error: the program prints one line to standard error naming where
// the value came from (`--name` or `WAS_NAME`), the value (at most 64 characters of it, never
// for flags whose name says they hold a secret) and what is allowed, then exits with status 2.
// Libraries below the composition root never call these (README "Configuration").
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/time.h"

namespace wasentinel::config {

/// The exit status of a configuration error.
inline constexpr int kUsageExit = 2;

/// absl::ParseCommandLine, then the environment fallbacks described above. Returns the
/// positional arguments as ParseCommandLine does. Exits 2 on a bad command line or variable.
std::vector<char*> ParseFlags(int argc, char** argv, std::string_view usage);

/// Prints "<program>: <where>=\"<value>\": <wants>" and exits 2. `where` and the value come from
/// `flag` (its source: the command line or its environment variable).
[[noreturn]] void Refuse(const absl::CommandLineFlag& flag, std::string_view wants);
/// Prints "<program>: <message>" and exits 2, for checks across flags (min ≤ max, …).
[[noreturn]] void RefuseConfig(std::string_view message);

/// "--name" or "WAS_NAME", whichever set the flag's value ("--name" for a default).
std::string Source(const absl::CommandLineFlag& flag);

template <class T>
const absl::CommandLineFlag& Handle(const absl::Flag<T>& flag) {
  return absl::GetFlagReflectionHandle(flag);
}

/// An integer in [lo, hi].
int IntIn(const absl::Flag<int>& flag, int lo, int hi);

/// A rate or quantity: finite and ≥ 0 (NaN and infinities are refused), at most `max`.
double NonNegative(const absl::Flag<double>& flag, double max = 1e9);

/// A duration in [min, max]. `min` zero allows 0 (for flags where 0 means "off" or "default").
absl::Duration DurationIn(const absl::Flag<absl::Duration>& flag, absl::Duration min,
                          absl::Duration max = absl::Hours(24 * 3650));

/// "A[,B,...]": at least one, at most `max_steps`, each in [min, max] (Backoff::ParseSteps).
std::vector<absl::Duration> DurationList(const absl::Flag<std::string>& flag, absl::Duration min,
                                         absl::Duration max = absl::Hours(24),
                                         size_t max_steps = 32);

/// "A[,B]" (B defaults to A): both in [min, max]; A ≤ B when `ordered` (a range LOW,HIGH),
/// in any order otherwise (a pair FIRST,NEXT).
std::pair<absl::Duration, absl::Duration> DurationRange(const absl::Flag<std::string>& flag,
                                                        absl::Duration min, absl::Duration max,
                                                        bool ordered = true);

/// A socket address to listen on or connect to: "host:port", "[v6]:port" or, for gRPC,
/// "unix:/path". Port 0..65535 (0 picks a free port: listening only). Empty is refused unless
/// `empty_allowed` (the flag's help says what empty means).
std::string Address(const absl::Flag<std::string>& flag, bool empty_allowed = false);

/// One of trace, debug, info, warn, error, critical, off (any case; "warning" is warn),
/// returned in lower case.
std::string LogLevel(const absl::Flag<std::string>& flag);

/// A flag that must not be empty.
std::string Required(const absl::Flag<std::string>& flag, std::string_view wants);

}  // namespace wasentinel::config
