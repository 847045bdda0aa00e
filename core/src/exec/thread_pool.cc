#include "emfit/exec/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <memory>

namespace emfit {
namespace {

// Shared between the caller of ParallelFor and the helper tasks it scheduled. Helpers that
// start after all indices were claimed return without touching `fn`, so `fn` (owned by the
// caller's frame) is only called while the caller is still waiting.
struct ParallelForState {
  ParallelForState(int n, absl::FunctionRef<void(int)> f) : n(n), fn(f) {}

  void Work() {
    int i;
    while ((i = next.fetch_add(1, std::memory_order_relaxed)) < n) {
      fn(i);
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
        absl::MutexLock lock(&mu);
        all_done = true;
      }
    }
  }

  const int n;
  absl::FunctionRef<void(int)> fn;
  std::atomic<int> next{0};
  std::atomic<int> done{0};
  absl::Mutex mu;
  bool all_done ABSL_GUARDED_BY(mu) = false;
};

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  threads_.reserve(std::max(0, num_threads));
  for (int i = 0; i < num_threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
}

void ThreadPool::Schedule(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void ThreadPool::WorkerLoop() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ThreadPool* p)
               ABSL_SHARED_LOCKS_REQUIRED(p->mu_) { return p->stopping_ || !p->tasks_.empty(); },
          this));
      if (tasks_.empty()) return;  // stopping_ and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void ThreadPool::ParallelFor(int n, absl::FunctionRef<void(int)> fn) {
  if (n <= 0) return;
  if (n == 1 || threads_.empty()) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  auto state = std::make_shared<ParallelForState>(n, fn);
  const int helpers = std::min(num_threads(), n - 1);
  for (int h = 0; h < helpers; ++h) Schedule([state] { state->Work(); });
  state->Work();
  absl::MutexLock lock(&state->mu);
  state->mu.Await(absl::Condition(&state->all_done));
}

void ParallelFor(ThreadPool* pool, int n, absl::FunctionRef<void(int)> fn) {
  if (pool != nullptr) {
    pool->ParallelFor(n, fn);
  } else {
    for (int i = 0; i < n; ++i) fn(i);
  }
}

}  // namespace emfit
