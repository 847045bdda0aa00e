// Admission and limits, attacked over loopback (issue 12): streams that declare data they never
// send, uploads that stall, one client crowding out another with calls or memory, jobs too big
// for the budget, requests for too much work, jobs that run too long, calls without a deadline.
#include "admission.h"

#include <stdlib.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "connection.h"
#include "fit_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rejection.h"
#include "server.h"
#include "testing/fit_requests.h"
#include "testing/metrics.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"
#include "timers.h"

namespace emfit::server {
namespace {

using ::emfit::client::CallOptions;
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
using ::testing::HasSubstr;

constexpr absl::StatusCode kResourceExhausted = absl::StatusCode::kResourceExhausted;
constexpr absl::StatusCode kDeadlineExceeded = absl::StatusCode::kDeadlineExceeded;

TEST(Admission, CountsEachClientsCallsAndBytesAgainstItsShareAndTheBudget) {
  Admission admission({/*bytes=*/1000, /*peer_bytes=*/600, /*peer_calls=*/2});
  absl::StatusOr<std::unique_ptr<Admission::Slot>> a1 = admission.Enter("a");
  absl::StatusOr<std::unique_ptr<Admission::Slot>> a2 = admission.Enter("a");
  ASSERT_THAT(a1, IsOk());
  ASSERT_THAT(a2, IsOk());
  absl::StatusOr<std::unique_ptr<Admission::Slot>> a3 = admission.Enter("a");
  EXPECT_THAT(a3, StatusIs(kResourceExhausted, "--max_calls_per_peer=2"));
  EXPECT_EQ(ReasonOf(a3.status()), RejectReason::kClientLimit);  // busy: retry later
  EXPECT_EQ(admission.client_calls("a"), 2);

  absl::StatusOr<Reservation> r1 = (*a1)->Reserve(500, "chunk");
  ASSERT_THAT(r1, IsOk());
  // The client's share: 500 + 200 > 600.
  absl::StatusOr<Reservation> r2 = (*a2)->Reserve(200, "chunk");
  EXPECT_THAT(r2, StatusIs(kResourceExhausted, "--max_inflight_bytes_per_peer=600"));
  EXPECT_EQ(ReasonOf(r2.status()), RejectReason::kClientLimit);
  // Another client shares the budget: 500 + 500 = 1000 fits, one byte more does not.
  absl::StatusOr<std::unique_ptr<Admission::Slot>> b = admission.Enter("b");
  ASSERT_THAT(b, IsOk());
  absl::StatusOr<Reservation> rb = (*b)->Reserve(500, "chunk");
  ASSERT_THAT(rb, IsOk());
  absl::StatusOr<Reservation> over = (*b)->Reserve(1, "chunk");
  EXPECT_THAT(over, StatusIs(kResourceExhausted, "--max_inflight_bytes=1000, 1000 in use"));
  EXPECT_EQ(ReasonOf(over.status()), RejectReason::kInflightBudget);
  EXPECT_EQ(admission.used_bytes(), 1000u);

  // What could never fit is a limit, not a busy server.
  absl::Status never = (*b)->CheckFits(1001, "1001 of data", "header.shape");
  EXPECT_THAT(never, StatusIs(kResourceExhausted, "needs about 1001 bytes (1001 of data)"));
  EXPECT_THAT(never, StatusIs(kResourceExhausted, "--max_inflight_bytes=1000"));
  EXPECT_EQ(ReasonOf(never), RejectReason::kLimit);
  EXPECT_THAT((*b)->CheckFits(700, "700 of data", "header.shape"),
              StatusIs(kResourceExhausted, "--max_inflight_bytes_per_peer=600"));
  EXPECT_THAT((*b)->CheckFits(600, "600 of data", "header.shape"), IsOk());

  // Reservations outlive their call's slot; a client is forgotten once it holds nothing.
  a1->reset();
  EXPECT_EQ(admission.client_calls("a"), 1);
  EXPECT_EQ(admission.client_bytes("a"), 500u);
  r1->Release();
  EXPECT_EQ(admission.client_bytes("a"), 0u);
  EXPECT_EQ(admission.used_bytes(), 500u);
  a2->reset();
  b->reset();
  rb->Release();
  EXPECT_EQ(admission.used_bytes(), 0u);
  EXPECT_EQ(admission.client_calls("a"), 0);
  EXPECT_EQ(admission.client_calls("b"), 0);
}

TEST(ClientKey, IsTheIdentityElseTheAddressWithoutItsPort) {
  EXPECT_EQ(ClientKey("ipv4:10.0.0.7:51234", ""), "ipv4:10.0.0.7");
  EXPECT_EQ(ClientKey("ipv6:[::1]:51234", ""), "ipv6:[::1]");
  EXPECT_EQ(ClientKey("ipv4:10.0.0.7:51234", "alice"), "id:alice");
  EXPECT_EQ(ClientKey("unix:/tmp/sock", ""), "unix:/tmp/sock");
}

TEST(DefaultInflightBudget, IsThreeQuartersOfTheMemoryThisProcessMayUseAtMost) {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  ASSERT_TRUE(meminfo >> key >> kib);
  ASSERT_EQ(key, "MemTotal:");
  const uint64_t budget = DefaultInflightBudget();
  EXPECT_GT(budget, 0u);
  EXPECT_LE(budget, kib * 1024 / 4 * 3);
}

TEST(Timers, RunCallbacksInTimeOrderAndNeverCancelledOnes) {
  Timers timers;
  absl::Mutex mu;
  std::vector<int> ran;
  auto record = [&](int i) {
    return [&, i] {
      absl::MutexLock lock(&mu);
      ran.push_back(i);
    };
  };
  const absl::Time now = absl::Now();
  timers.Schedule(now + absl::Milliseconds(60), record(3));
  timers.Schedule(now + absl::Milliseconds(20), record(1));
  const Timers::Id cancelled = timers.Schedule(now + absl::Milliseconds(40), record(-1));
  timers.Schedule(now + absl::Milliseconds(40), record(2));
  timers.Cancel(cancelled);
  { Timer dropped(&timers, now + absl::Milliseconds(50), record(-2)); }  // cancelled as it dies
  timers.Schedule(now + absl::Milliseconds(80), record(4));
  absl::MutexLock lock(&mu);
  auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return ran.size() >= 4; };
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(30)));
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(timers.pending(), 0u);
}

class AdmissionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern = ::testing::TempDir() + "emfit-admission-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = new std::string(pattern);
    std::ofstream(*dir_ + "/tokens") << "alice:alice-token\nbob:bob-token\n";
    std::ofstream(*dir_ + "/alice") << "alice-token\n";
    std::ofstream(*dir_ + "/bob") << "bob-token\n";
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static ServerOptions Options() {
    ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.workers = 1;
    o.queue = 8;
    o.compute_threads = 1;
    o.drain_delay = absl::ZeroDuration();
    o.shutdown_grace = absl::Seconds(1);
    return o;
  }
  // Options with the token file: calls are told apart by their token's name (alice, bob).
  static ServerOptions WithTokens() {
    ServerOptions o = Options();
    o.token_file = *dir_ + "/tokens";
    return o;
  }
  void Start(const ServerOptions& options) {
    if (server_ != nullptr) server_->Shutdown();
    server_ = std::make_unique<Server>();
    ASSERT_THAT(server_->Start(options), IsOk());
  }
  void TearDown() override {
    fits_.clear();  // their threads end with their calls
    if (server_ != nullptr) server_->Shutdown();
  }

  // A channel as `who` (a token file) or anonymously. (Refusals come back at once from a
  // FitClient with no re-sends.)
  std::shared_ptr<grpc::Channel> Channel(const std::string& who = "") {
    ConnectionOptions c;
    c.target = absl::StrFormat("127.0.0.1:%d", server_->port());
    if (!who.empty()) c.token_file = *dir_ + "/" + who;
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(c);
    EXPECT_THAT(channel, IsOk());
    return channel.ok() ? *channel : nullptr;
  }
  double Metric(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return MetricValue(server_->metrics().Collect(), name, labels);
  }
  bool WaitIdle() {
    return WaitFor([&] {
      return server_->queue().running() == 0 && server_->queue().queued() == 0 &&
             server_->admission().used_bytes() == 0;
    });
  }

  // A long fit (until cancelled) on a thread of its own, as `who`; returns once the server
  // has accepted it.
  struct BackgroundFit {
    grpc::ClientContext context;
    absl::Notification accepted;
    absl::Status status;
    std::thread thread;
    ~BackgroundFit() {
      context.TryCancel();
      if (thread.joinable()) thread.join();
    }
  };
  BackgroundFit* StartLongFit(const std::string& who) {
    auto fit = std::make_unique<BackgroundFit>();
    BackgroundFit* f = fit.get();
    f->thread = std::thread([this, f, channel = Channel(who)] {
      CallOptions call;
      call.context = &f->context;
      f->status = FitClient(channel, /*resends=*/0)
                      .Fit(
                          long_fit_.header, Values(long_fit_.x),
                          [f](const v1::FitEvent& e) {
                            if (e.has_accepted()) f->accepted.Notify();
                          },
                          call)
                      .status();
      if (!f->accepted.HasBeenNotified()) f->accepted.Notify();
    });
    EXPECT_TRUE(f->accepted.WaitForNotificationWithTimeout(absl::Seconds(30)));
    fits_.push_back(std::move(fit));
    return f;
  }

  static std::string* dir_;
  const LongFit long_fit_;
  std::unique_ptr<Server> server_;
  std::vector<std::unique_ptr<BackgroundFit>> fits_;
};

