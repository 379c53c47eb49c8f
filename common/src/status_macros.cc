#include "wasentinel/common/status_macros.h"

#include <cstdio>
#include <cstdlib>

namespace wasentinel::internal {

void CheckOkFailed(const char* file, int line, const absl::Status& status) {
  std::fprintf(stderr, "%s:%d: WAS_CHECK_OK failed: %s\n", file, line, status.ToString().c_str());
  std::abort();
}

}  // namespace wasentinel::internal
