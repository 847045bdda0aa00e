// What an operator relies on: health per service and while draining, the drain and the grace
// period, retry hints and the client's re-sends of busy refusals, metrics and job ids. In process,
// over loopback; docs/operations.md describes the behaviour.
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "connection.h"
#include "fit_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "health.h"
#include "rejection.h"
#include "server.h"
#include "testing/fit_requests.h"
#include "testing/metrics.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace emfit::server {
namespace {

using ::emfit::client::CallCancel;
using ::emfit::client::CallOptions;
using ::emfit::client::CheckHealth;
using ::emfit::client::ConnectionOptions;
using ::emfit::client::FitClient;
using ::emfit::testing::Faithful;
using ::emfit::testing::GmmHeader;
using ::emfit::testing::IsOk;
using ::emfit::testing::LongFit;
using ::emfit::testing::MetricValue;
using ::emfit::testing::StatusIs;
using ::emfit::testing::Values;
using ::emfit::testing::WaitFor;
using ::testing::MatchesRegex;

// The health status of `service`, or the code of the failed check.
std::string Health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  absl::StatusOr<std::string> s = CheckHealth(channel, service, absl::Seconds(10));
  return s.ok() ? *s : absl::StatusCodeToString(s.status().code());
}

// A long fit running on a thread until cancelled or ended by the server.
struct RunningFit {
  grpc::ClientContext context;
  absl::Notification iterating;
  absl::Status status;
  std::thread thread;
  ~RunningFit() {
    if (thread.joinable()) {
      context.TryCancel();
      thread.join();
    }
  }
};

class OperationsTest : public ::testing::Test {
 protected:
  static ServerOptions Options() {
    ServerOptions o;
    o.port = 0;
    o.workers = 2;
    o.queue = 4;
    o.compute_threads = 1;
    o.shutdown_grace = absl::Seconds(1);
    o.heartbeat = absl::Milliseconds(50);
    o.drain_delay = absl::ZeroDuration();
    o.retry_after = absl::Milliseconds(50);
    return o;
  }
  // One worker and no queue: a second job is refused (busy, with `retry_after` as the hint)
  // while the first runs.
  static ServerOptions OneWorkerNoQueue(absl::Duration retry_after) {
    ServerOptions o = Options();
    o.workers = 1;
    o.queue = 0;
    o.retry_after = retry_after;
    return o;
  }
  void Start(const ServerOptions& options) {
    server_ = std::make_unique<Server>();
    ASSERT_THAT(server_->Start(options), IsOk());
    target_ = absl::StrFormat("127.0.0.1:%d", server_->port());
  }
  void TearDown() override {
    fits_.clear();  // before the server: their threads end with their calls
    if (server_ != nullptr) server_->Shutdown();
  }

  std::shared_ptr<grpc::Channel> Channel() {
    ConnectionOptions c;
    c.target = target_;
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(c);
    EXPECT_THAT(channel, IsOk());
    return channel.ok() ? *channel : nullptr;
  }

  // Starts the long fit on its own client and waits until it iterates.
  RunningFit* StartLongFit() {
    auto fit = std::make_unique<RunningFit>();
    RunningFit* f = fit.get();
    f->thread = std::thread([this, f, channel = Channel()] {
      FitClient client(channel, /*resends=*/0);
      CallOptions call;
      call.context = &f->context;
      f->status = client
                      .Fit(
                          long_fit_.header, Values(long_fit_.x),
                          [f](const v1::FitEvent& e) {
                            if (e.has_iteration() && !f->iterating.HasBeenNotified()) {
                              f->iterating.Notify();
                            }
                          },
                          call)
                      .status();
    });
    EXPECT_TRUE(f->iterating.WaitForNotificationWithTimeout(absl::Seconds(30)));
    fits_.push_back(std::move(fit));
    return f;
  }

  double Metric(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return MetricValue(server_->metrics().Collect(), name, labels);
  }

