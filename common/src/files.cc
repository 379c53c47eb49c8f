#include "wasentinel/common/files.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace wasentinel {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  return ss.str();
}

}  // namespace wasentinel
