#include "emfit/hmm/hmm.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "emfit/base/status_macros.h"
#include "emfit/em/restarts.h"
#include "emission/categorical.h"
#include "emission/gaussian.h"
#include "emission/poisson.h"
#include "hmm/family.h"
#include "hmm/init.h"

namespace emfit::hmm {
namespace {

using ::emfit::internal::CategoricalEmission;
using ::emfit::internal::GaussianEmission;
using ::emfit::internal::PoissonEmission;
using internal::ChainSpec;
using internal::HmmFamily;

// Rows with at least one observed value.
int64_t ObservedRows(const Dataset& data) {
  int64_t n = 0;
  for (Eigen::Index i = 0; i < data.rows(); ++i) n += !data.x.row(i).array().isNaN().all();
  return n;
}

// The sequences' offsets, or one sequence.
std::vector<int64_t> OffsetsOf(const Dataset& data) {
  return data.sequence_offsets.empty() ? std::vector<int64_t>{0, data.rows()}
                                       : data.sequence_offsets;
}

// Row weights are per sequence: each sequence's rows must share one.
absl::Status CheckSequenceWeights(const Dataset& data) {
  if (data.weights.size() == 0) return absl::OkStatus();
  const std::vector<int64_t> offsets = OffsetsOf(data);
  for (size_t q = 0; q + 1 < offsets.size(); ++q) {
    const double w = data.weights[offsets[q]];
    for (int64_t t = offsets[q] + 1; t < offsets[q + 1]; ++t) {
      if (data.weights[t] != w) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "data.weights: sequence %d (rows %d to %d) has weights %g (row %d) and %g (row %d); "
            "the rows of a sequence must share one weight",
            q + 1, offsets[q] + 1, offsets[q + 1], w, offsets[q] + 1, data.weights[t], t + 1));
      }
    }
  }
  return absl::OkStatus();
}

// A row of probabilities: finite, >= 0, summing to 1 within 1e-8.
bool OnSimplex(const Eigen::Ref<const Eigen::RowVectorXd>& p) {
  return p.allFinite() && (p.array() >= 0).all() && std::abs(p.sum() - 1.0) <= 1e-8;
}

// Every state reachable from an allowed start through allowed transitions, and every row
// allowing a transition; messages name `what` (spec.hmm or the model).
absl::Status CheckChainStructure(const Eigen::VectorXi& start, const Eigen::MatrixXi& transitions,
                                 absl::string_view what) {
  const int k = static_cast<int>(start.size());
  if ((start.array() == 0).all()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.start_allowed: every start probability is a structural zero", what));
  }
  for (int i = 0; i < k; ++i) {
    if ((transitions.row(i).array() == 0).all()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s.transitions_allowed: row %d (state %d) allows no transition; each state needs at "
          "least one",
          what, i + 1, i));
    }
  }
  std::vector<bool> reached(static_cast<size_t>(k), false);
  std::vector<int> frontier;
  for (int j = 0; j < k; ++j) {
    if (start[j]) {
      reached[j] = true;
      frontier.push_back(j);
    }
  }
  while (!frontier.empty()) {
    const int i = frontier.back();
    frontier.pop_back();
    for (int j = 0; j < k; ++j) {
      if (transitions(i, j) && !reached[j]) {
        reached[j] = true;
        frontier.push_back(j);
      }
    }
  }
  for (int j = 0; j < k; ++j) {
    if (!reached[j]) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s.transitions_allowed: state %d cannot be reached from an allowed start through "
          "allowed transitions",
          what, j));
    }
  }
  return absl::OkStatus();
}

