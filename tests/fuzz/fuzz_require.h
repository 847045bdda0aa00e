// The fuzz targets' report of a property that an accepted input must have and did not: a
// crash that libFuzzer reports and the replay test fails on.
#ifndef EMFIT_TESTS_FUZZ_FUZZ_REQUIRE_H_
#define EMFIT_TESTS_FUZZ_FUZZ_REQUIRE_H_

#include <cstdio>
#include <cstdlib>

namespace emfit::fuzz {

inline void Require(bool holds, const char* what) {
  if (holds) return;
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

}  // namespace emfit::fuzz

#endif  // EMFIT_TESTS_FUZZ_FUZZ_REQUIRE_H_
