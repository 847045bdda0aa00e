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
  EXPECT_EQ(positions, (std::vector<int>{0, 1}));
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
  EXPECT_EQ(beat_position.load(), 0);
  release.Notify();
  queue.Shutdown();
  EXPECT_TRUE(ran.load());
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
