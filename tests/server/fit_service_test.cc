#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "convert/common.h"
#include "convert/gmm.h"
#include "convert/mk.h"
#include "emfit/gmm/gmm.h"
#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "fit_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server.h"
#include "testing/data.h"
#include "testing/fit_requests.h"
#include "testing/mk_trees.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace emfit::server {
namespace {

using ::emfit::client::CallOptions;
using ::emfit::client::FitClient;
using ::emfit::testing::Faithful;
using ::emfit::testing::GmmHeader;
using ::emfit::testing::IsOk;
using ::emfit::testing::LongFit;
using ::emfit::testing::StatusIs;
using ::emfit::testing::Values;
using ::emfit::testing::WaitFor;

class FitServiceTest : public ::testing::Test {
 protected:
  void StartServer(int workers = 2, int queue = 4, ServiceLimits limits = {},
                   int compute_threads = 1) {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = workers;
    options.queue = queue;
    options.compute_threads = compute_threads;
    options.limits = limits;
    options.shutdown_grace = absl::Seconds(1);
    options.heartbeat = absl::Milliseconds(50);
    options.retry_after = absl::Milliseconds(50);  // the client's retries of a full queue
    server_ = std::make_unique<Server>();
    ASSERT_THAT(server_->Start(options), IsOk());
    // No re-sends: a call lost to a stopping server shows that server's status.
    client_ = std::make_unique<FitClient>(
        FitClient::Connect(absl::StrFormat("127.0.0.1:%d", server_->port())), /*resends=*/0);
  }
  void SetUp() override { StartServer(); }
  void TearDown() override { server_->Shutdown(); }

  // Waits until no job runs (a cancelled job must stop within one iteration).
  bool WaitIdle(absl::Duration timeout = absl::Seconds(10)) {
    return WaitFor(
        [&] { return server_->queue().running() == 0 && server_->queue().queued() == 0; }, timeout);
  }

