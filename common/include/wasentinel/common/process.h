// Process-level helpers for the executables' main() and composition roots (App): environment
// fallbacks for flags, the descriptor limit, the default replica name. Libraries below the
// composition root never call these (docs/conventions.md "Wiring and lifecycle").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace wasentinel {

/// The value of environment variable `name`, or `fallback` when it is unset or empty; used as
/// flag defaults so that flag > environment > default.
std::string EnvOr(const char* name, const char* fallback);

/// Raises the soft RLIMIT_NOFILE to the hard limit: one socket per session needs more than the
/// usual 1024. Returns the soft limit in force afterwards.
long RaiseFileLimit();

/// Turns off absl::Mutex deadlock detection, which Debian's Abseil build leaves on: it keeps a
/// lock graph for every Mutex (gRPC's included) and costs a few percent of every call. Tests
/// keep it on.
void DisableMutexDeadlockDetection();

/// Blocks SIGTERM and SIGINT in this thread and every thread started after it (call first in
/// main), so that WaitForStopSignal() receives them.
void BlockStopSignals();
/// Waits for SIGTERM or SIGINT; answers which.
int WaitForStopSignal();

/// A duration flag's value (absl syntax: "30s", "5m", "2h30m"). A usage error (exit 2, the
/// program and `--name` named) when it does not parse, is negative, or is zero and `positive`.
absl::Duration DurationFlag(std::string_view name, const std::string& text, bool positive = false);
/// A list flag of durations "A[,B,...]" (Backoff::ParseSteps). A usage error (exit 2) when it is
/// empty or an entry is bad.
std::vector<absl::Duration> DurationListFlag(std::string_view name, const std::string& text);

/// This machine's host name ("localhost" when it has none).
std::string HostName();

/// A replica name unique on the machine: "<hostname>-<pid>".
std::string DefaultReplicaId();

}  // namespace wasentinel
