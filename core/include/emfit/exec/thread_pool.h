#ifndef EMFIT_CORE_EXEC_THREAD_POOL_H_
#define EMFIT_CORE_EXEC_THREAD_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

namespace emfit {

// A fixed set of compute threads shared by every fit in a process.
//
// ParallelFor(n, fn) calls fn(0) ... fn(n-1), each exactly once, on the pool's threads and on
// the calling thread, and returns when all calls have finished. The caller always helps, so a
// ParallelFor makes progress even when every pool thread is busy with other fits. Thread-safe:
// many threads may call ParallelFor concurrently. Which thread runs which index is unspecified;
// callers that reduce results must write per-index partials and reduce them in index order.
class ThreadPool {
 public:
  // Starts `num_threads` threads (0: every ParallelFor runs inline on its caller).
  explicit ThreadPool(int num_threads);
  ~ThreadPool();  // Joins the threads after the queued tasks have run.
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(threads_.size()); }

  void ParallelFor(int n, absl::FunctionRef<void(int)> fn);

 private:
  void Schedule(std::function<void()> task);
  void WorkerLoop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Runs fn over [0, n) on `pool`, or inline when `pool` is null.
void ParallelFor(ThreadPool* pool, int n, absl::FunctionRef<void(int)> fn);

}  // namespace emfit

#endif  // EMFIT_CORE_EXEC_THREAD_POOL_H_