// The structural zeros of a fit: the spec's masks and the zeros of the starting model.
absl::StatusOr<ChainSpec> MakeChainSpec(const HmmSpec& spec) {
  ChainSpec c;
  const int k = spec.k;
  c.start_allowed = spec.start_allowed.size() == 0 ? Eigen::VectorXi::Ones(k)
                                                   : Eigen::VectorXi(spec.start_allowed);
  c.transitions_allowed = spec.transitions_allowed.size() == 0
                              ? Eigen::MatrixXi::Ones(k, k)
                              : Eigen::MatrixXi(spec.transitions_allowed);
  c.start_allowed = (c.start_allowed.array() != 0).cast<int>();
  c.transitions_allowed = (c.transitions_allowed.array() != 0).cast<int>();
  if (spec.init_params.has_value()) {
    const HmmParams& p = *spec.init_params;
    for (int j = 0; j < k; ++j) {
      if (p.start[j] > 0 && !c.start_allowed[j]) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "init.start: state %d has probability %g where spec.hmm.start_allowed has a "
            "structural zero",
            j, p.start[j]));
      }
      if (p.start[j] == 0) c.start_allowed[j] = 0;
      for (int i = 0; i < k; ++i) {
        if (p.transitions(i, j) > 0 && !c.transitions_allowed(i, j)) {
          return absl::InvalidArgumentError(
              absl::StrFormat("init.transitions: %d -> %d has probability %g where "
                              "spec.hmm.transitions_allowed has a structural zero",
                              i, j, p.transitions(i, j)));
        }
        if (p.transitions(i, j) == 0) c.transitions_allowed(i, j) = 0;
      }
    }
  }
  EMFIT_RETURN_IF_ERROR(CheckChainStructure(c.start_allowed, c.transitions_allowed, "spec.hmm"));
  c.fix_start = spec.fix_start;
  c.fix_transitions = spec.fix_transitions;
  c.fix_emissions = spec.fix_emissions;
  c.forward_backward = spec.forward_backward;
  return c;
}

// Fits with an emission family already built on `data` (prepared for it); `emission_data` is
// what the emission's initialisation reads.
template <class Emission>
absl::StatusOr<HmmFitResult> FitFamily(const Dataset& data, const Dataset& emission_data,
                                       Emission emission, const HmmSpec& spec,
                                       std::optional<HmmParams> init_params,
                                       const FitOptions& options, const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(ChainSpec chain, MakeChainSpec(spec));
  const HmmFamily<Emission> family(data, std::move(emission), std::move(chain));
  std::vector<absl::StatusOr<HmmParams>> starts;
  if (init_params.has_value()) {
    // A warm start: every restart would be the same, so one runs.
    starts = InitialiseRestarts<HmmParams>(
        1, options, controls,
        [&](int, uint64_t) -> absl::StatusOr<HmmParams> { return *init_params; });
  } else {
    starts =
        InitialiseRestarts<HmmParams>(options.n_init, options, controls, [&](int, uint64_t seed) {
          return internal::InitialParams(family, data, emission_data, spec, seed, controls);
        });
  }
  EMFIT_ASSIGN_OR_RETURN(FitOutcome<HmmParams> outcome,
                         RunRestarts(family, std::move(starts), options, controls));
  HmmFitResult result;
  result.params = std::move(outcome.params);
  result.summary = std::move(outcome.summary);
  result.summary.rows_used = ObservedRows(data);
  result.summary.rows_skipped = data.rows() - result.summary.rows_used;
  return result;
}

absl::Status CheckInitEmissions(const HmmSpec& spec, int64_t cols) {
  if (!spec.init_params.has_value()) {
    if (spec.fix_start || spec.fix_transitions || spec.fix_emissions) {
      return absl::InvalidArgumentError(
          "spec.hmm.fix_*: holding parameters fixed needs starting parameters (init)");
    }
    return absl::OkStatus();
  }
  const HmmParams& p = *spec.init_params;
  EMFIT_RETURN_IF_ERROR(p.Validate("init"));
  if (p.k() != spec.k || p.emission_type() != spec.emission || p.dim() != cols) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "init: the starting model has k=%d, %s emissions reading %d columns; the spec asks for "
        "k=%d, %s emissions on %d columns",
        p.k(), EmissionTypeName(p.emission_type()), p.dim(), spec.k,
        EmissionTypeName(spec.emission), cols));
  }
  return absl::OkStatus();
}

