// EMFIT_CHECK: guards internal invariants (never client input). On failure it prints the
// condition and aborts, because continuing would compute garbage.
#ifndef EMFIT_CORE_BASE_CHECK_H_
#define EMFIT_CORE_BASE_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define EMFIT_CHECK(cond)                                                                 \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: EMFIT_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (false)

#endif  // EMFIT_CORE_BASE_CHECK_H_