  // Runs `fit` on a thread with `context` (so the test can cancel it); `on_event` sees its
  // events.
  std::thread StartFit(const LongFit& fit, grpc::ClientContext* context,
                       std::function<void(const v1::FitEvent&)> on_event) {
    return std::thread([this, &fit, context, on_event = std::move(on_event)] {
      CallOptions call;
      call.context = context;
      (void)client_->Fit(fit.header, Values(fit.x), on_event, call);
    });
  }
  // Runs `fit` on a thread and waits until it is iterating.
  std::thread StartRunningFit(const LongFit& fit, grpc::ClientContext* context) {
    auto running = std::make_shared<absl::Notification>();
    std::thread t = StartFit(fit, context, [running](const v1::FitEvent& e) {
      if (e.has_iteration() && !running->HasBeenNotified()) running->Notify();
    });
    EXPECT_TRUE(running->WaitForNotificationWithTimeout(absl::Seconds(30)));
    return t;
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<FitClient> client_;
};

TEST_F(FitServiceTest, FitEqualsTheDirectCoreFit) {
  const RowMatrix x = Faithful();
  v1::FitHeader header = GmmHeader(x, 2);
  header.mutable_options()->set_seed(9);
  header.mutable_options()->set_n_init(3);
  header.mutable_options()->set_tol(1e-6);
  std::vector<v1::FitEvent> events;
  CallOptions call;
  call.chunk_values = 101;  // chunks that do not end on row boundaries
  absl::StatusOr<v1::FitResult> remote = client_->Fit(
      header, Values(x), [&](const v1::FitEvent& e) { events.push_back(e); }, call);
  ASSERT_THAT(remote, IsOk());

  gmm::GmmSpec spec;
  spec.k = 2;
  FitOptions options;
  options.seed = 9;
  options.n_init = 3;
  options.tol = 1e-6;
  absl::StatusOr<gmm::GmmFitResult> local = gmm::Fit(Dataset{x, {}}, spec, options);
  ASSERT_THAT(local, IsOk());

  v1::FitResult want;
  ToProto(local->params, want.mutable_model()->mutable_gmm());
  EXPECT_EQ(remote->model().SerializeAsString(), want.model().SerializeAsString());
  EXPECT_EQ(remote->summary().log_likelihood(), local->summary.log_likelihood);
  EXPECT_EQ(remote->summary().iterations(), static_cast<uint32_t>(local->summary.iterations));
  EXPECT_EQ(remote->summary().restarts_size(), 3);
  EXPECT_TRUE(remote->summary().converged());
  EXPECT_EQ(remote->summary().reason(), v1::TERMINATION_REASON_CONVERGED);

  // Accepted first, then iterations, then the result.
  ASSERT_GE(events.size(), 3u);
  EXPECT_TRUE(events.front().has_accepted());
  EXPECT_TRUE(events.back().has_result());
  int iterations = 0;
  for (const auto& e : events) iterations += e.has_iteration();
  int want_iterations = 0;
  for (const auto& r : local->summary.restarts) want_iterations += r.history.size();
  EXPECT_EQ(iterations, want_iterations);
}

TEST_F(FitServiceTest, EveryCovarianceTypeRoundTrips) {
  const RowMatrix x = Faithful();
  for (auto type : {v1::COVARIANCE_TYPE_FULL, v1::COVARIANCE_TYPE_DIAG, v1::COVARIANCE_TYPE_TIED,
                    v1::COVARIANCE_TYPE_SPHERICAL}) {
    v1::FitHeader header = GmmHeader(x, 3);
    header.mutable_spec()->mutable_gmm()->set_covariance_type(type);
    absl::StatusOr<v1::FitResult> r = client_->Fit(header, Values(x));
    ASSERT_THAT(r, IsOk()) << v1::CovarianceType_Name(type);
    absl::StatusOr<gmm::GmmParams> params = FromProto(r->model().gmm(), "model.gmm");
    ASSERT_THAT(params, IsOk());
    absl::StatusOr<gmm::ScoreResult> score = gmm::Score(*params, Dataset{x, {}});
    ASSERT_THAT(score, IsOk());
    EXPECT_NEAR(score->log_likelihood, r->summary().log_likelihood(), 1e-8);
  }
}

TEST_F(FitServiceTest, BadInputIsInvalidArgumentNamingTheField) {
  const RowMatrix x = Faithful();
  const std::vector<double> values = Values(x);
  v1::FitHeader header = GmmHeader(x, 0);
  EXPECT_THAT(client_->Fit(header, values),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.gmm.k"));

  header = GmmHeader(x, 300);
  EXPECT_THAT(client_->Fit(header, values),
              StatusIs(absl::StatusCode::kInvalidArgument, "number of rows (272), got 300"));

  header = GmmHeader(x, 2);
  header.clear_spec();
  EXPECT_THAT(client_->Fit(header, values),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.family"));

  header = GmmHeader(x, 2);
  EXPECT_THAT(client_->Fit(header, absl::MakeSpan(values).subspan(0, 100)),
              StatusIs(absl::StatusCode::kInvalidArgument, "received 100"));

  std::vector<double> too_many = values;
  too_many.push_back(1.0);
  EXPECT_THAT(client_->Fit(header, too_many),
              StatusIs(absl::StatusCode::kInvalidArgument, "more values than the header's shape"));

  std::vector<double> with_nan = values;
  with_nan[7] = std::numeric_limits<double>::infinity();
  EXPECT_THAT(client_->Fit(header, with_nan),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 4, column 2"));

  header.mutable_options()->set_tol(-1);
  EXPECT_THAT(client_->Fit(header, values),
              StatusIs(absl::StatusCode::kInvalidArgument, "options.tol"));

  header = GmmHeader(x, 2);
  header.mutable_spec()->mutable_gmm()->set_reg_covar(-0.5);
  EXPECT_THAT(client_->Fit(header, values),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.gmm.reg_covar"));

  header = GmmHeader(x, 2);
  header.mutable_shape()->set_cols(0);
  EXPECT_THAT(client_->Fit(header, values),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.shape"));
  EXPECT_TRUE(WaitIdle());
}

TEST_F(FitServiceTest, ChunkBeforeHeaderIsInvalidArgument) {
  auto stub = v1::EmFitService::NewStub(
      FitClient::Connect(absl::StrFormat("127.0.0.1:%d", server_->port())));
  grpc::ClientContext context;
  auto stream = stub->Fit(&context);
  v1::FitRequest request;
  request.mutable_chunk()->add_values(1.0);
  stream->Write(request);
  stream->WritesDone();
  v1::FitEvent event;
  while (stream->Read(&event)) {
  }
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("first message must be a header"));
}

TEST_F(FitServiceTest, LimitsAreResourceExhaustedNamingTheLimit) {
  ServiceLimits limits;
  limits.max_rows = 100;
  limits.max_k = 5;
  server_->Shutdown();
  StartServer(1, 1, limits);
  const RowMatrix x = Faithful();
  EXPECT_THAT(client_->Fit(GmmHeader(x, 2), Values(x)),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_rows"));
  const RowMatrix small = x.topRows(50);
  EXPECT_THAT(client_->Fit(GmmHeader(small, 6), Values(small)),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_k"));
  EXPECT_THAT(client_->Fit(GmmHeader(small, -1 /* 4294967295 on the wire */), Values(small)),
              StatusIs(absl::StatusCode::kResourceExhausted, "got 4294967295"));
  EXPECT_THAT(client_->Fit(GmmHeader(small, 2), Values(small)), IsOk());
  // k and d within their limits, but too large a model together.
  limits.max_rows = 10000;
  limits.max_model_values = 15;  // k=3, d=2, full: 17 free parameters
  server_->Shutdown();
  StartServer(1, 1, limits);
  EXPECT_THAT(client_->Fit(GmmHeader(small, 3), Values(small)),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_model_values"));
}

TEST_F(FitServiceTest, ClientCancellationStopsTheFitWithinAnIteration) {
  LongFit fit;
  grpc::ClientContext context;
  CallOptions call;
  call.context = &context;
  std::atomic<int> seen{0};
  absl::StatusOr<v1::FitResult> r = client_->Fit(
      fit.header, Values(fit.x),
      [&](const v1::FitEvent& e) {
        if (e.has_iteration() && ++seen == 3) context.TryCancel();
      },
      call);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kCancelled, ""));
  EXPECT_TRUE(WaitIdle(absl::Seconds(5)));
}

TEST_F(FitServiceTest, DeadlineIsHonoured) {
  // A fit that would run for hours ends with the call's deadline, and frees its worker.
  LongFit fit;
  CallOptions call;
  call.timeout = absl::Milliseconds(300);
  EXPECT_THAT(client_->Fit(fit.header, Values(fit.x), nullptr, call),
              StatusIs(absl::StatusCode::kDeadlineExceeded, ""));
  EXPECT_TRUE(WaitIdle(absl::Seconds(5)));
}

TEST_F(FitServiceTest, FullQueueIsResourceExhausted) {
  server_->Shutdown();
  StartServer(/*workers=*/1, /*queue=*/1);
  LongFit fit;
  // Two long fits: one runs, one waits.
  grpc::ClientContext running_ctx, waiting_ctx;
  absl::Notification waiting, heartbeat;
  std::thread t1 = StartRunningFit(fit, &running_ctx);
  std::thread t2 = StartFit(fit, &waiting_ctx, [&](const v1::FitEvent& e) {
    if (e.has_accepted()) {
      EXPECT_EQ(e.accepted().queue_position(), 1u);  // next in line behind the running fit
      waiting.Notify();
    }
    if (e.has_heartbeat() && !heartbeat.HasBeenNotified()) {
      EXPECT_EQ(e.heartbeat().queue_position(), 1u);
      heartbeat.Notify();
    }
  });
  ASSERT_TRUE(waiting.WaitForNotificationWithTimeout(absl::Seconds(30)));
  const RowMatrix x = Faithful();
  EXPECT_THAT(client_->Fit(GmmHeader(x, 2), Values(x)),
              StatusIs(absl::StatusCode::kResourceExhausted, "queue is full"));
  // The waiting fit hears from the server while it waits.
  EXPECT_TRUE(heartbeat.WaitForNotificationWithTimeout(absl::Seconds(10)));
  running_ctx.TryCancel();
  waiting_ctx.TryCancel();
  t1.join();
  t2.join();
  EXPECT_TRUE(WaitIdle());
  // The server is unharmed.
  EXPECT_THAT(client_->Fit(GmmHeader(x, 2), Values(x)), IsOk());
}

TEST_F(FitServiceTest, ACancelledQueuedFitReleasesItsDataAtOnce) {
  server_->Shutdown();
  StartServer(/*workers=*/1, /*queue=*/4);
  LongFit fit;
  grpc::ClientContext running_ctx, waiting_ctx;
  absl::Notification waiting;
  std::thread t1 = StartRunningFit(fit, &running_ctx);
  // Held while the fit runs: its data and its working memory.
  const uint64_t one = server_->service().inflight_bytes();
  EXPECT_GT(one, static_cast<uint64_t>(fit.x.size()) * sizeof(double));
  std::thread t2 = StartFit(fit, &waiting_ctx, [&](const v1::FitEvent& e) {
    if (e.has_accepted()) waiting.Notify();
  });
  ASSERT_TRUE(waiting.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(server_->service().inflight_bytes(), 2 * one);
  EXPECT_EQ(server_->queue().queued(), 1);
  waiting_ctx.TryCancel();
  t2.join();
  // The queued job's data and budget are released now, not when the worker is free.
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (server_->service().inflight_bytes() != one && absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->service().inflight_bytes(), one);
  running_ctx.TryCancel();
  t1.join();
  EXPECT_TRUE(WaitIdle());
  EXPECT_EQ(server_->service().inflight_bytes(), 0u);
}

// A spherical mixture of k=2 fitted to `blocks` x 32,768 rows: its posteriors are `blocks`
// responses of 32,768 rows (800 KiB each).
struct ManyPosteriorBlocks {
  ManyPosteriorBlocks(FitClient* client, int blocks)
      : x(testing::SampleMixture(testing::SpreadMeans(2, 2, 10.0, 3), 1.0, blocks * 32768, 3)) {
    v1::FitHeader h = GmmHeader(x, 2);
    h.mutable_options()->set_max_iter(1);
    h.mutable_spec()->mutable_gmm()->set_covariance_type(v1::COVARIANCE_TYPE_SPHERICAL);
    fit = client->Fit(h, Values(x));
  }
  // A Posterior call on a channel of its own whose transport holds at most its initial
  // flow-control window (64 KiB) unread: BDP probing, on by default, can grow a client's window
  // to several MB on loopback, and a reader must first get through what its transport holds
  // (docs/operations.md, "Slow readers"). Sends all the data.
  std::unique_ptr<grpc::ClientReaderWriter<v1::PosteriorRequest, v1::PosteriorResponse>> Start(
      int port, grpc::ClientContext* context) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    stub = v1::EmFitService::NewStub(grpc::CreateCustomChannel(
        absl::StrFormat("127.0.0.1:%d", port), grpc::InsecureChannelCredentials(), args));
    auto stream = stub->Posterior(context);
    v1::PosteriorRequest request;
    *request.mutable_header()->mutable_model() = fit->model();
    request.mutable_header()->mutable_shape()->set_rows(x.rows());
    request.mutable_header()->mutable_shape()->set_cols(x.cols());
    EXPECT_TRUE(stream->Write(request));
    const std::vector<double> values = Values(x);
    for (size_t begin = 0; begin < values.size(); begin += 32768) {
      request.Clear();
      const size_t n = std::min<size_t>(32768, values.size() - begin);
      request.mutable_chunk()->mutable_values()->Assign(values.begin() + begin,
                                                        values.begin() + begin + n);
      EXPECT_TRUE(stream->Write(request));
    }
    stream->WritesDone();
    return stream;
  }
  RowMatrix x;
  absl::StatusOr<v1::FitResult> fit;
  std::unique_ptr<v1::EmFitService::Stub> stub;
};

TEST_F(FitServiceTest, APosteriorReaderThatStopsReadingIsCutOffAndFreesTheWorker) {
  ServiceLimits limits;
  limits.max_stall = absl::Milliseconds(300);
  server_->Shutdown();
  StartServer(/*workers=*/1, /*queue=*/4, limits);
  ManyPosteriorBlocks blocks(client_.get(), 25);
  ASSERT_THAT(blocks.fit, IsOk());
  grpc::ClientContext context;
  auto stream = blocks.Start(server_->port(), &context);
  // Read nothing: the job starts, gives up after max_stall and frees the only worker, which
  // then serves another call.
  ASSERT_TRUE(WaitFor([&] { return server_->queue().running() == 1; }));
  EXPECT_TRUE(WaitIdle(absl::Seconds(10)));
  const RowMatrix small = Faithful();
  CallOptions call;
  call.timeout = absl::Seconds(10);
  EXPECT_THAT(client_->Fit(GmmHeader(small, 2), Values(small), nullptr, call), IsOk());
  // The reader, reading now, gets what was sent before the cut, then DEADLINE_EXCEEDED.
  v1::PosteriorResponse response;
  uint64_t rows = 0;
  while (stream->Read(&response)) rows += response.responsibilities().rows();
  EXPECT_LT(rows, static_cast<uint64_t>(blocks.x.rows()));
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("--max_stall"));
}

TEST_F(FitServiceTest, APosteriorReaderThatReadsSlowlyButSteadilyIsNotCutOff) {
  ServiceLimits limits;
  limits.max_stall = absl::Milliseconds(1500);
  server_->Shutdown();
  StartServer(/*workers=*/1, /*queue=*/4, limits);
  ManyPosteriorBlocks blocks(client_.get(), 25);
  ASSERT_THAT(blocks.fit, IsOk());
  grpc::ClientContext context;
  auto stream = blocks.Start(server_->port(), &context);
  // One response every 100 ms, far below max_stall (which leaves room for a loaded machine's
  // scheduling): a slow reader, never a stalled one.
  v1::PosteriorResponse response;
  uint64_t rows = 0;
  int responses = 0;
  while (stream->Read(&response)) {
    EXPECT_EQ(response.first_row(), rows);
    rows += response.responsibilities().rows();
    ++responses;
    absl::SleepFor(absl::Milliseconds(100));
  }
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  EXPECT_EQ(rows, static_cast<uint64_t>(blocks.x.rows()));
  EXPECT_EQ(responses, 25);
}

TEST_F(FitServiceTest, ShutdownCancelsRunningFitsAfterTheGracePeriod) {
  LongFit fit;
  absl::Notification running;
  absl::Status status;
  std::thread t([&] {
    status = client_
                 ->Fit(fit.header, Values(fit.x),
                       [&](const v1::FitEvent& e) {
                         if (e.has_iteration() && !running.HasBeenNotified()) running.Notify();
                       })
                 .status();
  });
  ASSERT_TRUE(running.WaitForNotificationWithTimeout(absl::Seconds(30)));
  server_->Shutdown();  // grace 1 s: the fit runs on, then its call is ended
  t.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(status.message(),
            "the server is shutting down: the call was cancelled after the grace period "
            "(--shutdown_grace=1s)");
}

v1::PosteriorHeader PosteriorHeaderFor(const v1::FitResult& fit, const RowMatrix& x) {
  v1::PosteriorHeader h;
  *h.mutable_model() = fit.model();
  h.mutable_shape()->set_rows(x.rows());
  h.mutable_shape()->set_cols(x.cols());
  return h;
}

TEST_F(FitServiceTest, PosteriorMatchesTheCoreEStepInRowOrder) {
  const RowMatrix x = Faithful();
  absl::StatusOr<v1::FitResult> fit = client_->Fit(GmmHeader(x, 2), Values(x));
  ASSERT_THAT(fit, IsOk());
  absl::StatusOr<gmm::GmmParams> params = FromProto(fit->model().gmm(), "model");
  ASSERT_THAT(params, IsOk());
  absl::StatusOr<gmm::Posteriors> want = gmm::ComputePosteriors(*params, x);
  ASSERT_THAT(want, IsOk());
  uint64_t next_row = 0;
  CallOptions call;
  call.chunk_values = 37;
  ASSERT_THAT(client_->Posterior(
                  PosteriorHeaderFor(*fit, x), Values(x),
                  [&](const v1::PosteriorResponse& r) {
                    EXPECT_EQ(r.first_row(), next_row);
                    const uint32_t rows = r.responsibilities().rows();
                    ASSERT_EQ(r.log_likelihood_size(), static_cast<int>(rows));
                    for (uint32_t i = 0; i < rows; ++i) {
                      const Eigen::Index row = static_cast<Eigen::Index>(next_row + i);
                      double sum = 0;
                      for (uint32_t c = 0; c < 2; ++c) {
                        const double v = r.responsibilities().values(i * 2 + c);
                        EXPECT_DOUBLE_EQ(v, want->responsibilities(row, c));
                        sum += v;
                      }
                      EXPECT_NEAR(sum, 1.0, 1e-12);
                      EXPECT_DOUBLE_EQ(r.log_likelihood(i), want->log_likelihood[row]);
                      EXPECT_EQ(r.labels(i), static_cast<uint32_t>(want->labels[row]));
                    }
                    next_row += rows;
                  },
                  call),
              IsOk());
  EXPECT_EQ(next_row, static_cast<uint64_t>(x.rows()));
}

TEST_F(FitServiceTest, ScoreEqualsTheFitLogLikelihoodAndHandlesMissingValues) {
  const RowMatrix x = Faithful();
  absl::StatusOr<v1::FitResult> fit = client_->Fit(GmmHeader(x, 2), Values(x));
  ASSERT_THAT(fit, IsOk());
  absl::StatusOr<v1::ScoreResponse> score = client_->Score(PosteriorHeaderFor(*fit, x), Values(x));
  ASSERT_THAT(score, IsOk());
  EXPECT_NEAR(score->log_likelihood(), fit->summary().log_likelihood(), 1e-8);
  EXPECT_NEAR(score->bic(), fit->summary().bic(), 1e-8);
  EXPECT_EQ(score->rows(), 272u);
  std::vector<double> with_nan = Values(x);
  with_nan[1] = std::numeric_limits<double>::quiet_NaN();  // row 0, waiting
  absl::StatusOr<v1::ScoreResponse> partial = client_->Score(PosteriorHeaderFor(*fit, x), with_nan);
  ASSERT_THAT(partial, IsOk());
  EXPECT_TRUE(std::isfinite(partial->log_likelihood()));
  EXPECT_GT(partial->log_likelihood(), score->log_likelihood());  // one density is marginal
}

TEST_F(FitServiceTest, PosteriorRejectsAModelOfAnotherDimension) {
  const RowMatrix x = Faithful();
  absl::StatusOr<v1::FitResult> fit = client_->Fit(GmmHeader(x, 2), Values(x));
  ASSERT_THAT(fit, IsOk());
  v1::PosteriorHeader header = PosteriorHeaderFor(*fit, x);
  header.mutable_shape()->set_cols(3);
  EXPECT_THAT(client_->Posterior(header, Values(x), [](const v1::PosteriorResponse&) {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.shape.cols"));
  header.clear_model();
  EXPECT_THAT(client_->Score(header, Values(x)),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.model"));
}

TEST_F(FitServiceTest, ModelsRecordColumnNamesAndDataWithOtherNamesAreRefused) {
  const RowMatrix x = Faithful();
  v1::FitHeader header = GmmHeader(x, 2);
  header.mutable_shape()->add_column_names("eruptions");
  header.mutable_shape()->add_column_names("waiting");
  absl::StatusOr<v1::FitResult> fit = client_->Fit(header, Values(x));
  ASSERT_THAT(fit, IsOk());
  EXPECT_THAT(fit->model().feature_names(), ::testing::ElementsAre("eruptions", "waiting"));

  // The same columns the other way round (as in data/geyser.csv): refused, naming both lists.
  RowMatrix swapped(x.rows(), 2);
  swapped.col(0) = x.col(1);
  swapped.col(1) = x.col(0);
  v1::PosteriorHeader score = PosteriorHeaderFor(*fit, swapped);
  score.mutable_shape()->add_column_names("waiting");
  score.mutable_shape()->add_column_names("eruptions");
  const std::string both =
      "fitted to the columns [eruptions, waiting], the data have the "
      "columns [waiting, eruptions]";
  EXPECT_THAT(client_->Score(score, Values(swapped)),
              StatusIs(absl::StatusCode::kInvalidArgument, both));
  EXPECT_THAT(client_->Posterior(score, Values(swapped), [](const v1::PosteriorResponse&) {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.model.feature_names"));
  // Asked for explicitly, the model is used anyway; data without names are not checked.
  score.set_ignore_feature_names(true);
  EXPECT_THAT(client_->Score(score, Values(swapped)), IsOk());
  score.set_ignore_feature_names(false);
  score.mutable_shape()->clear_column_names();
  EXPECT_THAT(client_->Score(score, Values(swapped)), IsOk());

  // A warm start is checked the same way.
  v1::FitHeader warm = GmmHeader(swapped, 2);
  warm.mutable_shape()->add_column_names("waiting");
  warm.mutable_shape()->add_column_names("eruptions");
  *warm.mutable_init() = fit->model();
  EXPECT_THAT(client_->Fit(warm, Values(swapped)),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.init.feature_names"));
}

TEST_F(FitServiceTest, SelectModelFitsTheGridAndPicksTheLowestBic) {
  const RowMatrix x = Faithful();
  v1::SelectModelHeader header;
  for (uint32_t k = 1; k <= 4; ++k) header.add_k(k);
  header.add_covariance_types(v1::COVARIANCE_TYPE_FULL);
  header.add_covariance_types(v1::COVARIANCE_TYPE_DIAG);
  header.mutable_shape()->set_rows(x.rows());
  header.mutable_shape()->set_cols(x.cols());
  header.mutable_options()->set_seed(5);
  header.mutable_options()->set_n_init(2);
  int done = 0;
  std::set<uint32_t> tagged;
  absl::StatusOr<v1::SelectionResult> result =
      client_->SelectModel(header, Values(x), [&](const v1::SelectModelEvent& e) {
        if (e.has_candidate_done()) ++done;
        if (e.has_iteration()) tagged.insert(e.iteration().candidate());
      });
  ASSERT_THAT(result, IsOk());
  ASSERT_EQ(result->candidates_size(), 8);
  EXPECT_EQ(done, 8);
  EXPECT_GT(tagged.size(), 1u);
  // The same fits in core give the same table and the same winner.
  double best_bic = std::numeric_limits<double>::infinity();
  int best = -1;
  for (int i = 0; i < 8; ++i) {
    const v1::Candidate& c = result->candidates(i);
    EXPECT_EQ(c.index(), static_cast<uint32_t>(i));
    EXPECT_EQ(c.k(), static_cast<uint32_t>(i / 2 + 1));
    gmm::GmmSpec spec;
    spec.k = static_cast<int>(c.k());
    spec.covariance_type = i % 2 == 0 ? gmm::CovarianceType::kFull : gmm::CovarianceType::kDiag;
    FitOptions options;
    options.seed = 5;
    options.n_init = 2;
    absl::StatusOr<gmm::GmmFitResult> local = gmm::Fit(Dataset{x, {}}, spec, options);
    ASSERT_THAT(local, IsOk());
    EXPECT_DOUBLE_EQ(c.summary().bic(), local->summary.bic) << "candidate " << i;
    if (local->summary.bic < best_bic) best_bic = local->summary.bic, best = i;
  }
  EXPECT_EQ(result->best(), static_cast<uint32_t>(best));
  EXPECT_EQ(result->best_fit().model().gmm().means().rows(), result->candidates(best).k());
  EXPECT_DOUBLE_EQ(result->best_fit().summary().bic(), best_bic);
}

TEST_F(FitServiceTest, WeightColumnEqualsRowRepetition) {
  const RowMatrix x = Faithful();
  std::vector<double> weighted;
  std::vector<double> repeated;
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    const int w = 1 + static_cast<int>(i % 3);
    weighted.insert(weighted.end(), {x(i, 0), x(i, 1), static_cast<double>(w)});
    for (int r = 0; r < w; ++r) repeated.insert(repeated.end(), {x(i, 0), x(i, 1)});
  }
  v1::FitHeader header = GmmHeader(x, 2);
  header.mutable_shape()->set_weight_column(true);
  header.mutable_options()->set_tol(1e-10);
  header.mutable_options()->set_max_iter(2000);
  absl::StatusOr<v1::FitResult> a = client_->Fit(header, weighted);
  header.mutable_shape()->set_weight_column(false);
  header.mutable_shape()->set_rows(repeated.size() / 2);
  absl::StatusOr<v1::FitResult> b = client_->Fit(header, repeated);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NEAR(a->summary().log_likelihood(), b->summary().log_likelihood(), 1e-6);
  EXPECT_NEAR(a->summary().bic(), b->summary().bic(), 1e-6);
  EXPECT_EQ(a->summary().rows_used(), 272u);
  // A negative weight is refused, naming the row.
  weighted[5] = -1;  // row 1's weight
  header.mutable_shape()->set_weight_column(true);
  header.mutable_shape()->set_rows(272);
  EXPECT_THAT(client_->Fit(header, weighted),
              StatusIs(absl::StatusCode::kInvalidArgument, "weight of row 2"));
}

TEST_F(FitServiceTest, WarmStartFromAResultAndFixedMeans) {
  const RowMatrix x = Faithful();
  v1::FitHeader header = GmmHeader(x, 2);
  header.mutable_options()->set_tol(1e-8);
  header.mutable_options()->set_max_iter(1000);
  absl::StatusOr<v1::FitResult> first = client_->Fit(header, Values(x));
  ASSERT_THAT(first, IsOk());
  *header.mutable_init() = first->model();
  header.mutable_options()->set_n_init(5);
  absl::StatusOr<v1::FitResult> again = client_->Fit(header, Values(x));
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->summary().restarts_size(), 1);  // a warm start runs once
  EXPECT_LE(again->summary().iterations(), 2u);
  EXPECT_GE(again->summary().log_likelihood(), first->summary().log_likelihood() - 1e-9);

  // Known means: start at (2, 55) and (4.3, 80) and keep them.
  v1::Model start = first->model();
  const std::vector<double> means = {2.0, 55.0, 4.3, 80.0};
  start.mutable_gmm()->mutable_means()->mutable_values()->Assign(means.begin(), means.end());
  *header.mutable_init() = start;
  header.mutable_spec()->mutable_gmm()->set_fix_means(true);
  absl::StatusOr<v1::FitResult> fixed = client_->Fit(header, Values(x));
  ASSERT_THAT(fixed, IsOk());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(fixed->model().gmm().means().values(i), means[i]);
  }
  const auto& h = fixed->summary().history();
  for (int t = 1; t < h.size(); ++t) EXPECT_GE(h[t], h[t - 1] - 1e-9);
  EXPECT_LT(fixed->summary().log_likelihood(), first->summary().log_likelihood());

  // Fixed parameters without a start, or a start of another shape, are refused.
  header.clear_init();
  EXPECT_THAT(client_->Fit(header, Values(x)),
              StatusIs(absl::StatusCode::kInvalidArgument, "needs starting parameters (init)"));
  *header.mutable_init() = first->model();
  header.mutable_spec()->mutable_gmm()->set_k(3);
  EXPECT_THAT(client_->Fit(header, Values(x)),
              StatusIs(absl::StatusCode::kInvalidArgument, "init.gmm: the starting model has k=2"));
}

TEST_F(FitServiceTest, CollapsedComponentsAreReportedAsWarningEvents) {
  // Three point masses, repeated: every covariance collapses onto reg_covar.
  RowMatrix x(10, 2);
  x << 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 10, 0, 10, 0, 0, 10, 0, 10;
  std::vector<v1::Warning> warnings;
  absl::StatusOr<v1::FitResult> fit =
      client_->Fit(GmmHeader(x, 3), Values(x), [&](const v1::FitEvent& e) {
        if (e.has_warning()) warnings.push_back(e.warning());
      });
  ASSERT_THAT(fit, IsOk());
  ASSERT_EQ(warnings.size(), 3u);  // once per component, not once per iteration
  for (const v1::Warning& w : warnings) {
    EXPECT_EQ(w.code(), "collapsed_covariance");
    EXPECT_THAT(w.message(), ::testing::HasSubstr("reg_covar"));
  }
  EXPECT_TRUE(std::isfinite(fit->summary().log_likelihood()));
}

TEST_F(FitServiceTest, MissingValuesAreFittedAndReported) {
  const RowMatrix x = Faithful();
  std::vector<double> values = Values(x);
  for (size_t i = 0; i < values.size(); i += 7)
    values[i] = std::numeric_limits<double>::quiet_NaN();
  values[10] = values[11] = std::numeric_limits<double>::quiet_NaN();  // row 5: all missing
  absl::StatusOr<v1::FitResult> fit = client_->Fit(GmmHeader(x, 2), values);
  ASSERT_THAT(fit, IsOk());
  EXPECT_EQ(fit->summary().rows_skipped(), 1u);
  EXPECT_EQ(fit->summary().rows_used(), 271u);
  EXPECT_TRUE(std::isfinite(fit->summary().log_likelihood()));
}

// ---- Mk models ----

// An Mk request's streams: the tree, the tip labels and their likelihood rows (row-major).
struct MkRequest {
  std::string newick;
  std::vector<std::string> labels;
  std::vector<double> values;
  int k = 0;

  v1::DataShape Shape() const {
    v1::DataShape shape;
    shape.set_rows(labels.size());
    shape.set_cols(k);
    shape.set_newick_bytes(newick.size());
    shape.set_row_names(true);
    return shape;
  }
  client::RequestData View() const {
    client::RequestData data(values);
    data.newick = newick;
    data.row_names = labels;
    return data;
  }
};

MkRequest AnolesRequest(const testing::Anoles& a) {
  MkRequest r;
  r.newick = a.newick;
  r.labels = a.labels;
  r.k = static_cast<int>(a.states.size());
  for (size_t i = 0; i < a.labels.size(); ++i) {
    for (int j = 0; j < r.k; ++j) r.values.push_back(a.tips.likelihoods(i, j));
  }
  return r;
}

v1::FitHeader MkFitHeader(const testing::Anoles& a, v1::RateModel rates, const MkRequest& request) {
  v1::FitHeader h;
  v1::MkSpec* spec = h.mutable_spec()->mutable_mk();
  spec->mutable_state_names()->Assign(a.states.begin(), a.states.end());
  spec->set_rate_model(rates);
  *h.mutable_shape() = request.Shape();
  return h;
}

// The direct core fit of the service's defaults for Mk (tol 1e-10, max_iter 1000).
FitOptions MkDefaults() {
  FitOptions options;
  options.tol = 1e-10;
  options.max_iter = 1000;
  return options;
}

mk::MkSpec CoreSpec(const testing::Anoles& a, mk::RateModel rates) {
  mk::MkSpec spec;
  spec.state_names = a.states;
  spec.rates = rates;
  return spec;
}

TEST_F(FitServiceTest, MkFitEqualsTheDirectCoreFitWithTheTreeSummary) {
  const testing::Anoles a = testing::LoadAnoles();
  const MkRequest request = AnolesRequest(a);
  std::vector<v1::FitEvent> events;
  CallOptions call;
  call.chunk_values = 13;  // chunks that split rows, labels and the Newick text
  absl::StatusOr<v1::FitResult> remote = client_->Fit(
      MkFitHeader(a, v1::RATE_MODEL_ARD, request), request.View(),
      [&](const v1::FitEvent& e) { events.push_back(e); }, call);
  ASSERT_THAT(remote, IsOk());
  absl::StatusOr<mk::MkFitResult> local =
      mk::Fit(a.tree, a.tips, CoreSpec(a, mk::RateModel::kARD), MkDefaults());
  ASSERT_THAT(local, IsOk());

  v1::Model want;
  ToProto(local->params, want.mutable_mk());
  EXPECT_EQ(remote->model().mk().SerializeAsString(), want.mk().SerializeAsString());
  EXPECT_EQ(remote->summary().log_likelihood(), local->summary.log_likelihood);
  EXPECT_EQ(remote->summary().iterations(), static_cast<uint32_t>(local->summary.iterations));
  EXPECT_EQ(remote->summary().reason(), v1::TERMINATION_REASON_CONVERGED);
  EXPECT_EQ(remote->summary().num_free_parameters(), 30u);
  EXPECT_EQ(remote->summary().rows_used(), 82u);
  // phytools::fitMk's maximum (tests/fixtures/phytools_anoles.json), as the core test finds.
  EXPECT_NEAR(remote->summary().log_likelihood(), -67.393731694445037, 1e-7);

  // The tree summary: the core's posteriors in the core's node order.
  const v1::MkFitResult& mk = remote->mk();
  const v1::MkTreeSummary& tree = mk.tree();
  const int nodes = a.tree.num_nodes();
  EXPECT_EQ(tree.num_tips(), 82u);
  ASSERT_EQ(tree.node_labels_size(), nodes);
  ASSERT_EQ(tree.node_probabilities().rows(), static_cast<uint32_t>(nodes));
  ASSERT_EQ(tree.node_probabilities().cols(), 6u);
  for (int v = 0; v < nodes; ++v) {
    EXPECT_EQ(tree.node_labels(v), a.tree.labels[v]);
    EXPECT_EQ(tree.parents(v), a.tree.parent[v]);
    if (v != a.tree.root()) {
      EXPECT_EQ(tree.branch_lengths(v), a.tree.length[v]);
    }
    for (int j = 0; j < 6; ++j) {
      EXPECT_EQ(tree.node_probabilities().values(v * 6 + j), local->posteriors.nodes(v, j));
    }
  }
  double total_time = 0;
  for (double t : tree.expected_times()) total_time += t;
  EXPECT_NEAR(total_time, a.tree.TotalLength(), 1e-9);
  EXPECT_EQ(tree.expected_transitions().rows(), 6u);
  const Eigen::VectorXd rates = local->params.Rates();
  ASSERT_EQ(mk.rates_size(), 30);
  for (int p = 0; p < 30; ++p) EXPECT_EQ(mk.rates(p), rates[p]);
  EXPECT_EQ(mk.rate_standard_errors_size(), 0);  // exact EM

  // Accepted, the iterations of the core fit, the result.
  ASSERT_GE(events.size(), 3u);
  EXPECT_TRUE(events.front().has_accepted());
  EXPECT_TRUE(events.back().has_result());
  int iterations = 0;
  for (const auto& e : events) iterations += e.has_iteration();
  EXPECT_EQ(iterations, static_cast<int>(local->summary.history.size()));
}

TEST_F(FitServiceTest, MkMonteCarloFitStreamsItsSampleSizesAndEqualsTheCoreFit) {
  const testing::Anoles a = testing::LoadAnoles();
  const MkRequest request = AnolesRequest(a);
  v1::FitHeader header = MkFitHeader(a, v1::RATE_MODEL_SYM, request);
  header.mutable_spec()->mutable_mk()->set_estep(v1::E_STEP_METHOD_MONTE_CARLO);
  header.mutable_options()->set_seed(4);
  std::vector<v1::Iteration> iterations;
  absl::StatusOr<v1::FitResult> remote =
      client_->Fit(header, request.View(), [&](const v1::FitEvent& e) {
        if (e.has_iteration()) iterations.push_back(e.iteration());
      });
  ASSERT_THAT(remote, IsOk());
  mk::MkSpec spec = CoreSpec(a, mk::RateModel::kSYM);
  spec.estep = mk::EStepMethod::kMonteCarlo;
  FitOptions options = MkDefaults();
  options.seed = 4;
  absl::StatusOr<mk::MkFitResult> local = mk::Fit(a.tree, a.tips, spec, options);
  ASSERT_THAT(local, IsOk());
  EXPECT_EQ(remote->summary().log_likelihood(), local->summary.log_likelihood);
  ASSERT_EQ(remote->mk().rate_standard_errors_size(), 15);
  for (int p = 0; p < 15; ++p) {
    EXPECT_EQ(remote->mk().rate_standard_errors(p), local->rate_standard_errors[p]);
  }
  // Every iteration after the start says how many histories it drew; the sizes never shrink.
  ASSERT_GT(iterations.size(), 2u);
  EXPECT_EQ(iterations[0].sample_size(), 0u);
  for (size_t t = 1; t < iterations.size(); ++t) {
    EXPECT_GE(iterations[t].sample_size(), 50u) << "iteration " << t;
    if (t > 1) {
      EXPECT_GE(iterations[t].sample_size(), iterations[t - 1].sample_size());
    }
  }
  // SQUAREM is refused before the data are sent.
  header.mutable_options()->set_acceleration(v1::ACCELERATION_SQUAREM);
  EXPECT_THAT(client_->Fit(header, request.View()),
              StatusIs(absl::StatusCode::kInvalidArgument, "options.acceleration"));
}

TEST_F(FitServiceTest, MkPosteriorEqualsCoreNodePosteriorsInNodeOrder) {
  const testing::Anoles a = testing::LoadAnoles();
  const MkRequest request = AnolesRequest(a);
  absl::StatusOr<v1::FitResult> fit =
      client_->Fit(MkFitHeader(a, v1::RATE_MODEL_SYM, request), request.View());
  ASSERT_THAT(fit, IsOk());
  absl::StatusOr<MkModelPlan> model = FromProto(fit->model().mk(), "model.mk");
  ASSERT_THAT(model, IsOk());
  absl::StatusOr<mk::MkPosteriors> want = mk::NodePosteriors(model->params, a.tree, a.tips);
  ASSERT_THAT(want, IsOk());
  v1::PosteriorHeader header;
  *header.mutable_model() = fit->model();
  *header.mutable_shape() = request.Shape();
  std::vector<v1::PosteriorResponse> blocks;
  ASSERT_THAT(client_->Posterior(header, request.View(),
                                 [&](const v1::PosteriorResponse& r) { blocks.push_back(r); }),
              IsOk());
  ASSERT_EQ(blocks.size(), 1u);  // 163 nodes: one block
  const v1::PosteriorResponse& r = blocks[0];
  EXPECT_EQ(r.first_row(), 0u);
  const int nodes = a.tree.num_nodes();
  ASSERT_EQ(r.responsibilities().rows(), static_cast<uint32_t>(nodes));
  ASSERT_EQ(r.labels_size(), nodes);
  for (int v = 0; v < nodes; ++v) {
    Eigen::Index best = 0;
    want->nodes.row(v).maxCoeff(&best);
    EXPECT_EQ(r.labels(v), static_cast<uint32_t>(best));
    for (int j = 0; j < 6; ++j) {
      EXPECT_EQ(r.responsibilities().values(v * 6 + j), want->nodes(v, j));
    }
    EXPECT_EQ(r.mk().node_labels(v), a.tree.labels[v]);
  }
  EXPECT_EQ(r.mk().log_likelihood(), want->log_likelihood);
  EXPECT_NEAR(r.mk().log_likelihood(), fit->summary().log_likelihood(), 1e-12);
  // The fit's summary is the same E-step.
  for (int i = 0; i < nodes * 6; ++i) {
    EXPECT_EQ(fit->mk().tree().node_probabilities().values(i), r.responsibilities().values(i));
  }
}

TEST_F(FitServiceTest, MkPosteriorOfALargeTreeComesInBlocksOfNodes) {
  // 30,000 tips, 2 states: about 60,000 nodes of ~40 bytes, more than one 1 MiB block.
  const std::string newick = testing::RandomNewick(30000, 7, 0.05, 0.5);
  absl::StatusOr<mk::Tree> tree = mk::ParseNewick(newick);
  ASSERT_THAT(tree, IsOk());
  absl::StatusOr<mk::MkParams> params = mk::MkParams::FromRates(
      {"a", "b"}, mk::RateIndex(mk::RateModel::kER, 2), Eigen::VectorXd::Constant(1, 0.7));
  ASSERT_THAT(params, IsOk());
  const std::vector<int> states =
      testing::SimulateTipStates(*tree, params->q, params->RootDistribution(), 3);
  MkRequest request;
  request.newick = newick;
  request.k = 2;
  mk::MkTips tips;
  tips.likelihoods = Eigen::MatrixXd::Zero(tree->num_tips, 2);
  for (int v = 0; v < tree->num_tips; ++v) {
    request.labels.push_back(tree->labels[v]);
    tips.labels.push_back(tree->labels[v]);
    tips.likelihoods(v, states[v]) = 1;
    request.values.push_back(states[v] == 0 ? 1 : 0);
    request.values.push_back(states[v] == 1 ? 1 : 0);
  }
  absl::StatusOr<mk::MkPosteriors> want = mk::NodePosteriors(*params, *tree, tips);
  ASSERT_THAT(want, IsOk());
  v1::PosteriorHeader header;
  ToProto(*params, header.mutable_model()->mutable_mk());
  *header.mutable_shape() = request.Shape();
  uint64_t next = 0;
  int blocks = 0;
  double log_likelihood = 0;
  ASSERT_THAT(client_->Posterior(header, request.View(),
                                 [&](const v1::PosteriorResponse& r) {
                                   EXPECT_EQ(r.first_row(), next);
                                   const uint32_t rows = r.responsibilities().rows();
                                   EXPECT_EQ(r.mk().node_labels_size(), static_cast<int>(rows));
                                   for (uint32_t i = 0; i < rows; ++i) {
                                     EXPECT_EQ(r.responsibilities().values(2 * i + 1),
                                               want->nodes(next + i, 1));
                                     EXPECT_EQ(r.mk().parents(i), tree->parent[next + i]);
                                   }
                                   next += rows;
                                   ++blocks;
                                   log_likelihood = r.mk().log_likelihood();
                                 }),
              IsOk());
  EXPECT_EQ(next, static_cast<uint64_t>(tree->num_nodes()));
  EXPECT_GT(blocks, 1);
  EXPECT_EQ(log_likelihood, want->log_likelihood);  // in the last block
}

TEST_F(FitServiceTest, MkScoreEqualsTheCoreScore) {
  const testing::Anoles a = testing::LoadAnoles();
  const MkRequest request = AnolesRequest(a);
  absl::StatusOr<v1::FitResult> fit =
      client_->Fit(MkFitHeader(a, v1::RATE_MODEL_ER, request), request.View());
  ASSERT_THAT(fit, IsOk());
  absl::StatusOr<MkModelPlan> model = FromProto(fit->model().mk(), "model.mk");
  ASSERT_THAT(model, IsOk());
  absl::StatusOr<mk::MkScore> want = mk::Score(model->params, a.tree, a.tips);
  ASSERT_THAT(want, IsOk());
  v1::PosteriorHeader header;
  *header.mutable_model() = fit->model();
  *header.mutable_shape() = request.Shape();
  absl::StatusOr<v1::ScoreResponse> score = client_->Score(header, request.View());
  ASSERT_THAT(score, IsOk());
  EXPECT_EQ(score->log_likelihood(), want->log_likelihood);
  EXPECT_EQ(score->aic(), want->aic);
  EXPECT_EQ(score->bic(), want->bic);
  EXPECT_EQ(score->rows(), 82u);
  EXPECT_EQ(score->num_free_parameters(), 1u);
  EXPECT_NEAR(score->aic(), fit->summary().aic(), 1e-9);
}

TEST_F(FitServiceTest, MkSelectModelPicksWhatTheCoreCriteriaPick) {
  const testing::Anoles a = testing::LoadAnoles();
  const MkRequest request = AnolesRequest(a);
  for (v1::Criterion criterion : {v1::CRITERION_BIC, v1::CRITERION_AIC}) {
    v1::SelectModelHeader header;
    header.mutable_spec()->mutable_mk()->mutable_state_names()->Assign(a.states.begin(),
                                                                       a.states.end());
    for (v1::RateModel m : {v1::RATE_MODEL_ER, v1::RATE_MODEL_SYM, v1::RATE_MODEL_ARD}) {
      header.add_rate_models(m);
    }
    *header.mutable_shape() = request.Shape();
    header.set_criterion(criterion);
    absl::StatusOr<v1::SelectionResult> result = client_->SelectModel(header, request.View());
    ASSERT_THAT(result, IsOk());
    ASSERT_EQ(result->candidates_size(), 3);
    double best_score = std::numeric_limits<double>::infinity();
    int best = -1;
    const mk::RateModel models[] = {mk::RateModel::kER, mk::RateModel::kSYM, mk::RateModel::kARD};
    for (int i = 0; i < 3; ++i) {
      const v1::Candidate& c = result->candidates(i);
      EXPECT_EQ(c.k(), 6u);
      EXPECT_EQ(c.spec().mk().rate_model(), static_cast<v1::RateModel>(i + 1));
      absl::StatusOr<mk::MkFitResult> local =
          mk::Fit(a.tree, a.tips, CoreSpec(a, models[i]), MkDefaults());
      ASSERT_THAT(local, IsOk());
      EXPECT_EQ(c.summary().aic(), local->summary.aic) << "candidate " << i;
      EXPECT_EQ(c.summary().bic(), local->summary.bic) << "candidate " << i;
      const double score = criterion == v1::CRITERION_AIC ? local->summary.aic : local->summary.bic;
      if (score < best_score) best_score = score, best = i;
    }
    EXPECT_EQ(result->best(), static_cast<uint32_t>(best));
    EXPECT_TRUE(result->best_fit().has_mk());
  }
}

// One SIMMAP line read back: the plain Newick (each branch's map replaced by the sum of its
// segments), the tips' end states by label, and the map's changes and dwelling times.
struct ReadMap {
  std::string newick;
  std::map<std::string, std::string> tip_states;
  Eigen::MatrixXd transitions;
  Eigen::VectorXd times;
  bool ok = true;
};

ReadMap ReadSimmapLine(const std::string& line, const std::vector<std::string>& states) {
  const int k = static_cast<int>(states.size());
  ReadMap out;
  out.transitions = Eigen::MatrixXd::Zero(k, k);
  out.times = Eigen::VectorXd::Zero(k);
  auto state = [&](const std::string& s) {
    const auto it = std::find(states.begin(), states.end(), s);
    if (it == states.end()) out.ok = false;
    return static_cast<int>(it - states.begin()) % k;
  };
  std::string label;
  bool after_close = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c != ':') {
      out.newick.push_back(c);
      if (c == '(' || c == ',') label.clear(), after_close = false;
      if (c == ')') after_close = true;
      if (c != '(' && c != ',' && c != ')') label.push_back(c);
      continue;
    }
    // ":{s,len:s,len}": segments from the child's end towards the parent.
    const size_t end = line.find('}', i);
    if (line[i + 1] != '{' || end == std::string::npos) {
      out.ok = false;
      return out;
    }
    const std::vector<std::string> segments = absl::StrSplit(line.substr(i + 2, end - i - 2), ':');
    double total = 0;
    int later = -1;
    for (size_t s = 0; s < segments.size(); ++s) {
      const std::vector<std::string> f = absl::StrSplit(segments[s], ',');
      double length = 0;
      if (f.size() != 2 || !absl::SimpleAtod(f[1], &length) || length < 0) out.ok = false;
      const int x = state(f[0]);
      if (s == 0 && !after_close) out.tip_states[label] = f[0];
      if (later >= 0) {
        if (later == x) out.ok = false;  // consecutive segments differ
        out.transitions(x, later) += 1;  // x came first in time
      }
      out.times[x] += length;
      total += length;
      later = x;
    }
    out.newick += absl::StrFormat(":%.17g", total);
    i = end;
  }
  return out;
}

TEST_F(FitServiceTest, SampleHistoriesStreamsMapsThatReadBackAndAddUpWhateverTheThreads) {
  const testing::Anoles a = testing::LoadAnoles();
  const MkRequest request = AnolesRequest(a);
  absl::StatusOr<v1::FitResult> fit =
      client_->Fit(MkFitHeader(a, v1::RATE_MODEL_ER, request), request.View());
  ASSERT_THAT(fit, IsOk());
  v1::SampleHistoriesHeader header;
  *header.mutable_model() = fit->model();
  *header.mutable_shape() = request.Shape();
  header.set_n(300);
  header.set_seed(11);
  auto sample = [&](std::vector<std::string>* lines) {
    uint64_t next = 0;
    absl::StatusOr<v1::HistoriesSummary> summary =
        client_->SampleHistories(header, request.View(), [&](const v1::SampleHistoriesResponse& r) {
          EXPECT_EQ(r.first_history(), next);
          for (const std::string& line : r.simmap()) lines->push_back(line);
          next += r.simmap_size();
        });
    return summary;
  };
  std::vector<std::string> lines;
  absl::StatusOr<v1::HistoriesSummary> summary = sample(&lines);
  ASSERT_THAT(summary, IsOk());
  ASSERT_EQ(lines.size(), 300u);
  EXPECT_EQ(summary->count(), 300u);
  Eigen::MatrixXd transitions = Eigen::MatrixXd::Zero(6, 6);
  Eigen::VectorXd times = Eigen::VectorXd::Zero(6);
  for (size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(absl::StrFormat("map %d", i));
    const ReadMap map = ReadSimmapLine(lines[i], a.states);
    ASSERT_TRUE(map.ok) << lines[i];
    // The maps' times per branch add up to its length: the plain tree is the input's.
    absl::StatusOr<mk::Tree> tree = mk::ParseNewick(map.newick);
    ASSERT_THAT(tree, IsOk());
    ASSERT_EQ(tree->num_nodes(), a.tree.num_nodes());
    for (int v = 0; v < a.tree.num_nodes(); ++v) {
      if (v == a.tree.root()) continue;
      EXPECT_EQ(tree->parent[v], a.tree.parent[v]);
      EXPECT_NEAR(tree->length[v], a.tree.length[v], 1e-12 * std::max(1.0, a.tree.length[v]));
    }
    // Observed tips end in their state.
    for (size_t t = 0; t < a.labels.size(); ++t) {
      EXPECT_EQ(map.tip_states.at(a.labels[t]), a.tip_states[t]);
    }
    transitions += map.transitions;
    times += map.times;
  }
  // The summary is the maps' own.
  for (int i = 0; i < 6; ++i) {
    EXPECT_NEAR(summary->mean_times(i), times[i] / 300, 1e-9);
    for (int j = 0; j < 6; ++j) {
      EXPECT_NEAR(summary->mean_transitions().values(i * 6 + j), transitions(i, j) / 300, 1e-12);
    }
  }
  ASSERT_EQ(summary->node_frequencies().rows(), static_cast<uint32_t>(a.tree.num_nodes()));
  EXPECT_EQ(summary->num_tips(), 82u);

  // The same seed gives the same maps with three compute threads.
  server_->Shutdown();
  StartServer(/*workers=*/2, /*queue=*/4, ServiceLimits{}, /*compute_threads=*/3);
  std::vector<std::string> again;
  ASSERT_THAT(sample(&again), IsOk());
  EXPECT_EQ(again, lines);
  // Another seed, other maps.
  header.set_seed(12);
  std::vector<std::string> other;
  ASSERT_THAT(sample(&other), IsOk());
  EXPECT_NE(other, lines);
}

TEST_F(FitServiceTest, MkBadInputIsInvalidArgumentNamingTheProblemAndWhere) {
  const testing::Anoles a = testing::LoadAnoles();
  const MkRequest good = AnolesRequest(a);
  auto fit_with = [&](const std::string& newick) {
    MkRequest r = good;
    r.newick = newick;
    return client_->Fit(MkFitHeader(a, v1::RATE_MODEL_ER, r), r.View()).status();
  };
  // The tree.
  EXPECT_THAT(fit_with("((ahli:1,allogus:1);"),
              StatusIs(absl::StatusCode::kInvalidArgument, "unbalanced parentheses"));
  EXPECT_THAT(fit_with("(ahli:-1,allogus:1);"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "negative branch length -1 for 'ahli' at byte 6"));
  EXPECT_THAT(fit_with("(ahli,allogus:1);"),
              StatusIs(absl::StatusCode::kInvalidArgument, "missing branch length for 'ahli'"));
  EXPECT_THAT(fit_with("(ahli:x,allogus:1);"),
              StatusIs(absl::StatusCode::kInvalidArgument, "non-numeric branch length 'x'"));
  EXPECT_THAT(fit_with("(ahli:1,ahli:1);"),
              StatusIs(absl::StatusCode::kInvalidArgument, "duplicate tip label 'ahli'"));
  EXPECT_THAT(fit_with("(ahli:1);"),
              StatusIs(absl::StatusCode::kInvalidArgument, "the tree has 1 tip"));
  // The tips: a row that allows no state, rows and tips that do not match.
  MkRequest r = good;
  for (int j = 0; j < 6; ++j) r.values[6 * 4 + j] = 0;
  EXPECT_THAT(client_->Fit(MkFitHeader(a, v1::RATE_MODEL_ER, r), r.View()),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 5 ('sagrei') allows no state"));
  r = good;
  r.labels[3] = "not_a_tip";
  EXPECT_THAT(client_->Fit(MkFitHeader(a, v1::RATE_MODEL_ER, r), r.View()),
              StatusIs(absl::StatusCode::kInvalidArgument, "imias"));
  // The spec: an index matrix that is not square or has negative entries, a state twice.
  v1::FitHeader header = MkFitHeader(a, v1::RATE_MODEL_CUSTOM, good);
  v1::Matrix* index = header.mutable_spec()->mutable_mk()->mutable_index();
  index->set_rows(2);
  index->set_cols(3);
  index->mutable_values()->Resize(6, 1.0);
  EXPECT_THAT(client_->Fit(header, good.View()),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.mk.index: must be a square"));
  index->set_rows(6);
  index->set_cols(6);
  index->mutable_values()->Resize(36, 1.0);
  index->set_values(7, -2);
  EXPECT_THAT(client_->Fit(header, good.View()),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.mk.index: entry (2, 2) is -2"));
  header = MkFitHeader(a, v1::RATE_MODEL_ER, good);
  header.mutable_spec()->mutable_mk()->set_state_names(1, "CG");
  EXPECT_THAT(client_->Fit(header, good.View()),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.mk.state_names: 'CG' appears"));
  // The shape: the tips' names and the tree are required; k columns per character.
  header = MkFitHeader(a, v1::RATE_MODEL_ER, good);
  header.mutable_shape()->set_row_names(false);
  EXPECT_THAT(client_->Fit(header, good.values),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.shape.row_names"));
  header = MkFitHeader(a, v1::RATE_MODEL_ER, good);
  header.mutable_shape()->set_cols(4);
  EXPECT_THAT(client_->Fit(header, good.View()),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.shape.cols"));
  // A Posterior of a model with another number of states.
  absl::StatusOr<v1::FitResult> fit =
      client_->Fit(MkFitHeader(a, v1::RATE_MODEL_ER, good), good.View());
  ASSERT_THAT(fit, IsOk());
  v1::PosteriorHeader post;
  *post.mutable_model() = fit->model();
  *post.mutable_shape() = good.Shape();
  post.mutable_shape()->set_cols(5);
  EXPECT_THAT(client_->Score(post, good.View()),
              StatusIs(absl::StatusCode::kInvalidArgument, "k=6 states"));
  // SampleHistories needs an Mk model and at least one map.
  v1::SampleHistoriesHeader maps;
  *maps.mutable_model() = fit->model();
  *maps.mutable_shape() = good.Shape();
  EXPECT_THAT(client_->SampleHistories(maps, good.View(), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.n"));
  maps.set_n(5);
  const RowMatrix x = Faithful();
  absl::StatusOr<v1::FitResult> mixture = client_->Fit(GmmHeader(x, 2), Values(x));
  ASSERT_THAT(mixture, IsOk());
  *maps.mutable_model() = mixture->model();
  EXPECT_THAT(client_->SampleHistories(maps, good.View(), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, "need an Mk model"));
  EXPECT_TRUE(WaitIdle());
}

TEST_F(FitServiceTest, MkMissingTipsAreAnErrorOrWithTheFlagAWarning) {
  const testing::Anoles a = testing::LoadAnoles();
  MkRequest r = AnolesRequest(a);
  // Two rows fewer: two tips of the tree have no row.
  r.labels.resize(80);
  r.values.resize(80 * 6);
  v1::FitHeader header = MkFitHeader(a, v1::RATE_MODEL_ER, r);
  EXPECT_THAT(client_->Fit(header, r.View()),
              StatusIs(absl::StatusCode::kInvalidArgument, "2 tips of the tree have no row"));
  header.mutable_shape()->set_allow_missing_tips(true);
  std::vector<v1::Warning> warnings;
  absl::StatusOr<v1::FitResult> fit = client_->Fit(header, r.View(), [&](const v1::FitEvent& e) {
    if (e.has_warning()) warnings.push_back(e.warning());
  });
  ASSERT_THAT(fit, IsOk());
  EXPECT_EQ(fit->summary().rows_used(), 80u);
  EXPECT_EQ(fit->summary().rows_skipped(), 2u);
  ASSERT_FALSE(warnings.empty());
  EXPECT_EQ(warnings[0].code(), "missing_tips");
  v1::PosteriorHeader post;
  *post.mutable_model() = fit->model();
  *post.mutable_shape() = header.shape();
  absl::StatusOr<v1::ScoreResponse> score = client_->Score(post, r.View());
  ASSERT_THAT(score, IsOk());
  EXPECT_EQ(score->rows(), 80u);
  ASSERT_EQ(score->warnings_size(), 1);
  EXPECT_EQ(score->warnings(0).code(), "missing_tips");
}

TEST_F(FitServiceTest, MkLimitsAreResourceExhaustedNamingTheFlag) {
  const testing::Anoles a = testing::LoadAnoles();  // 82 tips, 6 states, 4109 bytes of Newick
  const MkRequest request = AnolesRequest(a);
  const v1::FitHeader header = MkFitHeader(a, v1::RATE_MODEL_ER, request);
  // 40 rows, but the whole tree with allow_missing_tips.
  MkRequest few = request;
  few.labels.resize(40);
  few.values.resize(40 * 6);
  v1::FitHeader few_header = MkFitHeader(a, v1::RATE_MODEL_ER, few);
  few_header.mutable_shape()->set_allow_missing_tips(true);
  auto restart = [&](auto&& change) {
    ServiceLimits limits;
    change(limits);
    server_->Shutdown();
    StartServer(1, 2, limits);
  };
  restart([](ServiceLimits& l) { l.max_tips = 50; });
  EXPECT_THAT(client_->Fit(header, request.View()),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_tips"));
  EXPECT_THAT(client_->Fit(few_header, few.View()),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "the tree has 82 tips, at most 50 are allowed (--max_tips)"));
  restart([](ServiceLimits& l) { l.max_newick_bytes = 4000; });
  EXPECT_THAT(client_->Fit(header, request.View()),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_newick_bytes"));
  restart([](ServiceLimits& l) { l.max_states = 5; });
  EXPECT_THAT(client_->Fit(header, request.View()),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_states"));
  restart([](ServiceLimits& l) { l.max_name_bytes = 8; });  // "quadrivittatus": 14 bytes
  EXPECT_THAT(client_->Fit(header, request.View()),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_name_bytes"));
  restart([](ServiceLimits& l) { l.max_histories = 100; });
  absl::StatusOr<v1::FitResult> fit = client_->Fit(header, request.View());
  ASSERT_THAT(fit, IsOk());
  v1::SampleHistoriesHeader maps;
  *maps.mutable_model() = fit->model();
  *maps.mutable_shape() = request.Shape();
  maps.set_n(101);
  EXPECT_THAT(client_->SampleHistories(maps, request.View(), nullptr),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_histories"));
  maps.set_n(100);
  EXPECT_THAT(client_->SampleHistories(maps, request.View(), nullptr), IsOk());
  // Monte Carlo EM keeps each draw's node states (163 nodes x 2 bytes): with --max_values=8000
  // (64,000 bytes), 1000 draws per iteration are refused, and the default cap is lowered to 196.
  v1::FitHeader mcem = header;
  mcem.mutable_spec()->mutable_mk()->set_estep(v1::E_STEP_METHOD_MONTE_CARLO);
  mcem.mutable_spec()->mutable_mk()->mutable_mcem()->set_max_sample_size(1000);
  restart([](ServiceLimits& l) { l.max_values = 8000; });
  EXPECT_THAT(
      client_->Fit(mcem, request.View()),
      StatusIs(absl::StatusCode::kResourceExhausted, "spec.mk.mcem.max_sample_size: 1000 draws"));
  mcem.mutable_spec()->mutable_mk()->mutable_mcem()->clear_max_sample_size();
  uint64_t most = 0;
  EXPECT_THAT(client_->Fit(mcem, request.View(),
                           [&](const v1::FitEvent& e) {
                             most = std::max(most, e.iteration().sample_size());
                           }),
              IsOk());
  EXPECT_LE(most, 196u);
  EXPECT_TRUE(WaitIdle());
}

}  // namespace
}  // namespace emfit::server