absl::StatusOr<HmmFitResult> FitGaussian(Dataset data, const HmmSpec& spec,
                                         const FitOptions& options, const FitControls& controls) {
  EMFIT_RETURN_IF_ERROR(GaussianEmission::ValidateData(data));
  std::optional<HmmParams> init = spec.init_params;
  // Centred once by the observed column means (algorithms.md §1.1); the log-likelihood does not
  // change and the means are shifted back on output.
  const Eigen::RowVectorXd center =
      data.x.array().isNaN().select(0.0, data.x).colwise().sum().array() /
      (!data.x.array().isNaN()).cast<double>().colwise().sum().array();
  data.x.rowwise() -= center;
  if (init.has_value()) std::get<GaussianEmissions>(init->emissions).means.rowwise() -= center;
  // The mixture's k-means reads complete rows: those with an observed value, missing entries
  // at the column mean (0 after centring). EM itself is exact.
  std::optional<Dataset> complete;
  if (data.HasMissing() && !init.has_value()) {
    const int64_t used = ObservedRows(data);
    complete.emplace();
    complete->x.resize(used, data.cols());
    if (data.weights.size() != 0) complete->weights.resize(used);
    int64_t r = 0;
    for (Eigen::Index i = 0; i < data.rows(); ++i) {
      if (data.x.row(i).array().isNaN().all()) continue;
      complete->x.row(r) = data.x.row(i).array().isNaN().select(0.0, data.x.row(i));
      if (data.weights.size() != 0) complete->weights[r] = data.weights[i];
      ++r;
    }
  }
  GaussianEmission emission(data, spec.k, spec.covariance_type, spec.reg_covar);
  EMFIT_ASSIGN_OR_RETURN(HmmFitResult result,
                         FitFamily(data, complete.has_value() ? *complete : data,
                                   std::move(emission), spec, init, options, controls));
  std::get<GaussianEmissions>(result.params.emissions).means.rowwise() += center;
  return result;
}

}  // namespace

const char* EmissionTypeName(EmissionType type) {
  switch (type) {
    case EmissionType::kGaussian:
      return "gaussian";
    case EmissionType::kCategorical:
      return "categorical";
    case EmissionType::kPoisson:
      return "poisson";
  }
  return "unknown";
}

absl::StatusOr<EmissionType> ParseEmissionType(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "gaussian") return EmissionType::kGaussian;
  if (n == "categorical") return EmissionType::kCategorical;
  if (n == "poisson") return EmissionType::kPoisson;
  return absl::InvalidArgumentError(
      absl::StrFormat("emission: must be one of gaussian, categorical, poisson; got '%s'", name));
}

const char* InitMethodName(InitMethod init) {
  switch (init) {
    case InitMethod::kData:
      return "data";
    case InitMethod::kRandom:
      return "random";
  }
  return "unknown";
}

absl::StatusOr<InitMethod> ParseInitMethod(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "data" || n == "kmeans") return InitMethod::kData;
  if (n == "random") return InitMethod::kRandom;
  return absl::InvalidArgumentError(
      absl::StrFormat("init: must be one of data (or kmeans), random; got '%s'", name));
}

EmissionType HmmParams::emission_type() const {
  return static_cast<EmissionType>(emissions.index());
}

int HmmParams::dim() const {
  switch (emission_type()) {
    case EmissionType::kGaussian:
      return static_cast<int>(std::get<GaussianEmissions>(emissions).means.cols());
    case EmissionType::kCategorical:
      return 1;
    case EmissionType::kPoisson:
      return static_cast<int>(std::get<PoissonEmissions>(emissions).rates.cols());
  }
  return 0;
}