  const LongFit long_fit_;
  std::unique_ptr<Server> server_;
  std::string target_;
  std::vector<std::unique_ptr<RunningFit>> fits_;
};

TEST_F(OperationsTest, JobIdsAreNamedAfterTheirRpc) {
  Start(Options());
  FitClient client(Channel());
  const RowMatrix x = Faithful();
  std::string fit_id, select_id;
  ASSERT_THAT(client.Fit(GmmHeader(x, 2), Values(x),
                         [&](const v1::FitEvent& e) {
                           if (e.has_accepted()) fit_id = e.accepted().job_id();
                         }),
              IsOk());
  v1::SelectModelHeader select;
  select.add_k(1);
  select.add_k(2);
  *select.mutable_shape() = GmmHeader(x, 2).shape();
  ASSERT_THAT(client.SelectModel(select, Values(x),
                                 [&](const v1::SelectModelEvent& e) {
                                   if (e.has_accepted()) select_id = e.accepted().job_id();
                                 }),
              IsOk());
  EXPECT_THAT(fit_id, MatchesRegex("fit-[0-9]{6}"));
  EXPECT_THAT(select_id, MatchesRegex("select-[0-9]{6}"));
}

TEST_F(OperationsTest, HealthAnswersForBothServiceNamesAndTurnsNotServingWhileDraining) {
  ServerOptions options = Options();
  options.drain_delay = absl::Hours(1);  // cut short by Hurry() below
  Start(options);
  std::shared_ptr<grpc::Channel> channel = Channel();
  EXPECT_EQ(Health(channel, ""), "SERVING");
  EXPECT_EQ(Health(channel, kHealthServiceName), "SERVING");
  EXPECT_EQ(Health(channel, "no.such.Service"), "SERVICE_UNKNOWN");

  std::thread drain([this] { server_->Drain(); });
  EXPECT_TRUE(WaitFor([&] { return Health(channel, kHealthServiceName) == "NOT_SERVING"; }));
  EXPECT_EQ(Health(channel, ""), "NOT_SERVING");
  // During the drain delay new calls are still served.
  const RowMatrix x = Faithful();
  EXPECT_THAT(FitClient(channel).Fit(GmmHeader(x, 2), Values(x)), IsOk());
  server_->Hurry();
  drain.join();
  // The listener is closed.
  EXPECT_EQ(Health(Channel(), ""), "UNAVAILABLE");
}

TEST_F(OperationsTest, RunningCallsAreEndedWithUnavailableWhenTheGracePeriodRunsOut) {
  ServerOptions options = Options();
  options.shutdown_grace = absl::Milliseconds(200);
  Start(options);
  RunningFit* fit = StartLongFit();
  server_->Shutdown();
  fit->thread.join();
  EXPECT_THAT(fit->status, StatusIs(absl::StatusCode::kUnavailable, "the server is shutting down"));
  EXPECT_THAT(fit->status, StatusIs(absl::StatusCode::kUnavailable, "--shutdown_grace=200ms"));
}

TEST_F(OperationsTest, HurryEndsRunningCallsWithoutWaitingForTheGracePeriod) {
  ServerOptions options = Options();
  options.shutdown_grace = absl::Hours(1);
  Start(options);
  RunningFit* fit = StartLongFit();
  std::thread stop([this] { server_->Shutdown(); });
  ASSERT_TRUE(WaitFor([this] { return !server_->serving(); }));
  server_->Hurry();  // a second SIGTERM
  fit->thread.join();
  stop.join();
  EXPECT_THAT(fit->status, StatusIs(absl::StatusCode::kUnavailable, "the server is shutting down"));
}

