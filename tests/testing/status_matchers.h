// GoogleTest matchers for absl::Status and absl::StatusOr.
#ifndef EMFIT_TESTS_TESTING_STATUS_MATCHERS_H_
#define EMFIT_TESTS_TESTING_STATUS_MATCHERS_H_

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace emfit::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <class T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

// The status has `code` and its message contains `substring`.
MATCHER_P2(StatusIs, code, substring,
           std::string("has code ") + absl::StatusCodeToString(code) + " and a message with '" +
               std::string(substring) + "'") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code && s.message().find(substring) != absl::string_view::npos;
}

// Expects a log-likelihood history never to decrease, up to 1e-12 |l| + 1e-9 (algorithms.md
// §6, the contract for exact EM and SQUAREM).
inline void ExpectNonDecreasing(const std::vector<double>& history) {
  for (size_t t = 1; t < history.size(); ++t) {
    EXPECT_GE(history[t], history[t - 1] - 1e-12 * std::abs(history[t - 1]) - 1e-9)
        << "at iteration " << t;
  }
}

}  // namespace emfit::testing

#endif  // EMFIT_TESTS_TESTING_STATUS_MATCHERS_H_
