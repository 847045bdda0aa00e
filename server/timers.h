// One thread that runs callbacks at given times: the deadlines of uploads, of calls without a
// deadline of their own, and of jobs (--upload_timeout, --default_deadline, --max_job_seconds).
#ifndef EMFIT_SERVER_TIMERS_H_
#define EMFIT_SERVER_TIMERS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace emfit::server {

// Thread-safe. Callbacks run one at a time on the timers' own thread, in time order; they must
// not block (ending a call, cancelling a token). Callbacks still pending when the Timers die
// are dropped.
class Timers {
 public:
  using Id = uint64_t;
  Timers();
  ~Timers();
  Timers(const Timers&) = delete;
  Timers& operator=(const Timers&) = delete;

  // Calls `fn` at `when` (at once if it has passed) unless cancelled first.
  Id Schedule(absl::Time when, std::function<void()> fn);
  // Drops a pending callback; no-op when it has run (or is running) or `id` is 0.
  void Cancel(Id id);
  // Callbacks pending, for observation.
  size_t pending() const;

 private:
  void Loop();

  mutable absl::Mutex mu_;
  // Pending callbacks by (time, id): ids grow, so equal times keep their order.
  std::map<std::pair<absl::Time, Id>, std::function<void()>> pending_ ABSL_GUARDED_BY(mu_);
  std::map<Id, absl::Time> when_ ABSL_GUARDED_BY(mu_);
  Id next_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// A callback scheduled on Timers, cancelled when this handle dies or is reset. Movable.
class Timer {
 public:
  Timer() = default;
  Timer(Timers* timers, absl::Time when, std::function<void()> fn)
      : timers_(timers), id_(timers->Schedule(when, std::move(fn))) {}
  Timer(Timer&& other) noexcept { *this = std::move(other); }
  Timer& operator=(Timer&& other) noexcept {
    if (this != &other) {
      Reset();
      timers_ = std::exchange(other.timers_, nullptr);
      id_ = std::exchange(other.id_, 0);
    }
    return *this;
  }
  ~Timer() { Reset(); }
  void Reset() {
    if (timers_ != nullptr) timers_->Cancel(id_);
    timers_ = nullptr;
    id_ = 0;
  }

 private:
  Timers* timers_ = nullptr;
  Timers::Id id_ = 0;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_TIMERS_H_
