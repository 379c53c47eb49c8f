#include "wasentinel/common/backoff.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel {

absl::StatusOr<std::vector<absl::Duration>> Backoff::ParseSteps(std::string_view text) {
  std::vector<absl::Duration> steps;
  for (absl::string_view part : absl::StrSplit(Sv(text), ',', absl::SkipWhitespace())) {
    absl::Duration d;
    if (!absl::ParseDuration(absl::StripAsciiWhitespace(part), &d) || d < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad backoff step \"", part, "\" (want e.g. 5s)"));
    }
    steps.push_back(d);
  }
  return steps;
}

}  // namespace wasentinel
