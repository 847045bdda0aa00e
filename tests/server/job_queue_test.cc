#include "job_queue.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace emfit::server {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;

TEST(JobQueue, RunsJobsAndRefusesWhenFull) {
  JobQueue queue(/*workers=*/1, /*capacity=*/2);
  absl::Notification release;
  absl::Notification started;
  std::atomic<int> done{0};
  auto blocker = [&] {
    started.Notify();
    release.WaitForNotification();
    ++done;
  };
  ASSERT_THAT(queue.TrySubmit(blocker), IsOk());
  started.WaitForNotification();
  std::vector<int> positions;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<int> p = queue.TrySubmit([&] { ++done; });
    ASSERT_THAT(p, IsOk());
    positions.push_back(*p);
  }
  EXPECT_EQ(positions, (std::vector<int>{1, 2}));  // behind the running job: 1st and 2nd in line
  EXPECT_THAT(queue.TrySubmit([] {}), StatusIs(absl::StatusCode::kResourceExhausted, "--queue=2"));
  release.Notify();
  queue.Shutdown();
  EXPECT_EQ(done.load(), 3);
  EXPECT_THAT(queue.TrySubmit([] {}), StatusIs(absl::StatusCode::kUnavailable, "shutting down"));
}

TEST(JobQueue, OnQueuedRunsBeforeTheJobAndHeartbeatsReachWaitingJobs) {
  JobQueue queue(1, 4, absl::Milliseconds(10));
  absl::Notification release, started, beat;
  ASSERT_THAT(queue.TrySubmit([&] {
    started.Notify();
    release.WaitForNotification();
  }),
              IsOk());
  started.WaitForNotification();
  std::atomic<bool> queued_first{false};
  std::atomic<bool> ran{false};
  std::atomic<int> beat_position{-1};
  JobQueue::Hooks hooks;
  hooks.on_wait = [&](int position) {
    beat_position = position;
    if (!beat.HasBeenNotified()) beat.Notify();
  };
  ASSERT_THAT(
      queue.TrySubmit([&] { ran = queued_first.load(); }, [&](int) { queued_first = true; }, hooks),
      IsOk());
  EXPECT_TRUE(beat.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(beat_position.load(), 1);  // next to start, behind the running job
  release.Notify();
  queue.Shutdown();
  EXPECT_TRUE(ran.load());
}

TEST(JobQueue, PositionIsZeroOnlyWhenAWorkerStartsTheJobAtOnce) {
  JobQueue queue(/*workers=*/2, /*capacity=*/8, absl::Milliseconds(5));
  absl::Notification release;
  std::atomic<int> started{0};
  auto blocker = [&] {
    ++started;
    release.WaitForNotification();
  };
  // Two idle workers: both jobs start at once.
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<int> p = queue.TrySubmit(blocker);
    ASSERT_THAT(p, IsOk());
    EXPECT_EQ(*p, 0) << "job " << i;
  }
  // Every worker busy: the n-th waiting job is at position n, in its Accepted event
  // (on_queued), its return value and its heartbeats.
  constexpr int kWaiting = 3;
  absl::Mutex mu;
  std::vector<int> accepted(kWaiting, -1);
  std::vector<std::vector<int>> beats(kWaiting);
  for (int i = 0; i < kWaiting; ++i) {
    JobQueue::Hooks hooks;
    hooks.on_wait = [&, i](int position) {
      absl::MutexLock lock(&mu);
      beats[i].push_back(position);
    };
    absl::StatusOr<int> p = queue.TrySubmit([] {},
                                            [&, i](int position) {
                                              absl::MutexLock lock(&mu);
                                              accepted[i] = position;
                                            },
                                            hooks);
    ASSERT_THAT(p, IsOk());
    EXPECT_EQ(*p, i + 1);
  }
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(accepted, (std::vector<int>{1, 2, 3}));
    // Waits for a heartbeat of every waiting job (the heartbeat thread calls them in line).
    auto all_beat = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      for (const auto& b : beats) {
        if (b.empty()) return false;
      }
      return true;
    };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_beat), absl::Seconds(30)));
    for (int i = 0; i < kWaiting; ++i) EXPECT_EQ(beats[i].front(), i + 1) << "job " << i;
  }
  // Once the blockers end, every job runs.
  release.Notify();
  queue.Shutdown();
  EXPECT_EQ(started.load(), 2);
  EXPECT_EQ(queue.queued(), 0);
}

TEST(JobQueue, AbandonedJobsLeaveTheQueueUnrun) {
  JobQueue queue(1, 1);
  absl::Notification release, started;
  ASSERT_THAT(queue.TrySubmit([&] {
    started.Notify();
    release.WaitForNotification();
  }),
              IsOk());
  started.WaitForNotification();
  std::atomic<bool> abandoned{false}, ran{false};
  JobQueue::Hooks hooks;
  hooks.abandoned = [&] { return abandoned.load(); };
  ASSERT_THAT(queue.TrySubmit([&] { ran = true; }, [](int) {}, hooks), IsOk());
  EXPECT_THAT(queue.TrySubmit([] {}), StatusIs(absl::StatusCode::kResourceExhausted, "full"));
  abandoned = true;  // e.g. its client cancelled: the slot is free again
  EXPECT_THAT(queue.TrySubmit([] {}), IsOk());
  release.Notify();
  queue.Shutdown();
  EXPECT_FALSE(ran.load());
}

}  // namespace
}  // namespace emfit::server
