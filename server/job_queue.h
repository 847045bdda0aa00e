#ifndef EMFIT_SERVER_JOB_QUEUE_H_
#define EMFIT_SERVER_JOB_QUEUE_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace emfit::server {

// A fixed set of worker threads behind a bounded FIFO queue. Fits run here, never on gRPC's
// threads. Thread-safe.
class JobQueue {
 public:
  // `workers` >= 1 threads; at most `capacity` jobs wait while every worker is busy. Every
  // `heartbeat` (infinite: never), each waiting job's `on_wait` is called with its position.
  JobQueue(int workers, int capacity, absl::Duration heartbeat = absl::InfiniteDuration());
  ~JobQueue();  // Shutdown()
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Queues `job`. Returns the number of jobs ahead of it that are waiting (0 when a worker is
  // idle), RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE after Shutdown().
  // `on_queued(position)` runs before any worker can start the job (so that, e.g., an
  // "accepted" event precedes everything the job sends); it must not block.
  // Optional hooks: `on_wait(position)` is called from the heartbeat thread while the job
  // waits; `abandoned()` says the job's call has ended, so the job is removed unrun when
  // the queue is next examined and its slot is free again. Neither may block.
  struct Hooks {
    std::function<void(int)> on_wait;
    std::function<bool()> abandoned;
  };
  absl::StatusOr<int> TrySubmit(
      std::function<void()> job, absl::FunctionRef<void(int)> on_queued = [](int) {},
      Hooks hooks = {});

  // Stops accepting jobs, runs the jobs already queued, and joins the workers. Idempotent.
  void Shutdown();

  int workers() const { return static_cast<int>(threads_.size()); }
  // Jobs waiting, and jobs running.
  int queued() const;
  int running() const;

 private:
  struct Job {
    std::function<void()> run;
    Hooks hooks;
  };
  // Removes the waiting jobs whose calls have ended.
  void PurgeAbandonedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WorkerLoop();
  void HeartbeatLoop(absl::Duration interval);

  const int capacity_;
  mutable absl::Mutex mu_;
  std::deque<Job> jobs_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  std::thread heartbeat_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_JOB_QUEUE_H_