TEST_F(OperationsTest, AFullQueueRefusalCarriesARetryHintThatTheClientHonours) {
  Start(OneWorkerNoQueue(absl::Milliseconds(50)));
  StartLongFit();
  const RowMatrix x = Faithful();
  {
    FitClient client(Channel(), /*resends=*/0);
    grpc::ClientContext context;
    CallOptions call;
    call.context = &context;
    EXPECT_THAT(client.Fit(GmmHeader(x, 2), Values(x), nullptr, call),
                StatusIs(absl::StatusCode::kResourceExhausted, "queue is full"));
    const auto& trailers = context.GetServerTrailingMetadata();
    auto hint = trailers.find(kRetryPushbackKey);
    ASSERT_NE(hint, trailers.end());
    EXPECT_EQ(std::string(hint->second.data(), hint->second.size()), "50");
  }
  EXPECT_TRUE(WaitFor([&] {
    return Metric("emfit_rejected_calls_total", {{"reason", "queue_full"}}) == 1;
  }));
  // The CLI's default: 4 re-sends, each after the server's hint; then the last status.
  FitClient retrying(Channel(), /*resends=*/4);
  EXPECT_THAT(retrying.Fit(GmmHeader(x, 2), Values(x)),
              StatusIs(absl::StatusCode::kResourceExhausted, "queue is full"));
  EXPECT_TRUE(WaitFor([&] {
    return Metric("emfit_rejected_calls_total", {{"reason", "queue_full"}}) == 1 + 5;
  }));
}

