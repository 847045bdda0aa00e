// ThreadSanitizer builds only (tests/CMakeLists.txt): tells TSan about Abseil's locks.
//
// Debian's Abseil is not built with TSan, so absl::Mutex (atomics and futexes inside
// libabsl_synchronization.so) establishes no happens-before edge that TSan can see, and every
// access guarded by one would be reported as a race. gRPC's own locks are absl::Mutex too. This
// file defines the lock, wait and notification functions in the test executable, which
// interposes them over the library's for every caller (our code and gRPC's): each one calls the
// library's function and tells TSan that the mutex (or notification) was acquired or released.
// Acquire and release are enough: TSan then orders what one thread did before unlocking before
// what the next did after locking, as the real mutex does. Inside the library's functions TSan
// ignores memory accesses: Abseil evaluates waiters' conditions (our code, reading what the
// mutex guards) there, in the waiter or in the thread that unlocks, while the mutex is held,
// which TSan cannot see.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/dynamic_annotations.h"
#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

#define EMFIT_STRINGIFY2(x) #x
#define EMFIT_STRINGIFY(x) EMFIT_STRINGIFY2(x)

// The library's definition of absl::<Class>::<rest> (a const member function if `konst`), by
// its mangled name (Itanium ABI), whatever the inline namespace of this Abseil
// (absl/base/options.h).
void* Real(const char* klass, const char* rest, bool konst) {
  const std::string ns = EMFIT_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = std::string(konst ? "_ZNK" : "_ZN") + "4absl" +
                           std::to_string(ns.size()) + ns + std::to_string(std::strlen(klass)) +
                           klass + rest;
  void* f = dlsym(RTLD_NEXT, name.c_str());
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: %s not found in Abseil\n", name.c_str());
    std::abort();
  }
  return f;
}

template <class Fn>
Fn Lookup(const char* klass, const char* rest, bool konst = false) {
  return reinterpret_cast<Fn>(Real(klass, rest, konst));
}

using MutexFn = void (*)(absl::Mutex*);
using TryFn = bool (*)(absl::Mutex*);
using CondFn = void (*)(absl::Mutex*, const absl::Condition&);
using CondTimeoutFn = bool (*)(absl::Mutex*, const absl::Condition&, absl::Duration);
using CondDeadlineFn = bool (*)(absl::Mutex*, const absl::Condition&, absl::Time);
using WaitFn = void (*)(absl::CondVar*, absl::Mutex*);
using WaitTimeoutFn = bool (*)(absl::CondVar*, absl::Mutex*, absl::Duration);
using WaitDeadlineFn = bool (*)(absl::CondVar*, absl::Mutex*, absl::Time);
using NotifyFn = void (*)(absl::Notification*);
using WaitNotifiedFn = void (*)(const absl::Notification*);
using WaitNotifiedTimeoutFn = bool (*)(const absl::Notification*, absl::Duration);
using WaitNotifiedDeadlineFn = bool (*)(const absl::Notification*, absl::Time);

// Ignores this thread's memory accesses while it lives (a call into the library).
struct Quiet {
  Quiet() { ABSL_ANNOTATE_IGNORE_READS_AND_WRITES_BEGIN(); }
  ~Quiet() { ABSL_ANNOTATE_IGNORE_READS_AND_WRITES_END(); }
};

void Acquired(const void* mu) { __tsan_acquire(const_cast<void*>(mu)); }
void Releasing(const void* mu) { __tsan_release(const_cast<void*>(mu)); }