absl::Status HmmParams::Validate(absl::string_view what) const {
  const int kk = k();
  if (kk < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.start: must hold k >= 1 probabilities, got %d", what, kk));
  }
  if (transitions.rows() != kk || transitions.cols() != kk) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.transitions: expected k x k = %d x %d, got %d x %d", what, kk, kk,
                        transitions.rows(), transitions.cols()));
  }
  if (!OnSimplex(start.transpose())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.start: must be finite, >= 0 and sum to 1 (within 1e-8); the sum is %.17g", what,
        start.sum()));
  }
  for (int i = 0; i < kk; ++i) {
    if (!OnSimplex(transitions.row(i))) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s.transitions: row %d must be finite, >= 0 and sum to 1 (within 1e-8); the sum is "
          "%.17g",
          what, i + 1, transitions.row(i).sum()));
    }
  }
  const std::string where = absl::StrFormat("%s.emissions", what);
  switch (emission_type()) {
    case EmissionType::kGaussian: {
      const GaussianEmissions& g = std::get<GaussianEmissions>(emissions);
      if (g.means.rows() != kk || g.means.cols() < 1) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s.means: expected k=%d rows and at least 1 column, got %d x %d",
                            where, kk, g.means.rows(), g.means.cols()));
      }
      return GaussianEmission::AsMixture(g).Validate(where);
    }
    case EmissionType::kCategorical: {
      const CategoricalEmissions& c = std::get<CategoricalEmissions>(emissions);
      if (c.probabilities.rows() != kk || c.probabilities.cols() < 1) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s.probabilities: expected k=%d rows and at least 1 symbol, got %d x %d", where, kk,
            c.probabilities.rows(), c.probabilities.cols()));
      }
      for (int j = 0; j < kk; ++j) {
        if (!OnSimplex(c.probabilities.row(j))) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "%s.probabilities: row %d must be finite, >= 0 and sum to 1 (within 1e-8)", where,
              j + 1));
        }
      }
      return absl::OkStatus();
    }
    case EmissionType::kPoisson: {
      const PoissonEmissions& p = std::get<PoissonEmissions>(emissions);
      if (p.rates.rows() != kk || p.rates.cols() < 1) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s.rates: expected k=%d rows and at least 1 column, got %d x %d",
                            where, kk, p.rates.rows(), p.rates.cols()));
      }
      if (!p.rates.allFinite() || !(p.rates.array() > 0).all()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s.rates: must be finite and > 0", where));
      }
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status HmmSpec::Validate() const {
  if (k < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("spec.hmm.k: must be >= 1, got %d", k));
  }
  if (!std::isfinite(reg_covar) || reg_covar < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("spec.hmm.reg_covar: must be finite and >= 0, got %g", reg_covar));
  }
  if (num_symbols < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "spec.hmm.num_symbols: must be >= 0 (0: from the data), got %d", num_symbols));
  }
  if (start_allowed.size() != 0 && start_allowed.size() != k) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "spec.hmm.start_allowed: expected k=%d entries, got %d", k, start_allowed.size()));
  }
  if (transitions_allowed.size() != 0 &&
      (transitions_allowed.rows() != k || transitions_allowed.cols() != k)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("spec.hmm.transitions_allowed: expected k x k = %d x %d, got %d x %d", k, k,
                        transitions_allowed.rows(), transitions_allowed.cols()));
  }
  return absl::OkStatus();
}

absl::Status HmmSpec::Validate(int64_t rows, int64_t cols) const {
  EMFIT_RETURN_IF_ERROR(Validate());
  if (k > rows) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "spec.hmm.k: must be between 1 and the number of rows (%d), got %d", rows, k));
  }
  if (cols < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("data: must have at least 1 column, got %d", cols));
  }
  if (emission == EmissionType::kCategorical && cols != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data: categorical emissions read one column of symbols, got %d columns", cols));
  }
  EMFIT_RETURN_IF_ERROR(CheckInitEmissions(*this, cols));
  if (init_params.has_value()) {
    if (const auto* g = std::get_if<GaussianEmissions>(&init_params->emissions);
        g != nullptr && g->covariance_type != covariance_type) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "init: the starting model has covariance %s; the spec asks for %s",
          gmm::CovarianceTypeName(g->covariance_type), gmm::CovarianceTypeName(covariance_type)));
    }
    if (const auto* c = std::get_if<CategoricalEmissions>(&init_params->emissions);
        c != nullptr && num_symbols != 0 && num_symbols != c->probabilities.cols()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("init: the starting model has %d symbols; spec.hmm.num_symbols is %d",
                          c->probabilities.cols(), num_symbols));
    }
  }
  return MakeChainSpec(*this).status();
}

