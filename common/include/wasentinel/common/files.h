// Reading a whole file (configuration the services load at start-up: PEM files, templates).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace wasentinel {

/// The whole file at `path`; INVALID_ARGUMENT naming the path when it cannot be read.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace wasentinel
