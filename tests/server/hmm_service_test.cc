// Hidden Markov models through the real server and client: Fit, Posterior (blockwise over
// sequences), Score and SelectModel against core, the symbols' names, the limits.
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "convert/hmm.h"
#include "emfit/hmm/hmm.h"
#include "fit_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server.h"
#include "testing/hmm_data.h"
#include "testing/status_matchers.h"

namespace emfit::server {
namespace {

using ::emfit::client::CallOptions;
using ::emfit::client::FitClient;
using ::emfit::client::RequestData;
using ::emfit::testing::IsOk;
using ::emfit::testing::SampleHmm;
using ::emfit::testing::SeparatedModel;
using ::emfit::testing::StatusIs;

// A data set as a request streams it: the values row-major and the sequences' lengths.
struct Streamed {
  explicit Streamed(const Dataset& d) : data(d) {
    values.assign(d.x.data(), d.x.data() + d.x.size());
    for (size_t q = 0; q + 1 < d.sequence_offsets.size(); ++q) {
      lengths.push_back(static_cast<uint64_t>(d.sequence_offsets[q + 1] - d.sequence_offsets[q]));
    }
  }
  RequestData request() const {
    RequestData r(values);
    r.sequence_lengths = lengths;
    return r;
  }
  void Describe(v1::DataShape* shape) const {
    shape->set_rows(static_cast<uint64_t>(data.rows()));
    shape->set_cols(static_cast<uint32_t>(data.cols()));
    request().DescribeIn(shape);
  }
  Dataset data;
  std::vector<double> values;
  std::vector<uint64_t> lengths;
};

v1::FitHeader HmmHeader(const Streamed& s, int k, v1::EmissionType emission) {
  v1::FitHeader h;
  h.mutable_spec()->mutable_hmm()->set_k(static_cast<uint32_t>(k));
  h.mutable_spec()->mutable_hmm()->set_emission(emission);
  s.Describe(h.mutable_shape());
  return h;
}

v1::PosteriorHeader PosteriorHeaderFor(const v1::FitResult& fit, const Streamed& s) {
  v1::PosteriorHeader h;
  *h.mutable_model() = fit.model();
  s.Describe(h.mutable_shape());
  return h;
}

class HmmServiceTest : public ::testing::Test {
 protected:
  void StartServer(ServiceLimits limits = {}) {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 2;
    options.queue = 4;
    options.compute_threads = 2;
    options.limits = limits;
    options.shutdown_grace = absl::Seconds(1);
    options.heartbeat = absl::Milliseconds(50);
    server_ = std::make_unique<Server>();
    ASSERT_THAT(server_->Start(options), IsOk());
    client_ = std::make_unique<FitClient>(
        FitClient::Connect(absl::StrFormat("127.0.0.1:%d", server_->port())));
  }
  void SetUp() override { StartServer(); }
  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<Server> server_;
  std::unique_ptr<FitClient> client_;
};

TEST_F(HmmServiceTest, FitEqualsTheDirectCoreFit) {
  const hmm::HmmParams truth = SeparatedModel(hmm::EmissionType::kGaussian, 3, 2);
  Dataset data = SampleHmm(truth, {300, 1, 250, 120}, 3);
  data.x(17, 1) = std::numeric_limits<double>::quiet_NaN();
  const Streamed s(data);
  v1::FitHeader header = HmmHeader(s, 3, v1::EMISSION_TYPE_GAUSSIAN);
  header.mutable_spec()->mutable_hmm()->set_covariance_type(v1::COVARIANCE_TYPE_DIAG);
  header.mutable_options()->set_seed(4);
  header.mutable_options()->set_n_init(2);
  CallOptions call;
  call.chunk_values = 101;  // chunks that cut rows and sequences
  int iterations = 0;
  absl::StatusOr<v1::FitResult> remote = client_->Fit(
      header, s.request(), [&](const v1::FitEvent& e) { iterations += e.has_iteration(); }, call);
  ASSERT_THAT(remote, IsOk());

  hmm::HmmSpec spec;
  spec.k = 3;
  spec.covariance_type = gmm::CovarianceType::kDiag;
  FitOptions options;
  options.seed = 4;
  options.n_init = 2;
  absl::StatusOr<hmm::HmmFitResult> local = hmm::Fit(data, spec, options);
  ASSERT_THAT(local, IsOk());
  v1::FitResult want;
  ToProto(local->params, {}, want.mutable_model()->mutable_hmm());
  EXPECT_EQ(remote->model().SerializeAsString(), want.model().SerializeAsString());
  EXPECT_EQ(remote->summary().log_likelihood(), local->summary.log_likelihood);
  EXPECT_EQ(remote->summary().bic(), local->summary.bic);
  EXPECT_EQ(remote->summary().rows_used(), 671u);  // a step with one value observed counts
  EXPECT_GT(iterations, 2);
}

TEST_F(HmmServiceTest, PosteriorGivesStatesBlockByBlockAndEachSequenceOnce) {
  const hmm::HmmParams truth = SeparatedModel(hmm::EmissionType::kPoisson, 3, 2);
  // More steps than one response holds (26,214 for k = 3): a long sequence spans blocks and
  // blocks hold several sequences.
  const Dataset data = SampleHmm(truth, {5, 40000, 3, 1, 9000, 20000, 2}, 6);
  const Streamed s(data);
  v1::FitResult fit;
  ToProto(truth, {}, fit.mutable_model()->mutable_hmm());
  absl::StatusOr<hmm::Posteriors> want = hmm::ComputePosteriors(truth, data);
  ASSERT_THAT(want, IsOk());
  uint64_t next_row = 0, next_sequence = 0;
  int blocks = 0;
  ASSERT_THAT(
      client_->Posterior(
          PosteriorHeaderFor(fit, s), s.request(),
          [&](const v1::PosteriorResponse& r) {
            ++blocks;
            EXPECT_EQ(r.first_row(), next_row);
            const uint32_t rows = r.responsibilities().rows();
            ASSERT_EQ(r.responsibilities().cols(), 3u);
            ASSERT_EQ(r.labels_size(), static_cast<int>(rows));
            for (uint32_t i = 0; i < rows; ++i) {
              const auto row = static_cast<Eigen::Index>(next_row + i);
              for (uint32_t c = 0; c < 3; ++c) {
                EXPECT_NEAR(r.responsibilities().values(i * 3 + c),
                            want->state_probabilities(row, c), 1e-12);
              }
              EXPECT_EQ(r.labels(i), static_cast<uint32_t>(want->viterbi_path[row]));
            }
            ASSERT_TRUE(r.has_hmm());
            EXPECT_EQ(r.hmm().first_sequence(), next_sequence);
            for (int j = 0; j < r.hmm().log_likelihood_size(); ++j) {
              const auto q = static_cast<Eigen::Index>(next_sequence + j);
              // The sequence ends in this block.
              EXPECT_GT(data.sequence_offsets[q + 1], static_cast<int64_t>(next_row));
              EXPECT_LE(data.sequence_offsets[q + 1], static_cast<int64_t>(next_row + rows));
              EXPECT_NEAR(r.hmm().log_likelihood(j), want->log_likelihood[q],
                          1e-9 * std::abs(want->log_likelihood[q]));
              EXPECT_EQ(r.hmm().viterbi_log_probability(j), want->viterbi_log_probability[q]);
            }
            next_sequence += r.hmm().log_likelihood_size();
            next_row += rows;
          }),
      IsOk());
  EXPECT_EQ(next_row, static_cast<uint64_t>(data.rows()));
  EXPECT_EQ(next_sequence, 7u);
  EXPECT_GE(blocks, 3);
}

TEST_F(HmmServiceTest, ScoreIsTheSumOverSequencesWithCriteria) {
  const hmm::HmmParams truth = SeparatedModel(hmm::EmissionType::kGaussian, 2, 2);
  const Dataset data = SampleHmm(truth, {100, 50, 80}, 2);
  const Streamed s(data);
  absl::StatusOr<v1::FitResult> fit =
      client_->Fit(HmmHeader(s, 2, v1::EMISSION_TYPE_GAUSSIAN), s.request());
  ASSERT_THAT(fit, IsOk());
  absl::StatusOr<v1::ScoreResponse> score =
      client_->Score(PosteriorHeaderFor(*fit, s), s.request());
  ASSERT_THAT(score, IsOk());
  EXPECT_NEAR(score->log_likelihood(), fit->summary().log_likelihood(),
              1e-9 * std::abs(score->log_likelihood()));
  EXPECT_NEAR(score->bic(), fit->summary().bic(), 1e-6);
  EXPECT_EQ(score->num_free_parameters(), fit->summary().num_free_parameters());
  EXPECT_EQ(score->rows(), 230u);
  // The same rows as one sequence score differently (sequences are never joined).
  Streamed joined(data);
  joined.lengths.clear();
  absl::StatusOr<v1::ScoreResponse> one =
      client_->Score(PosteriorHeaderFor(*fit, joined), joined.request());
  ASSERT_THAT(one, IsOk());
  EXPECT_NE(one->log_likelihood(), score->log_likelihood());
}

TEST_F(HmmServiceTest, CategoricalSymbolNamesTravelWithTheModel) {
  const hmm::HmmParams truth = SeparatedModel(hmm::EmissionType::kCategorical, 2, 1, 3);
  const Dataset data = SampleHmm(truth, {200, 100}, 9);
  const Streamed s(data);
  v1::FitHeader header = HmmHeader(s, 2, v1::EMISSION_TYPE_CATEGORICAL);
  for (const char* name : {"rain", "sun", "fog"})
    header.mutable_spec()->mutable_hmm()->add_symbols(name);
  absl::StatusOr<v1::FitResult> fit = client_->Fit(header, s.request());
  ASSERT_THAT(fit, IsOk());
  ASSERT_TRUE(fit->model().hmm().has_categorical());
  EXPECT_THAT(fit->model().hmm().categorical().symbols(),
              ::testing::ElementsAre("rain", "sun", "fog"));
  EXPECT_EQ(fit->model().hmm().categorical().probabilities().cols(), 3u);
  // A warm start keeps them; holding the transitions keeps them to the bit.
  v1::FitHeader warm = HmmHeader(s, 2, v1::EMISSION_TYPE_CATEGORICAL);
  *warm.mutable_init() = fit->model();
  warm.mutable_spec()->mutable_hmm()->set_fix_transitions(true);
  absl::StatusOr<v1::FitResult> again = client_->Fit(warm, s.request());
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(again->model().hmm().categorical().symbols(),
              ::testing::ElementsAre("rain", "sun", "fog"));
  EXPECT_EQ(again->model().hmm().transmat().SerializeAsString(),
            fit->model().hmm().transmat().SerializeAsString());
  // Other names than the starting model's are refused.
  warm.mutable_spec()->mutable_hmm()->add_symbols("a");
  warm.mutable_spec()->mutable_hmm()->add_symbols("b");
  warm.mutable_spec()->mutable_hmm()->add_symbols("c");
  EXPECT_THAT(client_->Fit(warm, s.request()),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.hmm.symbols"));
}

TEST_F(HmmServiceTest, BadInputIsInvalidArgumentNamingTheField) {
  const hmm::HmmParams truth = SeparatedModel(hmm::EmissionType::kCategorical, 2, 1, 3);
  const Dataset data = SampleHmm(truth, {30, 20}, 1);
  const Streamed s(data);
  // Categorical emissions without the number of symbols.
  EXPECT_THAT(client_->Fit(HmmHeader(s, 2, v1::EMISSION_TYPE_CATEGORICAL), s.request()),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.hmm.n_symbols"));
  // A symbol outside the declared count, named by its row.
  v1::FitHeader header = HmmHeader(s, 2, v1::EMISSION_TYPE_CATEGORICAL);
  header.mutable_spec()->mutable_hmm()->set_n_symbols(3);
  Streamed bad = s;
  bad.values[3] = 3;
  EXPECT_THAT(client_->Fit(header, bad.request()),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 4 holds symbol 3"));
  // A structural-zero pattern that leaves state 1 unreachable.
  header.mutable_spec()->mutable_hmm()->add_allowed_start(1);
  header.mutable_spec()->mutable_hmm()->add_allowed_start(0);
  v1::Matrix* allowed = header.mutable_spec()->mutable_hmm()->mutable_allowed_transitions();
  allowed->set_rows(2);
  allowed->set_cols(2);
  for (double v : {1, 0, 0, 1}) allowed->add_values(v);
  EXPECT_THAT(client_->Fit(header, s.request()),
              StatusIs(absl::StatusCode::kInvalidArgument, "state 1 cannot be reached"));
  allowed->set_values(1, 0.5);
  EXPECT_THAT(client_->Fit(header, s.request()),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.hmm.allowed_transitions"));
  // Weights that change within a sequence.
  const hmm::HmmParams gauss = SeparatedModel(hmm::EmissionType::kGaussian, 2, 1);
  const Dataset g = SampleHmm(gauss, {10, 10}, 2);
  std::vector<double> weighted;
  for (Eigen::Index i = 0; i < g.rows(); ++i) {
    weighted.push_back(g.x(i, 0));
    weighted.push_back(i == 15 ? 2.0 : 1.0);
  }
  const std::vector<uint64_t> lengths = {10, 10};
  v1::FitHeader wh;
  wh.mutable_spec()->mutable_hmm()->set_k(2);
  wh.mutable_shape()->set_rows(20);
  wh.mutable_shape()->set_cols(1);
  wh.mutable_shape()->set_weight_column(true);
  wh.mutable_shape()->set_num_sequences(2);
  RequestData wd(weighted);
  wd.sequence_lengths = lengths;
  EXPECT_THAT(client_->Fit(wh, wd), StatusIs(absl::StatusCode::kInvalidArgument, "sequence 2"));
  // A mixture takes no sequences; an HMM no tree.
  v1::FitHeader mixed = HmmHeader(s, 2, v1::EMISSION_TYPE_CATEGORICAL);
  mixed.mutable_spec()->mutable_gmm()->set_k(2);
  EXPECT_THAT(client_->Fit(mixed, s.request()),
              StatusIs(absl::StatusCode::kInvalidArgument, "num_sequences"));
}

TEST_F(HmmServiceTest, LimitsAreCheckedBeforeTheData) {
  server_->Shutdown();
  ServiceLimits limits;
  limits.max_sequences = 2;
  limits.max_symbols = 5;
  limits.max_k = 4;
  StartServer(limits);
  const hmm::HmmParams truth = SeparatedModel(hmm::EmissionType::kPoisson, 2, 1);
  const Dataset data = SampleHmm(truth, {10, 10, 10}, 1);
  const Streamed s(data);
  EXPECT_THAT(client_->Fit(HmmHeader(s, 2, v1::EMISSION_TYPE_POISSON), s.request()),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_sequences"));
  Streamed two = s;
  two.lengths = {15, 15};
  EXPECT_THAT(client_->Fit(HmmHeader(two, 5, v1::EMISSION_TYPE_POISSON), two.request()),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_k"));
  v1::FitHeader symbols = HmmHeader(two, 2, v1::EMISSION_TYPE_CATEGORICAL);
  symbols.mutable_spec()->mutable_hmm()->set_n_symbols(6);
  EXPECT_THAT(client_->Fit(symbols, two.request()),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_symbols"));
  EXPECT_THAT(client_->Fit(HmmHeader(two, 2, v1::EMISSION_TYPE_POISSON), two.request()), IsOk());
}

TEST_F(HmmServiceTest, SelectModelPicksTheNumberOfStatesByBic) {
  const hmm::HmmParams truth = SeparatedModel(hmm::EmissionType::kPoisson, 2, 1);
  const Dataset data = SampleHmm(truth, {150, 150}, 12);
  const Streamed s(data);
  v1::SelectModelHeader header;
  for (uint32_t k = 1; k <= 3; ++k) header.add_k(k);
  header.mutable_spec()->mutable_hmm()->set_emission(v1::EMISSION_TYPE_POISSON);
  s.Describe(header.mutable_shape());
  header.mutable_options()->set_seed(5);
  absl::StatusOr<v1::SelectionResult> result =
      client_->SelectModel(header, s.request(), [](const v1::SelectModelEvent&) {});
  ASSERT_THAT(result, IsOk());
  ASSERT_EQ(result->candidates_size(), 3);
  double best_bic = std::numeric_limits<double>::infinity();
  int best = -1;
  for (int i = 0; i < 3; ++i) {
    const v1::Candidate& c = result->candidates(i);
    EXPECT_EQ(c.k(), static_cast<uint32_t>(i + 1));
    EXPECT_EQ(c.spec().hmm().emission(), v1::EMISSION_TYPE_POISSON);
    hmm::HmmSpec spec;
    spec.k = i + 1;
    spec.emission = hmm::EmissionType::kPoisson;
    FitOptions options;
    options.seed = 5;
    absl::StatusOr<hmm::HmmFitResult> local = hmm::Fit(data, spec, options);
    ASSERT_THAT(local, IsOk());
    EXPECT_DOUBLE_EQ(c.summary().bic(), local->summary.bic) << "k=" << i + 1;
    if (local->summary.bic < best_bic) best_bic = local->summary.bic, best = i;
  }
  EXPECT_EQ(result->best(), static_cast<uint32_t>(best));
  EXPECT_EQ(best, 1);  // two states made the data
  EXPECT_EQ(result->best_fit().model().hmm().poisson().rates().rows(), 2u);
  // Covariance types belong to Gaussian emissions.
  header.add_covariance_types(v1::COVARIANCE_TYPE_DIAG);
  EXPECT_THAT(client_->SelectModel(header, s.request(), [](const v1::SelectModelEvent&) {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.covariance_types"));
}

TEST_F(HmmServiceTest, PosteriorRefusesAModelOfOtherColumnsAndAnImpossibleSequence) {
  hmm::HmmParams model = SeparatedModel(hmm::EmissionType::kCategorical, 2, 1, 2);
  const Dataset data = SampleHmm(model, {10, 10}, 3);
  const Streamed s(data);
  v1::FitResult fit;
  ToProto(model, {}, fit.mutable_model()->mutable_hmm());
  v1::PosteriorHeader header = PosteriorHeaderFor(fit, s);
  header.mutable_shape()->set_cols(2);
  EXPECT_THAT(client_->Score(header, s.request()),
              StatusIs(absl::StatusCode::kInvalidArgument, "header.shape.cols"));
  // Symbol 1 has probability 0 in both states.
  std::get<hmm::CategoricalEmissions>(model.emissions).probabilities << 1, 0, 1, 0;
  fit.Clear();
  ToProto(model, {}, fit.mutable_model()->mutable_hmm());
  Streamed with_one = s;
  std::fill(with_one.values.begin(), with_one.values.end(), 0.0);
  with_one.values[14] = 1;
  EXPECT_THAT(client_->Posterior(PosteriorHeaderFor(fit, with_one), with_one.request(),
                                 [](const v1::PosteriorResponse&) {}),
              StatusIs(absl::StatusCode::kFailedPrecondition, "sequence 2"));
}

}  // namespace
}  // namespace emfit::server
