// Waiting on a condition instead of sleeping a fixed time.
#ifndef EMFIT_TESTS_TESTING_WAIT_H_
#define EMFIT_TESTS_TESTING_WAIT_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace emfit::testing {

// Polls `done()` every 5 ms until it holds, for at most `timeout`; returns whether it held.
template <class Predicate>
bool WaitFor(Predicate done, absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time end = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

}  // namespace emfit::testing

#endif  // EMFIT_TESTS_TESTING_WAIT_H_
