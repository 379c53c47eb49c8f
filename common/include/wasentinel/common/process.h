// Process-level helpers for the executables' main() and composition roots (App): the
// descriptor limit, stop signals, the default replica name. Flags and their environment
// fallbacks are config.h's. Libraries below the composition root never call these.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace wasentinel {

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

/// Hands the heap's free pages back to the kernel (glibc malloc_trim) when more than
/// `min_free_bytes` and more than a quarter of what is in use lie free in malloc's arenas, as
/// after a burst of TLS handshakes: their transient buffers are freed, but glibc keeps the
/// pages, and an idle process would carry them for good. Trims again only once the free total
/// grew `min_free_bytes` past what the last trim left. Answers the resident bytes released
/// (0 when it did not trim). Takes malloc's arena locks briefly; call it every few seconds at
/// most.
size_t TrimFreeHeap(size_t min_free_bytes = 16u << 20);

/// This machine's host name ("localhost" when it has none).
std::string HostName();

/// A replica name unique on the machine: "<hostname>-<pid>".
std::string DefaultReplicaId();

}  // namespace wasentinel
