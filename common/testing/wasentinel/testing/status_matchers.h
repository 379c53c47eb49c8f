// gMock matchers for statuses that say what the status was when they fail:
//
//   ASSERT_THAT(store.Get(id), IsOk());
//   EXPECT_THAT(stub->Connect(&ctx, req, &resp), StatusIs(grpc::StatusCode::NOT_FOUND, "no"));
//
// They take absl::Status, absl::StatusOr<T> and grpc::Status (anything with code()/message(),
// error_code()/error_message(), or status()), so one spelling serves every layer.
#pragma once

#include <gmock/gmock.h>

#include <ostream>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace wasentinel::testing {
namespace status_internal {

// (code as a number, code's name or number as text, message) of any status-like value.
struct Seen {
  int code = 0;
  std::string text;
  std::string message;
};

template <class S>
Seen Inspect(const S& s) {
  if constexpr (requires { s.status(); }) {
    return Inspect(s.status());
  } else if constexpr (requires { s.error_code(); }) {
    return {static_cast<int>(s.error_code()), std::to_string(static_cast<int>(s.error_code())),
            s.error_message()};
  } else {
    return {static_cast<int>(s.code()), std::string(absl::StatusCodeToString(s.code())),
            std::string(s.message())};
  }
}

class IsOkMatcher {
 public:
  using is_gtest_matcher = void;
  template <class S>
  bool MatchAndExplain(const S& s, std::ostream* os) const {
    const Seen seen = Inspect(s);
    if (seen.code != 0 && os) *os << "which is " << seen.text << ": " << seen.message;
    return seen.code == 0;
  }
  void DescribeTo(std::ostream* os) const { *os << "is OK"; }
  void DescribeNegationTo(std::ostream* os) const { *os << "is not OK"; }
};

template <class Code>
class StatusIsMatcher {
 public:
  using is_gtest_matcher = void;
  StatusIsMatcher(Code code, std::string part) : code_(code), part_(std::move(part)) {}
  template <class S>
  bool MatchAndExplain(const S& s, std::ostream* os) const {
    const Seen seen = Inspect(s);
    const bool ok =
        seen.code == static_cast<int>(code_) && seen.message.find(part_) != std::string::npos;
    if (!ok && os) *os << "which is " << seen.text << ": \"" << seen.message << "\"";
    return ok;
  }
  void DescribeTo(std::ostream* os) const {
    *os << "has code " << static_cast<int>(code_);
    if (!part_.empty()) *os << " and a message containing \"" << part_ << "\"";
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "does not have code " << static_cast<int>(code_);
    if (!part_.empty()) *os << " with a message containing \"" << part_ << "\"";
  }

 private:
  Code code_;
  std::string part_;
};

}  // namespace status_internal

/// Matches an OK status (or a StatusOr holding a value); on failure prints the code and message.
inline status_internal::IsOkMatcher IsOk() { return {}; }

/// Matches a status with `code` (absl::StatusCode or grpc::StatusCode) whose message contains
/// `part` (empty: any message).
template <class Code>
status_internal::StatusIsMatcher<Code> StatusIs(Code code, std::string part = "") {
  return {code, std::move(part)};
}

}  // namespace wasentinel::testing
