// Happens-before edges that ThreadSanitizer cannot see by itself: those that a library not
// built with TSan creates between threads (Debian's libgrpc, between a gRPC reactor's
// callbacks and the OnDone or OnCancel that it runs later on another thread). In any other
// build these compile to nothing. docs/reliability.md, "Sanitizers".
#ifndef EMFIT_CORE_BASE_HAND_OFF_H_
#define EMFIT_CORE_BASE_HAND_OFF_H_

#include "absl/base/config.h"

#ifdef ABSL_HAVE_THREAD_SANITIZER
#include <sanitizer/tsan_interface.h>
#endif

namespace emfit {

// Everything the calling thread did so far happens before whatever a thread does after a later
// TakeOver(`key`). `key` is only a name (any address; never read or written).
inline void HandOff([[maybe_unused]] const void* key) {
#ifdef ABSL_HAVE_THREAD_SANITIZER
  __tsan_release(const_cast<void*>(key));
#endif
}

// What every thread did before its HandOff(`key`) so far happens before what the calling
// thread does next.
inline void TakeOver([[maybe_unused]] const void* key) {
#ifdef ABSL_HAVE_THREAD_SANITIZER
  __tsan_acquire(const_cast<void*>(key));
#endif
}

// One reaction of a gRPC reactor (OnReadDone, OnWriteDone, OnCancel): hands off under `key`
// (the reactor) when it returns, for OnDone, which gRPC runs after every other reaction but
// on another thread, where TSan cannot see the order; OnDone starts with TakeOver(key).
class Reaction {
 public:
  explicit Reaction(const void* key) : key_(key) {}
  ~Reaction() { HandOff(key_); }
  Reaction(const Reaction&) = delete;
  Reaction& operator=(const Reaction&) = delete;

 private:
  const void* const key_;
};

}  // namespace emfit

#endif  // EMFIT_CORE_BASE_HAND_OFF_H_