TEST_F(OperationsTest, ALimitRefusalTellsTheClientNotToRetry) {
  ServerOptions options = Options();
  options.limits.max_rows = 100;
  Start(options);
  const RowMatrix x = Faithful();
  FitClient client(Channel(), /*resends=*/4);
  grpc::ClientContext context;
  CallOptions call;
  call.context = &context;
  EXPECT_THAT(client.Fit(GmmHeader(x, 2), Values(x), nullptr, call),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_rows"));
  const auto& trailers = context.GetServerTrailingMetadata();
  auto hint = trailers.find(kRetryPushbackKey);
  ASSERT_NE(hint, trailers.end());
  EXPECT_EQ(std::string(hint->second.data(), hint->second.size()), "-1");
  // One attempt only (counted when the call ends).
  EXPECT_TRUE(WaitFor([&] {
    return Metric("emfit_calls_total", {{"method", "Fit"}, {"code", "RESOURCE_EXHAUSTED"}}) == 1;
  }));
  EXPECT_EQ(Metric("emfit_rejected_calls_total", {{"reason", "limit"}}), 1);
  // Without a context of its own too: the client does not send it again.
  CallOptions own;
  int resends = 0;
  own.on_resend = [&](const absl::Status&, int) { ++resends; };
  EXPECT_THAT(client.Fit(GmmHeader(x, 2), Values(x), nullptr, own),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_rows"));
  EXPECT_EQ(resends, 0);
  EXPECT_TRUE(WaitFor([&] {
    return Metric("emfit_calls_total", {{"method", "Fit"}, {"code", "RESOURCE_EXHAUSTED"}}) == 2;
  }));
}

TEST_F(OperationsTest, ARefusalWithoutARetryHintIsNotSentAgain) {
  Start(Options());
  const RowMatrix x = Faithful();
  FitClient client(Channel(), /*resends=*/4);
  absl::StatusOr<v1::FitResult> fit = client.Fit(GmmHeader(x, 2), Values(x));
  ASSERT_THAT(fit, IsOk());
  // Posterior blocks larger than this client accepts: RESOURCE_EXHAUSTED from gRPC itself.
  ConnectionOptions small;
  small.target = target_;
  small.max_message_bytes = 100;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(small);
  ASSERT_THAT(channel, IsOk());
  v1::PosteriorHeader header;
  *header.mutable_model() = fit->model();
  *header.mutable_shape() = GmmHeader(x, 2).shape();
  CallOptions call;
  int resends = 0;
  call.on_resend = [&](const absl::Status&, int) { ++resends; };
  EXPECT_THAT(FitClient(*channel, /*resends=*/4)
                  .Posterior(
                      header, Values(x), [](const v1::PosteriorResponse&) {}, call),
              StatusIs(absl::StatusCode::kResourceExhausted, "larger than max"));
  EXPECT_EQ(resends, 0);
}

TEST_F(OperationsTest, ACallWithACancelHandleIsSentAgainWhenBusyAndEndsWhenCancelled) {
  Start(OneWorkerNoQueue(absl::Milliseconds(300)));  // time for the worker to be freed
  const RowMatrix x = Faithful();
  absl::StatusOr<v1::FitResult> fit = FitClient(Channel(), 0).Fit(GmmHeader(x, 2), Values(x));
  ASSERT_THAT(fit, IsOk());
  v1::PosteriorHeader header;
  *header.mutable_model() = fit->model();
  *header.mutable_shape() = GmmHeader(x, 2).shape();

  // Refused while the only worker is busy, sent again, served once the worker is free (as the
  // CLI's posterior command, which cancels through the handle when it cannot write).
  RunningFit* running = StartLongFit();
  absl::Status served;
  int blocks = 0;
  std::thread t([&, channel = Channel()] {
    CallCancel cancel;
    CallOptions call;
    call.cancel = &cancel;
    served = FitClient(channel, /*resends=*/4)
                 .Posterior(
                     header, Values(x), [&](const v1::PosteriorResponse&) { ++blocks; }, call);
  });
  ASSERT_TRUE(WaitFor([&] {
    return Metric("emfit_rejected_calls_total", {{"reason", "queue_full"}}) >= 1;
  }));
  running->context.TryCancel();
  t.join();
  EXPECT_THAT(served, IsOk());
  EXPECT_GE(blocks, 1);

  // Cancelled from its first iteration (a fit that would not end by itself): CANCELLED, and
  // not sent again.
  const LongFit long_fit;
  CallCancel cancel;
  CallOptions call;
  call.cancel = &cancel;
  int resends = 0;
  call.on_resend = [&](const absl::Status&, int) { ++resends; };
  EXPECT_THAT(FitClient(Channel(), /*resends=*/4)
                  .Fit(
                      long_fit.header, Values(long_fit.x),
                      [&](const v1::FitEvent& e) {
                        if (e.has_iteration()) cancel.Cancel();
                      },
                      call),
              StatusIs(absl::StatusCode::kCancelled, ""));
  EXPECT_EQ(resends, 0);
  // A cancelled handle starts no call.
  ASSERT_TRUE(WaitFor([&] {
    return Metric("emfit_calls_total", {{"method", "Fit"}, {"code", "CANCELLED"}}) == 2;
  }));
  const double fits = Metric("emfit_calls_total", {{"method", "Fit"}, {"code", "CANCELLED"}}) +
                      Metric("emfit_calls_total", {{"method", "Fit"}, {"code", "OK"}});
  EXPECT_THAT(FitClient(Channel(), /*resends=*/4).Fit(GmmHeader(x, 2), Values(x), nullptr, call),
              StatusIs(absl::StatusCode::kCancelled, "the call was cancelled"));
  EXPECT_EQ(Metric("emfit_calls_total", {{"method", "Fit"}, {"code", "CANCELLED"}}) +
                Metric("emfit_calls_total", {{"method", "Fit"}, {"code", "OK"}}),
            fits);
}

TEST_F(OperationsTest, ACancelDuringTheWaitBeforeAResendEndsTheCallAtOnce) {
  Start(OneWorkerNoQueue(absl::Seconds(30)));  // a wait that the cancel cuts short
  StartLongFit();
  const RowMatrix x = Faithful();
  CallCancel cancel;
  CallOptions call;
  call.cancel = &cancel;
  int resends = 0;
  call.on_resend = [&](const absl::Status&, int) { ++resends; };
  absl::StatusOr<v1::FitResult> refused;
  std::thread t([&, channel = Channel()] {
    refused = FitClient(channel, /*resends=*/4).Fit(GmmHeader(x, 2), Values(x), nullptr, call);
  });
  ASSERT_TRUE(WaitFor([&] {
    return Metric("emfit_rejected_calls_total", {{"reason", "queue_full"}}) == 1;
  }));
  cancel.Cancel();
  t.join();
  // The refusal that the wait followed, at once (not CANCELLED after 30 s), and no re-send.
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted, "queue is full"));
  EXPECT_EQ(resends, 0);
}

