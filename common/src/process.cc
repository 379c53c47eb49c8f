#include "wasentinel/common/process.h"

#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace wasentinel {

size_t TrimFreeHeap(size_t min_free_bytes) {
  // malloc_trim hands pages back with madvise but leaves their chunks counted as free, so the
  // free total after a trim is the mark to grow past before trimming again.
  static std::atomic<size_t> free_after_last_trim{0};
  const struct mallinfo2 info = mallinfo2();
  const size_t free_bytes = info.fordblks;
  if (free_bytes <= min_free_bytes || free_bytes <= info.uordblks / 4 ||
      free_bytes <= free_after_last_trim.load() + min_free_bytes) {
    return 0;
  }
  auto resident = [] {
    long pages = 0, resident_pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%ld %ld", &pages, &resident_pages) != 2) resident_pages = 0;
      std::fclose(f);
    }
    return static_cast<size_t>(resident_pages) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
  };
  const size_t before = resident();
  malloc_trim(0);
  free_after_last_trim = mallinfo2().fordblks;
  const size_t after = resident();
  return before > after ? before - after : 0;
}

long RaiseFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return -1;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) getrlimit(RLIMIT_NOFILE, &lim);
  }
  return static_cast<long>(lim.rlim_cur);
}

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

namespace {
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}
}  // namespace

void BlockStopSignals() {
  const sigset_t set = StopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForStopSignal() {
  const sigset_t set = StopSignals();
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

std::string DefaultReplicaId() { return absl::StrCat(HostName(), "-", getpid()); }

}  // namespace wasentinel