// HasBeenNotified() is inline: an acquire load of the flag, which follows Notification's mutex
// in memory. Releasing at the flag's address before Notify lets TSan pair the two.
const void* NotifiedFlag(const absl::Notification* n) {
  static_assert(sizeof(absl::Mutex) == 8 && sizeof(absl::Notification) == 16,
                "absl::Notification is laid out as {Mutex mutex_; atomic<bool> notified_yet_;}");
  return reinterpret_cast<const char*>(n) + sizeof(absl::Mutex);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const auto real = Lookup<MutexFn>("Mutex", "4LockEv");
  {
    Quiet quiet;
    real(this);
  }
  Acquired(this);
}
void Mutex::ReaderLock() {
  static const auto real = Lookup<MutexFn>("Mutex", "10ReaderLockEv");
  {
    Quiet quiet;
    real(this);
  }
  Acquired(this);
}
bool Mutex::TryLock() {
  static const auto real = Lookup<TryFn>("Mutex", "7TryLockEv");
  bool locked;
  {
    Quiet quiet;
    locked = real(this);
  }
  if (locked) Acquired(this);
  return locked;
}
bool Mutex::ReaderTryLock() {
  static const auto real = Lookup<TryFn>("Mutex", "13ReaderTryLockEv");
  bool locked;
  {
    Quiet quiet;
    locked = real(this);
  }
  if (locked) Acquired(this);
  return locked;
}
void Mutex::Unlock() {
  static const auto real = Lookup<MutexFn>("Mutex", "6UnlockEv");
  Releasing(this);
  {
    Quiet quiet;
    real(this);
  }
}
void Mutex::ReaderUnlock() {
  static const auto real = Lookup<MutexFn>("Mutex", "12ReaderUnlockEv");
  Releasing(this);
  {
    Quiet quiet;
    real(this);
  }
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto real = Lookup<CondFn>("Mutex", "8LockWhenERKNS0_9ConditionE");
  {
    Quiet quiet;
    real(this, cond);
  }
  Acquired(this);
}
void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real = Lookup<CondFn>("Mutex", "14ReaderLockWhenERKNS0_9ConditionE");
  {
    Quiet quiet;
    real(this, cond);
  }
  Acquired(this);
}
bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real =
      Lookup<CondTimeoutFn>("Mutex", "19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  bool met;
  {
    Quiet quiet;
    met = real(this, cond, timeout);
  }
  Acquired(this);  // locked either way
  return met;
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real =
      Lookup<CondDeadlineFn>("Mutex", "20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  bool met;
  {
    Quiet quiet;
    met = real(this, cond, deadline);
  }
  Acquired(this);
  return met;
}
bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real =
      Lookup<CondTimeoutFn>("Mutex", "25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  bool met;
  {
    Quiet quiet;
    met = real(this, cond, timeout);
  }
  Acquired(this);
  return met;
}
bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real =
      Lookup<CondDeadlineFn>("Mutex", "26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  bool met;
  {
    Quiet quiet;
    met = real(this, cond, deadline);
  }
  Acquired(this);
  return met;
}

// A waiter releases the mutex while it waits and holds it again when the wait returns.
void Mutex::Await(const Condition& cond) {
  static const auto real = Lookup<CondFn>("Mutex", "5AwaitERKNS0_9ConditionE");
  Releasing(this);
  {
    Quiet quiet;
    real(this, cond);
  }
  Acquired(this);
}
bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real =
      Lookup<CondTimeoutFn>("Mutex", "16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Releasing(this);
  bool met;
  {
    Quiet quiet;
    met = real(this, cond, timeout);
  }
  Acquired(this);
  return met;
}
bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real =
      Lookup<CondDeadlineFn>("Mutex", "17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Releasing(this);
  bool met;
  {
    Quiet quiet;
    met = real(this, cond, deadline);
  }
  Acquired(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  static const auto real = Lookup<WaitFn>("CondVar", "4WaitEPNS0_5MutexE");
  Releasing(mu);
  {
    Quiet quiet;
    real(this, mu);
  }
  Acquired(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static const auto real =
      Lookup<WaitTimeoutFn>("CondVar", "15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Releasing(mu);
  bool timed_out;
  {
    Quiet quiet;
    timed_out = real(this, mu, timeout);
  }
  Acquired(mu);
  return timed_out;
}
bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static const auto real =
      Lookup<WaitDeadlineFn>("CondVar", "16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Releasing(mu);
  bool timed_out;
  {
    Quiet quiet;
    timed_out = real(this, mu, deadline);
  }
  Acquired(mu);
  return timed_out;
}

void Notification::Notify() {
  static const auto real = Lookup<NotifyFn>("Notification", "6NotifyEv");
  Releasing(this);
  Releasing(NotifiedFlag(this));
  {
    Quiet quiet;
    real(this);
  }
}
void Notification::WaitForNotification() const {
  static const auto real = Lookup<WaitNotifiedFn>("Notification", "19WaitForNotificationEv", true);
  {
    Quiet quiet;
    real(this);
  }
  Acquired(this);
}
bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  static const auto real = Lookup<WaitNotifiedTimeoutFn>(
      "Notification", "30WaitForNotificationWithTimeoutENS0_8DurationE", true);
  bool notified;
  {
    Quiet quiet;
    notified = real(this, timeout);
  }
  if (notified) Acquired(this);
  return notified;
}
bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  static const auto real = Lookup<WaitNotifiedDeadlineFn>(
      "Notification", "31WaitForNotificationWithDeadlineENS0_4TimeE", true);
  bool notified;
  {
    Quiet quiet;
    notified = real(this, deadline);
  }
  if (notified) Acquired(this);
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