int64_t NumFreeParameters(const HmmParams& params) {
  const int k = params.k();
  auto free_in = [](const Eigen::Ref<const Eigen::RowVectorXd>& row) {
    return std::max<int64_t>(0, (row.array() > 0).count() - 1);
  };
  int64_t p = free_in(params.start.transpose());
  for (int i = 0; i < k; ++i) p += free_in(params.transitions.row(i));
  switch (params.emission_type()) {
    case EmissionType::kGaussian: {
      const GaussianEmissions& g = std::get<GaussianEmissions>(params.emissions);
      return p + gmm::NumFreeParameters(g.covariance_type, k, static_cast<int>(g.means.cols())) -
             (k - 1);
    }
    case EmissionType::kCategorical:
      return p + static_cast<int64_t>(k) *
                     (std::get<CategoricalEmissions>(params.emissions).probabilities.cols() - 1);
    case EmissionType::kPoisson:
      return p + std::get<PoissonEmissions>(params.emissions).rates.size();
  }
  return p;
}

absl::StatusOr<HmmFitResult> Fit(Dataset data, const HmmSpec& spec, const FitOptions& options,
                                 const FitControls& controls) {
  const absl::Time start = absl::Now();
  EMFIT_RETURN_IF_ERROR(options.Validate());
  EMFIT_RETURN_IF_ERROR(data.ValidateAllowingMissing());
  EMFIT_RETURN_IF_ERROR(spec.Validate(data.rows(), data.cols()));
  EMFIT_RETURN_IF_ERROR(CheckSequenceWeights(data));
  const int64_t observed = ObservedRows(data);
  if (spec.k > observed) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "spec.hmm.k: must be between 1 and the number of steps with an observed value (%d), got "
        "%d",
        observed, spec.k));
  }
  absl::StatusOr<HmmFitResult> result;
  switch (spec.emission) {
    case EmissionType::kGaussian:
      result = FitGaussian(std::move(data), spec, options, controls);
      break;
    case EmissionType::kCategorical: {
      int symbols = spec.num_symbols;
      if (spec.init_params.has_value()) {
        symbols = static_cast<int>(
            std::get<CategoricalEmissions>(spec.init_params->emissions).probabilities.cols());
      }
      if (symbols == 0 && data.cols() == 1) symbols = CategoricalEmission::SymbolsIn(data);
      EMFIT_RETURN_IF_ERROR(CategoricalEmission::ValidateData(data, symbols));
      CategoricalEmission emission(data, spec.k, symbols);
      result =
          FitFamily(data, data, std::move(emission), spec, spec.init_params, options, controls);
      break;
    }
    case EmissionType::kPoisson: {
      EMFIT_RETURN_IF_ERROR(PoissonEmission::ValidateData(data));
      PoissonEmission emission(data, spec.k);
      result =
          FitFamily(data, data, std::move(emission), spec, spec.init_params, options, controls);
      break;
    }
  }
  if (result.ok()) result->summary.elapsed_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

namespace {

// Checks `data` against `params` and runs `fn(family)` with the family of the model's emission.
template <class Fn>
absl::Status WithFamily(const HmmParams& params, const Dataset& data, Fn&& fn) {
  EMFIT_RETURN_IF_ERROR(params.Validate());
  EMFIT_RETURN_IF_ERROR(data.ValidateAllowingMissing());
  if (data.cols() != params.dim()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("data: the model reads %d columns (%s emissions), the data have %d",
                        params.dim(), EmissionTypeName(params.emission_type()), data.cols()));
  }
  const int k = params.k();
  switch (params.emission_type()) {
    case EmissionType::kGaussian: {
      const auto& g = std::get<GaussianEmissions>(params.emissions);
      return fn(HmmFamily<GaussianEmission>(data, GaussianEmission(data, k, g.covariance_type, 0.0),
                                            ChainSpec{}));
    }
    case EmissionType::kCategorical: {
      const int symbols =
          static_cast<int>(std::get<CategoricalEmissions>(params.emissions).probabilities.cols());
      EMFIT_RETURN_IF_ERROR(CategoricalEmission::ValidateData(data, symbols));
      return fn(
          HmmFamily<CategoricalEmission>(data, CategoricalEmission(data, k, symbols), ChainSpec{}));
    }
    case EmissionType::kPoisson:
      EMFIT_RETURN_IF_ERROR(PoissonEmission::ValidateData(data));
      return fn(HmmFamily<PoissonEmission>(data, PoissonEmission(data, k), ChainSpec{}));
  }
  return absl::InternalError("unknown emission type");
}

}  // namespace