std::string* AdmissionTest::dir_ = nullptr;

TEST_F(AdmissionTest, SixStreamsThatDeclareDataTheyNeverSendLockNobodyOut) {
  // The attack of issue 12: six Fit streams send only a header, each declaring a sixth of the
  // 8 GiB budget (8,947,848 rows x 20 columns, 1.43 GB). Were the declared bytes reserved, they
  // would hold all but 512 bytes of the budget and lock every other call out.
  ServerOptions options = Options();
  options.limits.max_inflight_bytes = uint64_t{8} << 30;
  options.limits.max_inflight_bytes_per_peer = uint64_t{8} << 30;
  Start(options);
  auto stub = v1::EmFitService::NewStub(Channel());
  v1::FitRequest request;
  v1::FitHeader& header = *request.mutable_header();
  header.mutable_spec()->mutable_gmm()->set_k(2);
  header.mutable_shape()->set_rows(8'947'848);
  header.mutable_shape()->set_cols(20);
  ASSERT_LE(6 * header.shape().rows() * header.shape().cols() * sizeof(double),
            options.limits.max_inflight_bytes);
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<v1::FitRequest, v1::FitEvent>>> streams;
  for (int i = 0; i < 6; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub->Fit(contexts.back().get()));
    ASSERT_TRUE(streams.back()->Write(request));
  }
  // The six headers have arrived and were accepted (they hold their calls open).
  const double header_bytes = static_cast<double>(request.ByteSizeLong());
  ASSERT_TRUE(WaitFor([&] {
    return Metric("emfit_received_bytes_total", {{"method", "Fit"}}) >= 6 * header_bytes;
  }));
  EXPECT_EQ(server_->admission().client_calls("ipv4:127.0.0.1"), 6);
  EXPECT_EQ(server_->admission().used_bytes(), 0u);  // declared is not held
  // A normal fit is served, within a second.
  const RowMatrix x = Faithful();
  CallOptions call;
  call.timeout = absl::Seconds(1);
  EXPECT_THAT(FitClient(Channel(), 0).Fit(GmmHeader(x, 2), Values(x), nullptr, call), IsOk());
  for (auto& context : contexts) context->TryCancel();
  for (auto& stream : streams) (void)stream->Finish();
}

