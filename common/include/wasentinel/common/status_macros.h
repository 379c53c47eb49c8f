// Status propagation macros for absl::Status / absl::StatusOr.
//
// Debian 12's Abseil (20220623) has no ASSIGN_OR_RETURN; these are the house equivalents.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

/// Evaluates `expr` (an absl::Status); returns it from the enclosing function when not OK.
#define WAS_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status was_status_ = (expr);       \
    if (!was_status_.ok()) return was_status_; \
  } while (false)

/// Aborts with the status when `expr` is not OK: for calls that cannot fail unless an invariant
/// is broken.
#define WAS_CHECK_OK(expr)                                                                         \
  do {                                                                                             \
    ::absl::Status was_status_ = (expr);                                                           \
    if (!was_status_.ok()) ::wasentinel::internal::CheckOkFailed(__FILE__, __LINE__, was_status_); \
  } while (false)

namespace wasentinel::internal {
[[noreturn]] void CheckOkFailed(const char* file, int line, const ::absl::Status& status);
}  // namespace wasentinel::internal

#define WAS_STATUS_CONCAT_INNER_(a, b) a##b
#define WAS_STATUS_CONCAT_(a, b) WAS_STATUS_CONCAT_INNER_(a, b)

/// `WAS_ASSIGN_OR_RETURN(lhs, expr)`: evaluates `expr` (an absl::StatusOr<T>); on error returns
/// its status, otherwise moves the value into `lhs` (which may be a declaration: `auto x`).
#define WAS_ASSIGN_OR_RETURN(lhs, expr) \
  WAS_ASSIGN_OR_RETURN_IMPL_(WAS_STATUS_CONCAT_(was_statusor_, __LINE__), lhs, expr)

#define WAS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)    \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
