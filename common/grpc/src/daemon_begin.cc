// The start and the failure exit of a daemon, apart from daemon.cc so that a process without
// the runtime flags (the console) links them without defining those flags.
#include <cerrno>
#include <iostream>

#include "wasentinel/common/config.h"
#include "wasentinel/common/daemon.h"
#include "wasentinel/common/process.h"

namespace wasentinel::daemon_internal {

void Begin(int argc, char** argv, std::string_view usage) {
  config::ParseFlags(argc, argv, usage);
  DisableMutexDeadlockDetection();
  BlockStopSignals();  // before any thread starts; WaitForStop() receives them
  RaiseFileLimit();
}

int Fail(std::string_view what, const absl::Status& status) {
  std::cerr << program_invocation_short_name << ": " << what << status.ToString() << "\n";
  return 1;
}

}  // namespace wasentinel::daemon_internal