TEST_F(AdmissionTest, AnUploadThatStallsIsCutAtItsDeadlineAndReleasesWhatItHeld) {
  ServerOptions options = Options();
  options.limits.upload_timeout = absl::Milliseconds(300);
  options.limits.min_upload_rate = 1e7;  // 1.6 MB declared: 0.16 s more
  Start(options);
  auto stub = v1::EmFitService::NewStub(Channel());
  // Declares 100,000 x 2 values, sends 10,000, then nothing.
  grpc::ClientContext context;
  auto stream = stub->Fit(&context);
  v1::FitRequest request;
  request.mutable_header()->mutable_spec()->mutable_gmm()->set_k(2);
  request.mutable_header()->mutable_shape()->set_rows(100'000);
  request.mutable_header()->mutable_shape()->set_cols(2);
  ASSERT_TRUE(stream->Write(request));
  request.Clear();
  for (int i = 0; i < 10'000; ++i) request.mutable_chunk()->add_values(i % 7);
  ASSERT_TRUE(stream->Write(request));
  // What arrived is held (plus at most 1 MiB ahead), not what was declared.
  ASSERT_TRUE(WaitFor([&] { return server_->admission().used_bytes() > 0; }));
  EXPECT_LT(server_->admission().used_bytes(), 10'000 * sizeof(double) + (1u << 20) + 1);
  v1::FitEvent event;
  while (stream->Read(&event)) {
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("the upload of 1600000 declared bytes did not end within "
                        "--upload_timeout=300ms plus their time at --min_upload_rate=10000000"));
  EXPECT_TRUE(WaitIdle());
  // The call's admission slot goes with its reactor, a moment after the client has the status.
  EXPECT_TRUE(WaitFor([&] { return server_->admission().client_calls("ipv4:127.0.0.1") == 0; }));
  EXPECT_EQ(Metric("emfit_rejected_calls_total", {{"reason", "deadline"}}), 1);

  // A stream that sends nothing at all is cut too.
  grpc::ClientContext silent_context;
  auto silent = stub->Fit(&silent_context);
  while (silent->Read(&event)) {
  }
  const grpc::Status silent_status = silent->Finish();
  EXPECT_EQ(silent_status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(silent_status.error_message(),
              HasSubstr("the request's header did not arrive within --upload_timeout=300ms"));
}

TEST_F(AdmissionTest, OneClientsCallsCannotCrowdOutAnothersAndAreBusyNotRefused) {
  ServerOptions options = WithTokens();
  options.limits.max_calls_per_peer = 2;
  Start(options);
  StartLongFit("alice");  // runs
  StartLongFit("alice");  // waits behind it
  EXPECT_EQ(server_->admission().client_calls("id:alice"), 2);
  const RowMatrix x = Faithful();
  EXPECT_THAT(FitClient(Channel("alice"), 0).Fit(GmmHeader(x, 2), Values(x)),
              StatusIs(kResourceExhausted,
                       "id:alice has 2 calls in progress, the most one "
                       "client may have (--max_calls_per_peer=2); retry later"));
  EXPECT_EQ(Metric("emfit_rejected_calls_total", {{"reason", "client_limit"}}), 1);
  // Bob is admitted (and waits in the queue like anyone): his call is not refused.
  CallOptions call;
  call.timeout = absl::Milliseconds(500);
  EXPECT_THAT(FitClient(Channel("bob"), 0).Fit(GmmHeader(x, 2), Values(x), nullptr, call),
              StatusIs(kDeadlineExceeded, ""));
  // Once Alice's calls end, she is admitted again.
  fits_.clear();
  ASSERT_TRUE(WaitIdle());
  ASSERT_TRUE(WaitFor([&] { return server_->admission().client_calls("id:alice") == 0; }));
  EXPECT_THAT(FitClient(Channel("alice"), 0).Fit(GmmHeader(x, 2), Values(x)), IsOk());
}

TEST_F(AdmissionTest, OneClientCannotHoldMoreThanItsShareOfTheBudget) {
  // How much one long fit holds (its data and working memory), measured on a roomy server.
  Start(WithTokens());
  StartLongFit("alice");
  ASSERT_TRUE(WaitFor([&] { return server_->queue().running() == 1; }));
  const uint64_t one = server_->admission().used_bytes();
  ASSERT_GT(one, static_cast<uint64_t>(long_fit_.x.size()) * sizeof(double));
  fits_.clear();

  // Room for three such fits, each client's share for one and a half.
  ServerOptions options = WithTokens();
  options.limits.max_inflight_bytes = 3 * one;
  options.limits.max_inflight_bytes_per_peer = one + one / 2;
  Start(options);
  StartLongFit("alice");
  ASSERT_TRUE(WaitFor([&] { return server_->admission().used_bytes() == one; }));
  EXPECT_THAT(FitClient(Channel("alice"), 0).Fit(long_fit_.header, Values(long_fit_.x)),
              StatusIs(kResourceExhausted,
                       "share of the in-flight budget "
                       "(--max_inflight_bytes_per_peer="));
  // Bob's identical fit is accepted: it waits for the worker holding its budget.
  BackgroundFit* bob = StartLongFit("bob");
  EXPECT_TRUE(bob->accepted.HasBeenNotified());
  EXPECT_TRUE(WaitFor([&] { return server_->admission().used_bytes() == 2 * one; }));
  EXPECT_EQ(server_->admission().client_bytes("id:bob"), one);
}

TEST_F(AdmissionTest, AJobThatCannotFitEvenOnAnIdleServerIsRefusedNamingTheNumbers) {
  ServerOptions options = Options();
  options.limits.max_inflight_bytes = 1'000'000;
  Start(options);
  const RowMatrix x = Faithful();
  // 1000 restarts of up to 100 iterations keep 1000 histories: more than the whole budget.
  v1::FitHeader header = GmmHeader(x, 2);
  header.mutable_options()->set_n_init(1000);
  header.mutable_options()->set_max_iter(100);
  absl::Status status = FitClient(Channel(), 0).Fit(header, Values(x)).status();
  EXPECT_THAT(status, StatusIs(kResourceExhausted, "header.shape: the job needs about "));
  EXPECT_THAT(status, StatusIs(kResourceExhausted,
                               "(4352 of data and "));  // 272 x 2 values, and the working memory
  EXPECT_THAT(status, StatusIs(kResourceExhausted, "--max_inflight_bytes=1000000"));
  EXPECT_EQ(Metric("emfit_rejected_calls_total", {{"reason", "limit"}}), 1);  // do not retry
  // The same fit with one restart fits.
  header.mutable_options()->set_n_init(1);
  EXPECT_THAT(FitClient(Channel(), 0).Fit(header, Values(x)), IsOk());
}

TEST_F(AdmissionTest, RequestsForMoreWorkThanTheLimitsAllowAreRefused) {
  ServerOptions options = Options();
  options.limits.max_work = 1e6;
  Start(options);
  FitClient client(Channel(), 0);
  const RowMatrix x = Faithful();
  // The 5 KB request of issue 12: 1000 restarts of up to 100,000 iterations on 272 rows, each
  // within --max_n_init and --max_iter_limit, together 10^8 iterations.
  v1::FitHeader header = GmmHeader(x, 2);
  header.mutable_options()->set_n_init(1000);
  header.mutable_options()->set_max_iter(100000);
  EXPECT_THAT(client.Fit(header, Values(x)),
              StatusIs(kResourceExhausted,
                       "header.options: n_init=1000 x max_iter=100000 = 100000000 iterations "
                       "exceed --max_total_iter=100000"));
  // 20 restarts of 100 iterations over 272 x 2 values: 1.09e6 value-iterations.
  header.mutable_options()->set_n_init(20);
  header.mutable_options()->set_max_iter(100);
  EXPECT_THAT(client.Fit(header, Values(x)),
              StatusIs(kResourceExhausted, "= 1.09e+06 value-iterations exceed --max_work=1e+06"));
  // SelectModel counts every candidate.
  v1::SelectModelHeader select;
  for (uint32_t k = 1; k <= 8; ++k) select.add_k(k);
  *select.mutable_shape() = header.shape();
  select.mutable_options()->set_max_iter(20000);
  EXPECT_THAT(client.SelectModel(select, Values(x)),
              StatusIs(kResourceExhausted, "8 candidates x 1 restarts x max_iter=20000"));
  // An HMM's iteration also visits k^2 transitions per step: 10 restarts of 30 iterations on
  // 272 steps x (2 columns + 16) = 1.47e6, where a mixture's would be 1.63e5.
  v1::FitHeader hmm = header;
  hmm.mutable_spec()->mutable_hmm()->set_k(4);
  hmm.mutable_options()->set_n_init(10);
  hmm.mutable_options()->set_max_iter(30);
  EXPECT_THAT(client.Fit(hmm, Values(x)),
              StatusIs(kResourceExhausted,
                       "on 272 steps x (2 columns + k^2 = 16 transitions) = "
                       "1.47e+06 value-iterations exceed --max_work=1e+06"));
  header.mutable_options()->set_n_init(10);
  header.mutable_options()->set_max_iter(30);
  EXPECT_THAT(client.Fit(header, Values(x)), IsOk());
}

TEST_F(AdmissionTest, AJobThatRunsLongerThanMaxJobSecondsIsStopped) {
  ServerOptions options = Options();
  options.limits.max_job_time = absl::Milliseconds(300);
  Start(options);
  CallOptions call;
  call.timeout = absl::Seconds(60);
  EXPECT_THAT(FitClient(Channel(), 0).Fit(long_fit_.header, Values(long_fit_.x), nullptr, call),
              StatusIs(kDeadlineExceeded,
                       "the job ran for the server's longest job time (--max_job_seconds=0.3)"));
  EXPECT_TRUE(WaitIdle());
}

TEST_F(AdmissionTest, ACallWithoutADeadlineEndsAtTheServersDefault) {
  ServerOptions options = Options();
  options.limits.default_deadline = absl::Milliseconds(500);
  Start(options);
  FitClient client(Channel(), 0);
  EXPECT_THAT(client.Fit(long_fit_.header, Values(long_fit_.x)),
              StatusIs(kDeadlineExceeded,
                       "the call passed the server's deadline for calls that set none "
                       "(--default_deadline=500ms)"));
  EXPECT_TRUE(WaitIdle());
  // A call with a deadline of its own runs to it.
  CallOptions call;
  call.timeout = absl::Seconds(2);
  absl::Status own = client.Fit(long_fit_.header, Values(long_fit_.x), nullptr, call).status();
  EXPECT_EQ(own.code(), kDeadlineExceeded);
  EXPECT_THAT(own.message(), ::testing::Not(HasSubstr("--default_deadline")));
}

TEST_F(AdmissionTest, BusyRefusalsAreSentAgainWholeAndServedWithTheSameData) {
  // Eight clients share one address and a cap of one call at a time, so most calls are refused
  // as busy at once (the client's share of calls) while their data stream in small chunks, and
  // are sent again by the client. Before the client stopped gRPC from retrying (its retry
  // policy), gRPC 1.51's retry filter dropped a chunk written while it replayed an attempt, or
  // failed a write of an attempt it then retried: 11 runs of 30 ended a call with
  // INVALID_ARGUMENT (values missing) or DEADLINE_EXCEEDED (an upload that stopped halfway).
  ServerOptions options = Options();
  options.limits.max_calls_per_peer = 1;
  options.limits.upload_timeout = absl::Seconds(5);
  options.retry_after = absl::Milliseconds(20);
  Start(options);
  const RowMatrix x = Faithful();
  CallOptions call;
  call.chunk_values = 64;  // 9 chunks
  call.timeout = absl::Seconds(60);
  const absl::StatusOr<v1::FitResult> alone =
      FitClient(Channel(), 0).Fit(GmmHeader(x, 2), Values(x), nullptr, call);
  ASSERT_THAT(alone, IsOk());

  absl::Mutex mu;
  std::vector<absl::StatusOr<v1::FitResult>> results;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, channel = Channel()] {
      for (int i = 0; i < 8; ++i) {
        absl::StatusOr<v1::FitResult> result =
            FitClient(channel, /*resends=*/4).Fit(GmmHeader(x, 2), Values(x), nullptr, call);
        absl::MutexLock lock(&mu);
        results.push_back(std::move(result));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(results.size(), 64u);
  int ok = 0;
  for (const absl::StatusOr<v1::FitResult>& result : results) {
    if (!result.ok()) {
      // Refused five times in a row (four re-sends): the only other outcome.
      EXPECT_THAT(result, StatusIs(kResourceExhausted, "(--max_calls_per_peer=1); retry later"));
      continue;
    }
    ++ok;
    // The same data, whole and once: the same fit, to the last bit.
    EXPECT_EQ(result->summary().log_likelihood(), alone->summary().log_likelihood());
    EXPECT_EQ(result->model().SerializeAsString(), alone->model().SerializeAsString());
  }
  EXPECT_GE(ok, 32);
  // The calls were refused and sent again: more refusals than calls that failed.
  EXPECT_GT(Metric("emfit_rejected_calls_total", {{"reason", "client_limit"}}), 64 - ok);
}

}  // namespace
}  // namespace emfit::server
