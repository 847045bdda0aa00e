#include "emfit/exec/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace emfit {
namespace {

TEST(ThreadPool, ParallelForRunsEveryIndexOnce) {
  ThreadPool pool(2);
  for (int n : {0, 1, 2, 3, 17, 1000}) {
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, [&](int i) { hits[i].fetch_add(1); });
    for (int i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPool, ZeroThreadsRunsInline) {
  ThreadPool pool(0);
  const auto caller = std::this_thread::get_id();
  pool.ParallelFor(5, [&](int) { EXPECT_EQ(std::this_thread::get_id(), caller); });
}

TEST(ThreadPool, ConcurrentCallersAllFinish) {
  ThreadPool pool(2);
  std::atomic<long> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep) pool.ParallelFor(64, [&](int i) { sum += i; });
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), 4L * 50 * (63 * 64 / 2));
}

}  // namespace
}  // namespace emfit
