#include "timers.h"

#include "absl/time/clock.h"

namespace emfit::server {

Timers::Timers() : thread_([this] { Loop(); }) {}

Timers::~Timers() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

Timers::Id Timers::Schedule(absl::Time when, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  const Id id = next_++;
  pending_.emplace(std::make_pair(when, id), std::move(fn));
  when_.emplace(id, when);
  return id;
}

void Timers::Cancel(Id id) {
  std::function<void()> dropped;  // destroyed after the lock: it may own what takes other locks
  absl::MutexLock lock(&mu_);
  auto it = when_.find(id);
  if (it == when_.end()) return;
  auto pending = pending_.find({it->second, id});
  dropped = std::move(pending->second);
  pending_.erase(pending);
  when_.erase(it);
}

size_t Timers::pending() const {
  absl::MutexLock lock(&mu_);
  return pending_.size();
}

void Timers::Loop() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    // Wakes when stopping, or when the earliest callback is due (re-evaluated whenever a
    // callback is scheduled or cancelled, since both change pending_ under mu_).
    const absl::Time next =
        pending_.empty() ? absl::InfiniteFuture() : pending_.begin()->first.first;
    auto woken = [this, next]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || (!pending_.empty() && pending_.begin()->first.first < next);
    };
    mu_.AwaitWithDeadline(absl::Condition(&woken), next);
    if (stopping_) return;
    if (pending_.empty() || pending_.begin()->first.first > absl::Now()) continue;
    auto first = pending_.begin();
    std::function<void()> fn = std::move(first->second);
    when_.erase(first->first.second);
    pending_.erase(first);
    mu_.Unlock();
    fn();
    fn = nullptr;  // what it owns is destroyed outside the lock too
    mu_.Lock();
  }
}

}  // namespace emfit::server