TEST_F(OperationsTest, ARetriedCallSucceedsOnceAWorkerIsFree) {
  Start(OneWorkerNoQueue(absl::Milliseconds(300)));
  RunningFit* running = StartLongFit();
  const RowMatrix x = Faithful();
  absl::StatusOr<v1::FitResult> retried;
  std::thread t([&, channel = Channel()] {
    retried = FitClient(channel, /*resends=*/4).Fit(GmmHeader(x, 2), Values(x));
  });
  // Once the first attempt has been refused, the worker is freed.
  ASSERT_TRUE(WaitFor([&] {
    return Metric("emfit_rejected_calls_total", {{"reason", "queue_full"}}) >= 1;
  }));
  running->context.TryCancel();
  t.join();
  EXPECT_THAT(retried, IsOk());
}

TEST_F(OperationsTest, MetricsCountCallsIterationsBytesAndRejections) {
  Start(Options());
  FitClient client(Channel());
  const RowMatrix x = Faithful();
  absl::StatusOr<v1::FitResult> fit = client.Fit(GmmHeader(x, 2), Values(x));
  ASSERT_THAT(fit, IsOk());
  EXPECT_TRUE(WaitFor([&] {
    return Metric("emfit_calls_total", {{"method", "Fit"}, {"code", "OK"}}) == 1;
  }));
  // Every EM iteration of the fit (one restart), as the summary counts them.
  EXPECT_EQ(Metric("emfit_em_iterations_total", {{"method", "Fit"}}), fit->summary().iterations());
  EXPECT_GT(Metric("emfit_received_bytes_total", {{"method", "Fit"}}), x.size() * 8.0);
  EXPECT_EQ(Metric("emfit_queue_wait_seconds", {{"method", "Fit"}}), 1);
  EXPECT_EQ(Metric("emfit_job_duration_seconds", {{"method", "Fit"}}), 1);
  EXPECT_EQ(Metric("emfit_workers"), 2);
  EXPECT_EQ(Metric("emfit_serving"), 1);

  EXPECT_THAT(client.Fit(GmmHeader(x, 0), Values(x)),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.gmm.k"));
  EXPECT_TRUE(WaitFor([&] {
    return Metric("emfit_calls_total", {{"method", "Fit"}, {"code", "INVALID_ARGUMENT"}}) == 1;
  }));
  EXPECT_EQ(Metric("emfit_rejected_calls_total", {{"reason", "invalid_argument"}}), 1);

  v1::PosteriorHeader score;
  *score.mutable_model() = fit->model();
  *score.mutable_shape() = GmmHeader(x, 2).shape();
  ASSERT_THAT(client.Score(score, Values(x)), IsOk());
  EXPECT_TRUE(WaitFor([&] {
    return Metric("emfit_calls_total", {{"method", "Score"}, {"code", "OK"}}) == 1;
  }));
  EXPECT_EQ(Metric("emfit_job_duration_seconds", {{"method", "Score"}}), 1);
  // The call is counted before it leaves the active set, and its job's budget is released when
  // the job's worker lets go of its data: both a moment after the count (seen under TSan).
  EXPECT_TRUE(WaitFor(
      [&] { return Metric("emfit_active_calls") == 0 && Metric("emfit_inflight_bytes") == 0; }));
}

}  // namespace
}  // namespace emfit::server
