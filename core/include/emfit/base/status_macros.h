// Status helpers missing from the packaged Abseil (20220623).
#ifndef EMFIT_CORE_BASE_STATUS_MACROS_H_
#define EMFIT_CORE_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define EMFIT_INTERNAL_CONCAT_IMPL(a, b) a##b
#define EMFIT_INTERNAL_CONCAT(a, b) EMFIT_INTERNAL_CONCAT_IMPL(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define EMFIT_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status emfit_status_ = (expr);         \
    if (!emfit_status_.ok()) return emfit_status_; \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else move-assigns the
// value to `lhs` (which may be a declaration, e.g. `auto x`).
#define EMFIT_ASSIGN_OR_RETURN(lhs, rexpr) \
  EMFIT_INTERNAL_ASSIGN_OR_RETURN(EMFIT_INTERNAL_CONCAT(emfit_statusor_, __LINE__), lhs, rexpr)

#define EMFIT_INTERNAL_ASSIGN_OR_RETURN(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                    \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = std::move(statusor).value()

#endif  // EMFIT_CORE_BASE_STATUS_MACROS_H_
