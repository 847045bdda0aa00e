#include "job_queue.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "rejection.h"

namespace emfit::server {

JobQueue::JobQueue(int workers, int capacity, absl::Duration heartbeat)
    : capacity_(std::max(0, capacity)) {
  for (int i = 0; i < std::max(1, workers); ++i) threads_.emplace_back([this] { WorkerLoop(); });
  if (heartbeat != absl::InfiniteDuration() && heartbeat > absl::ZeroDuration()) {
    heartbeat_ = std::thread([this, heartbeat] { HeartbeatLoop(heartbeat); });
  }
}

JobQueue::~JobQueue() { Shutdown(); }

void JobQueue::PurgeAbandonedLocked() {
  jobs_.erase(std::remove_if(jobs_.begin(), jobs_.end(),
                             [](const Job& j) { return j.hooks.abandoned && j.hooks.abandoned(); }),
              jobs_.end());
}

absl::StatusOr<int> JobQueue::TrySubmit(std::function<void()> job,
                                        absl::FunctionRef<void(int)> on_queued, Hooks hooks) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  PurgeAbandonedLocked();
  // Jobs in jobs_ that an idle worker is about to take do not count as waiting.
  const int idle = static_cast<int>(threads_.size()) - running_;
  const int waiting = std::max(0, static_cast<int>(jobs_.size()) - idle);
  const bool worker_free = static_cast<int>(jobs_.size()) < idle;
  if (!worker_free && waiting >= capacity_) {
    return MarkBusy(absl::ResourceExhaustedError(absl::StrFormat(
                        "the job queue is full (%d workers busy, %d jobs waiting, --queue=%d); "
                        "retry later",
                        running_, waiting, capacity_)),
                    RejectReason::kQueueFull);
  }
  const int ahead = worker_free ? 0 : waiting;
  on_queued(ahead);
  jobs_.push_back({std::move(job), std::move(hooks)});
  return ahead;
}

void JobQueue::WorkerLoop() {
  for (;;) {
    std::function<void()> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](JobQueue* q)
               ABSL_SHARED_LOCKS_REQUIRED(q->mu_) { return q->stopping_ || !q->jobs_.empty(); },
          this));
      if (jobs_.empty()) return;
      job = std::move(jobs_.front().run);
      jobs_.pop_front();
      ++running_;
    }
    job();
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

void JobQueue::HeartbeatLoop(absl::Duration interval) {
  for (;;) {
    std::vector<std::pair<int, std::function<void(int)>>> waiting;
    {
      absl::MutexLock lock(&mu_);
      const auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), interval)) return;
      PurgeAbandonedLocked();
      // Jobs an idle worker is about to take are not waiting.
      const int idle = static_cast<int>(threads_.size()) - running_;
      for (int i = std::max(0, idle); i < static_cast<int>(jobs_.size()); ++i) {
        if (jobs_[i].hooks.on_wait) {
          waiting.emplace_back(i - std::max(0, idle), jobs_[i].hooks.on_wait);
        }
      }
    }
    for (auto& [position, on_wait] : waiting) on_wait(position);
  }
}

void JobQueue::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  if (heartbeat_.joinable()) heartbeat_.join();
}

int JobQueue::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(jobs_.size());
}

int JobQueue::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

}  // namespace emfit::server