namespace {

// The posteriors of the sequences [first, last) of `family`'s data into *out (resized).
template <class Family>
absl::Status InferRange(const Family& family, const HmmParams& params, const FitControls& controls,
                        int64_t first, int64_t last, Posteriors* out) {
  const std::vector<int64_t>& offsets = family.offsets();
  const int64_t rows = offsets[last] - offsets[first];
  out->state_probabilities.resize(rows, params.k());
  out->viterbi_path.resize(rows);
  out->log_likelihood.resize(last - first);
  out->viterbi_log_probability.resize(last - first);
  internal::SequenceOutputs outputs;
  outputs.log_likelihood = out->log_likelihood.data();
  outputs.viterbi_log_probability = out->viterbi_log_probability.data();
  outputs.viterbi_path = out->viterbi_path.data();
  return family.Infer(params, controls, outputs, out->state_probabilities.data(), first, last);
}

}  // namespace

absl::Status ForEachPosteriorGroup(
    const HmmParams& params, const Dataset& data, int64_t max_rows, const FitControls& controls,
    absl::FunctionRef<absl::Status(int64_t first_sequence, int64_t first_row, const Posteriors&)>
        emit) {
  return WithFamily(params, data, [&](const auto& family) -> absl::Status {
    const std::vector<int64_t>& offsets = family.offsets();
    const int64_t sequences = static_cast<int64_t>(offsets.size()) - 1;
    Posteriors group;
    for (int64_t first = 0; first < sequences;) {
      int64_t last = first + 1;
      while (last < sequences && offsets[last + 1] - offsets[first] <= max_rows) ++last;
      EMFIT_RETURN_IF_ERROR(InferRange(family, params, controls, first, last, &group));
      EMFIT_RETURN_IF_ERROR(emit(first, offsets[first], group));
      first = last;
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<Posteriors> ComputePosteriors(const HmmParams& params, const Dataset& data,
                                             const FitControls& controls) {
  Posteriors out;
  EMFIT_RETURN_IF_ERROR(WithFamily(params, data, [&](const auto& family) -> absl::Status {
    return InferRange(family, params, controls, 0,
                      static_cast<int64_t>(family.offsets().size()) - 1, &out);
  }));
  return out;
}

absl::StatusOr<ScoreResult> Score(const HmmParams& params, const Dataset& data,
                                  const FitControls& controls) {
  EMFIT_RETURN_IF_ERROR(data.ValidateAllowingMissing());
  EMFIT_RETURN_IF_ERROR(CheckSequenceWeights(data));
  ScoreResult out;
  EMFIT_RETURN_IF_ERROR(WithFamily(params, data, [&](const auto& family) -> absl::Status {
    const std::vector<int64_t>& offsets = family.offsets();
    Eigen::VectorXd per_sequence(static_cast<Eigen::Index>(offsets.size()) - 1);
    internal::SequenceOutputs outputs;
    outputs.log_likelihood = per_sequence.data();
    EMFIT_RETURN_IF_ERROR(family.Infer(params, controls, outputs, nullptr));
    for (size_t q = 0; q + 1 < offsets.size(); ++q) {
      const double w = data.weights.size() == 0 ? 1.0 : data.weights[offsets[q]];
      out.log_likelihood += w * per_sequence[q];
    }
    out.sequences = per_sequence.size();
    const double weight = family.total_weight();
    out.mean_log_likelihood = weight > 0 ? out.log_likelihood / weight : 0.0;
    out.num_free_parameters = NumFreeParameters(params);
    out.bic = Bic(out.log_likelihood, out.num_free_parameters, weight);
    out.aic = Aic(out.log_likelihood, out.num_free_parameters);
    return absl::OkStatus();
  }));
  out.rows_used = ObservedRows(data);
  out.rows_skipped = data.rows() - out.rows_used;
  return out;
}

}  // namespace emfit::hmm
