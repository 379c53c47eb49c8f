#include "wasentinel/common/process.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "wasentinel/common/backoff.h"

namespace wasentinel {

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
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

absl::Duration DurationFlag(std::string_view name, const std::string& text, bool positive) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration() ||
      (positive && d == absl::ZeroDuration())) {
    std::cerr << program_invocation_short_name << ": --" << name << ": bad duration \"" << text
              << "\"" << (positive ? " (more than 0 wanted)" : "") << "\n";
    std::exit(2);
  }
  return d;
}

std::vector<absl::Duration> DurationListFlag(std::string_view name, const std::string& text) {
  auto steps = Backoff::ParseSteps(text);
  if (!steps.ok() || steps->empty()) {
    std::cerr << program_invocation_short_name << ": --" << name << ": wants durations A[,B,...]"
              << (steps.ok() ? "" : absl::StrCat(": ", steps.status().message())) << "\n";
    std::exit(2);
  }
  return *std::move(steps);
}

std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

std::string DefaultReplicaId() { return absl::StrCat(HostName(), "-", getpid()); }

}  // namespace wasentinel
