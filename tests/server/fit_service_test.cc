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
#include "emfit/gmm/gmm.h"
#include "fit_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server.h"
#include "testing/data.h"
#include "testing/fit_requests.h"
#include "testing/status_matchers.h"

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

class FitServiceTest : public ::testing::Test {
 protected:
  void StartServer(int workers = 2, int queue = 4, ServiceLimits limits = {}) {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = workers;
    options.queue = queue;
    options.compute_threads = 1;
    options.limits = limits;
    options.shutdown_grace = absl::Seconds(1);
    options.heartbeat = absl::Milliseconds(50);
    options.retry_after = absl::Milliseconds(50);  // the client's retries of a full queue
    server_ = std::make_unique<Server>();
    ASSERT_THAT(server_->Start(options), IsOk());
    client_ = std::make_unique<FitClient>(
        FitClient::Connect(absl::StrFormat("127.0.0.1:%d", server_->port())));
  }
  void SetUp() override { StartServer(); }
  void TearDown() override { server_->Shutdown(); }

  // Waits until no job runs (a cancelled job must stop within one iteration).
  bool WaitIdle(absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (server_->queue().running() == 0 && server_->queue().queued() == 0) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
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
      EXPECT_EQ(e.accepted().queue_position(), 0u);
      waiting.Notify();
    }
    if (e.has_heartbeat() && !heartbeat.HasBeenNotified()) {
      EXPECT_EQ(e.heartbeat().queue_position(), 0u);
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
  const uint64_t one = static_cast<uint64_t>(fit.x.size()) * sizeof(double);
  EXPECT_EQ(server_->service().inflight_bytes(), one);  // held while the fit uses the data
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

TEST_F(FitServiceTest, APosteriorReaderThatStopsReadingIsCutOffAndFreesTheWorker) {
  ServiceLimits limits;
  limits.max_stall = absl::Milliseconds(300);
  server_->Shutdown();
  StartServer(/*workers=*/1, /*queue=*/4, limits);
  // 200k rows, k=20: about forty 1 MiB responses, far more than flow control buffers.
  const RowMatrix x = testing::SampleMixture(testing::SpreadMeans(20, 2, 10.0, 3), 1.0, 200000, 3);
  absl::StatusOr<v1::FitResult> fit = client_->Fit(
      [&] {
        v1::FitHeader h = GmmHeader(x, 20);
        h.mutable_options()->set_max_iter(1);
        h.mutable_spec()->mutable_gmm()->set_covariance_type(v1::COVARIANCE_TYPE_SPHERICAL);
        return h;
      }(),
      Values(x));
  ASSERT_THAT(fit, IsOk());
  auto stub = v1::EmFitService::NewStub(
      FitClient::Connect(absl::StrFormat("127.0.0.1:%d", server_->port())));
  grpc::ClientContext context;
  auto stream = stub->Posterior(&context);
  v1::PosteriorRequest request;
  *request.mutable_header()->mutable_model() = fit->model();
  request.mutable_header()->mutable_shape()->set_rows(x.rows());
  request.mutable_header()->mutable_shape()->set_cols(x.cols());
  ASSERT_TRUE(stream->Write(request));
  const std::vector<double> values = Values(x);
  for (size_t begin = 0; begin < values.size(); begin += 32768) {
    request.Clear();
    const size_t n = std::min<size_t>(32768, values.size() - begin);
    request.mutable_chunk()->mutable_values()->Assign(values.begin() + begin,
                                                      values.begin() + begin + n);
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  // Read nothing: the job must give up after max_stall and free the only worker.
  absl::SleepFor(absl::Seconds(1));
  EXPECT_TRUE(WaitIdle(absl::Seconds(5)));
  const RowMatrix small = Faithful();
  CallOptions call;
  call.timeout = absl::Seconds(10);
  EXPECT_THAT(client_->Fit(GmmHeader(small, 2), Values(small), nullptr, call), IsOk());
  context.TryCancel();
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
  const absl::Time start = absl::Now();
  server_->Shutdown();  // grace 1 s
  t.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(6));
  EXPECT_FALSE(status.ok());
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

}  // namespace
}  // namespace emfit::server
