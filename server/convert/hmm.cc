#include "convert/hmm.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "convert/common.h"
#include "emfit/base/status_macros.h"

namespace emfit::server {
namespace {

v1::EmissionType EmissionToProto(hmm::EmissionType type) {
  switch (type) {
    case hmm::EmissionType::kGaussian:
      return v1::EMISSION_TYPE_GAUSSIAN;
    case hmm::EmissionType::kCategorical:
      return v1::EMISSION_TYPE_CATEGORICAL;
    case hmm::EmissionType::kPoisson:
      return v1::EMISSION_TYPE_POISSON;
  }
  return v1::EMISSION_TYPE_UNSPECIFIED;
}

absl::StatusOr<hmm::EmissionType> EmissionFromProto(v1::EmissionType type,
                                                    absl::string_view field) {
  switch (type) {
    case v1::EMISSION_TYPE_UNSPECIFIED:
    case v1::EMISSION_TYPE_GAUSSIAN:
      return hmm::EmissionType::kGaussian;
    case v1::EMISSION_TYPE_CATEGORICAL:
      return hmm::EmissionType::kCategorical;
    case v1::EMISSION_TYPE_POISSON:
      return hmm::EmissionType::kPoisson;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: unknown emission type %d", field, static_cast<int>(type)));
  }
}

// Symbol names: none, or distinct non-empty names.
absl::Status CheckSymbolNames(const std::vector<std::string>& names, absl::string_view field) {
  absl::flat_hash_set<absl::string_view> seen;
  for (size_t m = 0; m < names.size(); ++m) {
    if (names[m].empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: symbol %d has an empty name", field, m));
    }
    if (!seen.insert(names[m]).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: the name \"%s\" is given twice (symbols %d and another)", field, names[m], m));
    }
  }
  return absl::OkStatus();
}

// Structural-zero masks hold 0 (not allowed) or 1 (allowed).
absl::StatusOr<Eigen::MatrixXi> Mask(const Eigen::MatrixXd& m, absl::string_view field) {
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    for (Eigen::Index j = 0; j < m.cols(); ++j) {
      if (m(i, j) != 0 && m(i, j) != 1) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: entry (%d, %d) is %g; use 0 (a structural zero) or 1 (allowed)",
                            field, i, j, m(i, j)));
      }
    }
  }
  return m.cast<int>();
}

void SpecToProto(const HmmSpecAndNames& in, v1::HiddenMarkovModelSpec* out) {
  const hmm::HmmSpec& spec = in.spec;
  out->set_k(static_cast<uint32_t>(spec.k));
  out->set_emission(EmissionToProto(spec.emission));
  if (spec.emission == hmm::EmissionType::kGaussian) {
    out->set_covariance_type(ToProto(spec.covariance_type));
    out->set_reg_covar(spec.reg_covar);
  }
  out->set_n_symbols(static_cast<uint32_t>(spec.num_symbols));
  out->mutable_symbols()->Assign(in.symbols.begin(), in.symbols.end());
  out->set_init(spec.init == hmm::InitMethod::kRandom ? v1::INIT_METHOD_RANDOM
                                                      : v1::INIT_METHOD_KMEANS);
  out->set_fix_start(spec.fix_start);
  out->set_fix_transitions(spec.fix_transitions);
  out->set_fix_emissions(spec.fix_emissions);
  if (spec.transitions_allowed.size() != 0) {
    ToProto(spec.transitions_allowed.cast<double>(), out->mutable_allowed_transitions());
  }
  for (Eigen::Index j = 0; j < spec.start_allowed.size(); ++j) {
    out->add_allowed_start(static_cast<uint32_t>(spec.start_allowed[j]));
  }
}

// A hidden Markov model's data are sequences of rows: a tree and row names belong to Mk models.
absl::Status CheckSequences(const v1::DataShape& shape) {
  if (shape.newick_bytes() != 0 || shape.row_names()) {
    return absl::InvalidArgumentError(
        "header.shape: a hidden Markov model takes sequences of rows; newick_bytes and row_names "
        "belong to Mk models");
  }
  return absl::OkStatus();
}

// Free parameters of a model of `spec` on `cols` columns with M symbols, before any structural
// zeros: (k-1) + k(k-1) + the emission's.
int64_t ModelSize(const hmm::HmmSpec& spec, int64_t cols, int64_t symbols) {
  const int64_t k = spec.k;
  const int64_t chain = (k - 1) + k * (k - 1);
  switch (spec.emission) {
    case hmm::EmissionType::kGaussian:
      return chain + gmm::NumFreeParameters(spec.covariance_type, spec.k, static_cast<int>(cols)) -
             (k - 1);
    case hmm::EmissionType::kCategorical:
      return chain + k * std::max<int64_t>(symbols - 1, 0);
    case hmm::EmissionType::kPoisson:
      return chain + k * cols;
  }
  return chain;
}

absl::Status CheckSymbolCount(uint64_t symbols, const ServiceLimits& limits,
                              absl::string_view field) {
  if (symbols > limits.max_symbols) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: at most %d symbols (--max_symbols), got %d", field, limits.max_symbols, symbols));
  }
  return absl::OkStatus();
}

// Checks a completed spec (its starting model included) against the shape and the limits.
absl::Status CheckPlanned(const HmmSpecAndNames& spec, const v1::DataShape& shape,
                          const ServiceLimits& limits, absl::string_view field) {
  const auto rows = static_cast<int64_t>(shape.rows());
  const auto cols = static_cast<int64_t>(shape.cols());
  EMFIT_RETURN_IF_ERROR(spec.spec.Validate(rows, cols));
  int64_t symbols = spec.spec.num_symbols;
  if (spec.spec.emission == hmm::EmissionType::kCategorical && spec.spec.init_params.has_value()) {
    symbols =
        std::get<hmm::CategoricalEmissions>(spec.spec.init_params->emissions).probabilities.cols();
  }
  return CheckModelSize(ModelSize(spec.spec, cols, symbols), limits, field);
}

}  // namespace

absl::StatusOr<HmmSpecAndNames> FromProto(const v1::HiddenMarkovModelSpec& spec) {
  HmmSpecAndNames out;
  hmm::HmmSpec& s = out.spec;
  s.k = static_cast<int>(std::min<uint32_t>(spec.k(), 1u << 30));
  EMFIT_ASSIGN_OR_RETURN(s.emission, EmissionFromProto(spec.emission(), "spec.hmm.emission"));
  EMFIT_ASSIGN_OR_RETURN(s.covariance_type,
                         FromProto(spec.covariance_type(), "spec.hmm.covariance_type"));
  if (spec.has_reg_covar()) s.reg_covar = spec.reg_covar();
  out.symbols.assign(spec.symbols().begin(), spec.symbols().end());
  EMFIT_RETURN_IF_ERROR(CheckSymbolNames(out.symbols, "spec.hmm.symbols"));
  s.num_symbols = static_cast<int>(std::min<uint32_t>(spec.n_symbols(), 1u << 30));
  if (!out.symbols.empty()) {
    if (s.num_symbols != 0 && static_cast<size_t>(s.num_symbols) != out.symbols.size()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("spec.hmm.symbols: %d names for n_symbols=%d symbols", out.symbols.size(),
                          s.num_symbols));
    }
    s.num_symbols = static_cast<int>(out.symbols.size());
  }
  if ((s.num_symbols != 0 || !out.symbols.empty()) &&
      s.emission != hmm::EmissionType::kCategorical) {
    return absl::InvalidArgumentError(
        "spec.hmm.n_symbols: symbols belong to categorical emissions");
  }
  switch (spec.init()) {
    case v1::INIT_METHOD_UNSPECIFIED:
    case v1::INIT_METHOD_KMEANS:
      s.init = hmm::InitMethod::kData;
      break;
    case v1::INIT_METHOD_RANDOM:
      s.init = hmm::InitMethod::kRandom;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrFormat(
          "spec.hmm.init: hidden Markov models start from KMEANS (from the data) or RANDOM, got "
          "%s",
          v1::InitMethod_Name(spec.init())));
  }
  s.fix_start = spec.fix_start();
  s.fix_transitions = spec.fix_transitions();
  s.fix_emissions = spec.fix_emissions();
  if (spec.has_allowed_transitions() && spec.allowed_transitions().values_size() > 0) {
    EMFIT_ASSIGN_OR_RETURN(Eigen::MatrixXd m,
                           FromProto(spec.allowed_transitions(), "spec.hmm.allowed_transitions"));
    EMFIT_ASSIGN_OR_RETURN(s.transitions_allowed, Mask(m, "spec.hmm.allowed_transitions"));
  }
  if (spec.allowed_start_size() > 0) {
    s.start_allowed.resize(spec.allowed_start_size());
    for (int j = 0; j < spec.allowed_start_size(); ++j) {
      if (spec.allowed_start(j) > 1) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "spec.hmm.allowed_start: entry %d is %d; use 0 (a structural zero) or 1 (allowed)", j,
            spec.allowed_start(j)));
      }
      s.start_allowed[j] = static_cast<int>(spec.allowed_start(j));
    }
  }
  // Checked against the data's shape when planned (a SelectModel template has no k).
  return out;
}

void ToProto(const hmm::HmmParams& params, const std::vector<std::string>& symbols,
             v1::HiddenMarkovModel* out) {
  out->mutable_startprob()->Assign(params.start.data(), params.start.data() + params.start.size());
  ToProto(params.transitions, out->mutable_transmat());
  switch (params.emission_type()) {
    case hmm::EmissionType::kGaussian: {
      const auto& g = std::get<hmm::GaussianEmissions>(params.emissions);
      v1::GaussianEmissions* o = out->mutable_gaussian();
      o->set_covariance_type(ToProto(g.covariance_type));
      ToProto(g.means, o->mutable_means());
      ToProto(g.covariances, o->mutable_covariances());
      break;
    }
    case hmm::EmissionType::kCategorical: {
      v1::CategoricalEmissions* o = out->mutable_categorical();
      ToProto(std::get<hmm::CategoricalEmissions>(params.emissions).probabilities,
              o->mutable_probabilities());
      o->mutable_symbols()->Assign(symbols.begin(), symbols.end());
      break;
    }
    case hmm::EmissionType::kPoisson:
      ToProto(std::get<hmm::PoissonEmissions>(params.emissions).rates,
              out->mutable_poisson()->mutable_rates());
      break;
  }
}

absl::StatusOr<HmmModelAndNames> FromProto(const v1::HiddenMarkovModel& model,
                                           absl::string_view field) {
  HmmModelAndNames out;
  hmm::HmmParams& p = out.params;
  p.start = Eigen::Map<const Eigen::VectorXd>(model.startprob().data(), model.startprob_size());
  EMFIT_ASSIGN_OR_RETURN(p.transitions,
                         FromProto(model.transmat(), absl::StrCat(field, ".transmat")));
  if (p.transitions.rows() != p.k() || p.transitions.cols() != p.k()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.transmat: expected k x k = %d x %d (k from startprob), got %d x %d",
                        field, p.k(), p.k(), p.transitions.rows(), p.transitions.cols()));
  }
  switch (model.emissions_case()) {
    case v1::HiddenMarkovModel::kGaussian: {
      const std::string where = absl::StrCat(field, ".gaussian");
      hmm::GaussianEmissions g;
      EMFIT_ASSIGN_OR_RETURN(g.covariance_type, FromProto(model.gaussian().covariance_type(),
                                                          absl::StrCat(where, ".covariance_type")));
      EMFIT_ASSIGN_OR_RETURN(g.means,
                             FromProto(model.gaussian().means(), absl::StrCat(where, ".means")));
      EMFIT_ASSIGN_OR_RETURN(g.covariances, FromProto(model.gaussian().covariances(),
                                                      absl::StrCat(where, ".covariances")));
      p.emissions = std::move(g);
      break;
    }
    case v1::HiddenMarkovModel::kCategorical: {
      const std::string where = absl::StrCat(field, ".categorical");
      hmm::CategoricalEmissions c;
      EMFIT_ASSIGN_OR_RETURN(c.probabilities, FromProto(model.categorical().probabilities(),
                                                        absl::StrCat(where, ".probabilities")));
      out.symbols.assign(model.categorical().symbols().begin(),
                         model.categorical().symbols().end());
      if (!out.symbols.empty() &&
          out.symbols.size() != static_cast<size_t>(c.probabilities.cols())) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s.symbols: %d names for %d symbols (columns of probabilities)", where,
                            out.symbols.size(), c.probabilities.cols()));
      }
      EMFIT_RETURN_IF_ERROR(CheckSymbolNames(out.symbols, absl::StrCat(where, ".symbols")));
      p.emissions = std::move(c);
      break;
    }
    case v1::HiddenMarkovModel::kPoisson: {
      hmm::PoissonEmissions e;
      EMFIT_ASSIGN_OR_RETURN(
          e.rates, FromProto(model.poisson().rates(), absl::StrCat(field, ".poisson.rates")));
      p.emissions = std::move(e);
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": no emissions are set; expected one of gaussian, categorical, poisson"));
  }
  EMFIT_RETURN_IF_ERROR(p.Validate(field));
  return out;
}

absl::Status PlanSpec(HmmSpecAndNames* spec, const v1::ModelSpec& sent, const v1::Model* init,
                      const v1::DataShape& shape, const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckSequences(shape));
  // The values sent, not the clamped ones, so that the messages quote the request.
  EMFIT_RETURN_IF_ERROR(CheckK(sent.hmm().k(), limits, "spec.hmm.k"));
  EMFIT_RETURN_IF_ERROR(
      CheckSymbolCount(std::max<uint64_t>(sent.hmm().n_symbols(), sent.hmm().symbols_size()),
                       limits, "spec.hmm.n_symbols"));
  if (init != nullptr) {
    EMFIT_ASSIGN_OR_RETURN(HmmModelAndNames start, FromProto(init->hmm(), "header.init.hmm"));
    EMFIT_RETURN_IF_ERROR(
        CheckK(static_cast<uint32_t>(start.params.k()), limits, "header.init.hmm"));
    if (const auto* c = std::get_if<hmm::CategoricalEmissions>(&start.params.emissions)) {
      EMFIT_RETURN_IF_ERROR(CheckSymbolCount(static_cast<uint64_t>(c->probabilities.cols()), limits,
                                             "header.init.hmm.categorical.probabilities"));
    }
    if (!start.symbols.empty()) {
      if (!spec->symbols.empty() && spec->symbols != start.symbols) {
        return absl::InvalidArgumentError(
            "spec.hmm.symbols: the names differ from the starting model's "
            "(header.init.hmm.categorical.symbols)");
      }
      spec->symbols = std::move(start.symbols);
    }
    spec->spec.init_params = std::move(start.params);
  }
  if (spec->spec.emission == hmm::EmissionType::kCategorical && spec->spec.num_symbols == 0 &&
      !spec->spec.init_params.has_value()) {
    // The symbols' count bounds the model's size: it must be known before the data arrive.
    return absl::InvalidArgumentError(
        "spec.hmm.n_symbols: categorical emissions need the number of symbols (or their names, "
        "or a starting model)");
  }
  return CheckPlanned(*spec, shape, limits, "spec.hmm");
}

absl::Status PlanModel(HmmModelAndNames* model, const v1::DataShape& shape,
                       const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckSequences(shape));
  const hmm::HmmParams& p = model->params;
  EMFIT_RETURN_IF_ERROR(CheckK(static_cast<uint32_t>(p.k()), limits, "header.model.hmm"));
  if (const auto* c = std::get_if<hmm::CategoricalEmissions>(&p.emissions)) {
    EMFIT_RETURN_IF_ERROR(CheckSymbolCount(static_cast<uint64_t>(c->probabilities.cols()), limits,
                                           "header.model.hmm.categorical.probabilities"));
  }
  if (static_cast<uint64_t>(p.dim()) != shape.cols()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "header.shape.cols: the model reads %d columns (%s emissions), the data declare %d",
        p.dim(), hmm::EmissionTypeName(p.emission_type()), shape.cols()));
  }
  return absl::OkStatus();
}

namespace {

constexpr uint64_t kDouble = sizeof(double);
// The forward-backward's two per-step buffers of one thread hold at most 2^20 doubles each
// (core/src/hmm/sequence.h, DefaultSegmentSteps), and the densities of a block of 512 steps.
constexpr uint64_t kSegmentValues = uint64_t{1} << 20;
constexpr uint64_t kBlockRows = 512;

// Doubles of one set of parameters: start, transitions, emissions.
uint64_t HmmParamValues(const hmm::HmmSpec& spec, uint64_t k, uint64_t d) {
  uint64_t emissions = k * d;  // Poisson rates
  if (spec.emission == hmm::EmissionType::kGaussian) {
    emissions = ParamValues(spec.covariance_type, k, d);
  } else if (spec.emission == hmm::EmissionType::kCategorical) {
    emissions = k * static_cast<uint64_t>(std::max(1, spec.num_symbols));
  }
  return k + k * k + emissions;
}

// Doubles of one set of emission statistics (core/src/emission/: per state, the weight and the
// weighted sums; Gaussian emissions the mixture's partial sums, categorical a count per symbol).
uint64_t EmissionStatsValues(const hmm::HmmSpec& spec, uint64_t k, uint64_t d) {
  switch (spec.emission) {
    case hmm::EmissionType::kGaussian:
      return k * (d + 1) + k * d * d;
    case hmm::EmissionType::kCategorical:
      return k * static_cast<uint64_t>(std::max(1, spec.num_symbols)) + k;
    case hmm::EmissionType::kPoisson:
      return 2 * k * d + k;
  }
  return k * (d + 1) + k * d * d;
}

// One E-step whose work `threads` threads share (core/src/hmm/family.h): each thread's Work
// (forward-backward buffers of a segment at most, block densities and scratch, a long
// sequence's provisional statistics and up to 64 inner partials of its blocks), the stripes'
// partial sums, the per-sequence log-likelihoods.
uint64_t HmmEStepBytes(const hmm::HmmSpec& spec, const v1::DataShape& shape, uint64_t k,
                       uint64_t threads) {
  const uint64_t n = shape.rows(), d = shape.cols();
  const uint64_t sequences = std::max<uint64_t>(1, shape.num_sequences());
  const uint64_t stats = EmissionStatsValues(spec, k, d);
  const uint64_t inner = std::min<uint64_t>(64, (n + kBlockRows - 1) / kBlockRows);
  const uint64_t work = 2 * std::min(n * k, kSegmentValues + kBlockRows * k) +
                        kBlockRows * (3 * k + 4 * d + 8) + k * k * 4 + (2 + inner) * stats;
  const uint64_t stripes = std::min<uint64_t>(64, (n + kBlockRows - 1) / kBlockRows) + 1;
  return (threads * work + stripes * (k * k + k + stats) + 2 * sequences) * kDouble;
}

}  // namespace

IterationCost CostOfIteration(const HmmSpecAndNames& spec, const v1::DataShape& shape) {
  // Each step's values, and the forward-backward's k x k transitions.
  const double k = spec.spec.k;
  return {static_cast<double>(shape.rows()) * (static_cast<double>(shape.cols()) + k * k),
          absl::StrFormat("%d steps x (%d columns + k^2 = %.0f transitions)", shape.rows(),
                          shape.cols(), k * k)};
}

uint64_t ResultBytes(const HmmSpecAndNames& spec, const v1::DataShape& shape,
                     const FitOptions& options) {
  const uint64_t k = static_cast<uint64_t>(spec.spec.k);
  const uint64_t max_iter = static_cast<uint64_t>(std::max(0, options.max_iter));
  uint64_t names = 0;
  for (const std::string& s : spec.symbols) names += s.size() + 32;
  // The model and its symbols, its history, a summary per restart (and the copies of
  // converting them).
  return 2 * ((HmmParamValues(spec.spec, k, shape.cols()) + max_iter + 1) * kDouble + names) +
         static_cast<uint64_t>(std::max(1, options.n_init)) * 512;
}

uint64_t WorkingBytes(const HmmSpecAndNames& spec, const v1::DataShape& shape,
                      const FitOptions& options, int threads) {
  const uint64_t k = static_cast<uint64_t>(spec.spec.k), n = shape.rows();
  const uint64_t restarts =
      spec.spec.init_params.has_value() ? 1 : static_cast<uint64_t>(std::max(1, options.n_init));
  const uint64_t running =
      std::min<uint64_t>(restarts, static_cast<uint64_t>(std::max(1, threads)));
  const uint64_t max_iter = static_cast<uint64_t>(std::max(0, options.max_iter));
  const uint64_t params = HmmParamValues(spec.spec, k, shape.cols()) * kDouble;
  // Each running restart: its initialisation (a mixture's k-means on the steps: five values per
  // step) then its E-step, and its current, previous and (SQUAREM) extrapolated parameters.
  // Each running restart's E-step keeps a forward-backward scratch for every thread that
  // helped it (core/src/hmm/family.h, Work), which may be every thread of the job.
  const uint64_t per_restart =
      std::max(5 * n * kDouble,
               HmmEStepBytes(spec.spec, shape, k, static_cast<uint64_t>(std::max(1, threads)))) +
      8 * params;
  const uint64_t per_restart_kept = 2 * params + 2 * (max_iter + 1) * kDouble + 512;
  // The sequence offsets; the data's copy with gaps filled for the initialisation.
  const uint64_t layout =
      (std::max<uint64_t>(1, shape.num_sequences()) + 1) * kDouble + n * shape.cols() * kDouble;
  return layout + running * per_restart + restarts * per_restart_kept +
         ResultBytes(spec, shape, options);
}

uint64_t WorkingBytes(const HmmModelAndNames& model, const v1::DataShape& shape, int threads) {
  const uint64_t k = static_cast<uint64_t>(model.params.k()), n = shape.rows();
  // Score: one E-step. Posterior: a group of whole sequences (about 2^22 / k steps, or one
  // longer sequence alone, which may be all but one step per other sequence) with its state
  // probabilities, forward and backward variables, Viterbi back-pointers and path; and about
  // 1 MiB per message, up to five queued or in flight, each also as a message.
  hmm::HmmSpec spec;
  spec.k = model.params.k();
  spec.emission = model.params.emission_type();
  const uint64_t sequences = std::max<uint64_t>(1, shape.num_sequences());
  const uint64_t longest = n - std::min(n, sequences - 1);
  const uint64_t group = std::min(n, std::max((uint64_t{1} << 22) / k, longest));
  const uint64_t posterior = group * (3 * k * kDouble + k * sizeof(int32_t) + sizeof(int32_t)) +
                             2 * 6 * (uint64_t{1} << 20);
  return std::max(HmmEStepBytes(spec, shape, k, threads), posterior);
}

absl::StatusOr<v1::FitResult> FitJob(const HmmSpecAndNames& spec, Upload upload,
                                     const FitOptions& options, const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(hmm::HmmFitResult fit,
                         hmm::Fit(std::move(upload.data), spec.spec, options, controls));
  v1::FitResult out;
  ToProto(fit.params, spec.symbols, out.mutable_model()->mutable_hmm());
  ToProto(fit.summary, out.mutable_summary());
  return out;
}

absl::Status PosteriorJob(const HmmModelAndNames& model, const Upload& upload,
                          const FitControls& controls, const PosteriorEmitter& emit) {
  const Dataset& data = upload.data;
  const int k = model.params.k();
  // About 1 MiB of state probabilities per message, far below the 4 MiB default limit; the
  // sequences are computed in groups of whole sequences of about 32 MiB of them (a longer
  // sequence alone: its forward-backward needs all its steps).
  const int64_t block = std::max<int64_t>(1, (1 << 17) / (k + 2));
  const int64_t group = std::max<int64_t>(block, (int64_t{1} << 22) / k);
  const std::vector<int64_t> offsets =
      data.sequence_offsets.empty() ? std::vector<int64_t>{0, data.rows()} : data.sequence_offsets;
  return hmm::ForEachPosteriorGroup(
      model.params, data, group, controls,
      [&](int64_t first_sequence, int64_t first_row, const hmm::Posteriors& post) -> absl::Status {
        const int64_t rows = post.state_probabilities.rows();
        // The next sequence (index into the whole data) to end in a block.
        int64_t q = first_sequence;
        for (int64_t begin = 0; begin < rows; begin += block) {
          EMFIT_RETURN_IF_ERROR(CheckCancelled(controls));
          const int64_t n = std::min(block, rows - begin);
          v1::PosteriorResponse r;
          r.set_first_row(static_cast<uint64_t>(first_row + begin));
          ToProto(post.state_probabilities.middleRows(begin, n), r.mutable_responsibilities());
          for (int64_t i = 0; i < n; ++i) {
            r.add_labels(static_cast<uint32_t>(post.viterbi_path[begin + i]));
          }
          v1::HmmSequencePosteriors* seq = r.mutable_hmm();
          seq->set_first_sequence(static_cast<uint64_t>(q));
          const int64_t end_row = first_row + begin + n;
          for (; q + 1 < static_cast<int64_t>(offsets.size()) && offsets[q + 1] <= end_row; ++q) {
            seq->add_log_likelihood(post.log_likelihood[q - first_sequence]);
            seq->add_viterbi_log_probability(post.viterbi_log_probability[q - first_sequence]);
          }
          emit(std::move(r));
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<v1::ScoreResponse> ScoreJob(const HmmModelAndNames& model, const Upload& upload,
                                           const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(auto s, hmm::Score(model.params, upload.data, controls));
  return ScoreToProto(s);
}

absl::StatusOr<std::vector<HmmSpecAndNames>> SelectGrid(const HmmSpecAndNames& base,
                                                        const v1::SelectModelHeader& header,
                                                        const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckSequences(header.shape()));
  if (header.k_size() == 0) {
    return absl::InvalidArgumentError("header.k: give at least one number of states");
  }
  if (base.spec.fix_start || base.spec.fix_transitions || base.spec.fix_emissions) {
    return absl::InvalidArgumentError(
        "header.spec.hmm.fix_*: fixed parameters need a starting model; SelectModel has none");
  }
  EMFIT_RETURN_IF_ERROR(CheckSymbolCount(static_cast<uint64_t>(base.spec.num_symbols), limits,
                                         "header.spec.hmm.n_symbols"));
  if (base.spec.emission == hmm::EmissionType::kCategorical && base.spec.num_symbols == 0) {
    return absl::InvalidArgumentError(
        "header.spec.hmm.n_symbols: categorical emissions need the number of symbols (or their "
        "names)");
  }
  std::vector<gmm::CovarianceType> types;
  for (int t : header.covariance_types()) {
    EMFIT_ASSIGN_OR_RETURN(gmm::CovarianceType type, FromProto(static_cast<v1::CovarianceType>(t),
                                                               "header.covariance_types"));
    types.push_back(type);
  }
  if (!types.empty() && base.spec.emission != hmm::EmissionType::kGaussian) {
    return absl::InvalidArgumentError(
        absl::StrFormat("header.covariance_types: only Gaussian emissions have a covariance "
                        "type; the template has %s emissions",
                        hmm::EmissionTypeName(base.spec.emission)));
  }
  if (types.empty()) types.push_back(base.spec.covariance_type);
  const uint64_t grid = static_cast<uint64_t>(header.k_size()) * types.size();
  if (grid > static_cast<uint64_t>(limits.max_candidates)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "header: %d candidates (k values x covariance types) exceed --max_candidates=%d", grid,
        limits.max_candidates));
  }
  std::vector<HmmSpecAndNames> out;
  for (uint32_t k : header.k()) {
    EMFIT_RETURN_IF_ERROR(CheckK(k, limits, "header.k"));
    for (gmm::CovarianceType type : types) {
      HmmSpecAndNames spec = base;
      spec.spec.k = static_cast<int>(k);
      spec.spec.covariance_type = type;
      if (absl::Status s = CheckPlanned(spec, header.shape(), limits, "header.k"); !s.ok()) {
        if (s.code() != absl::StatusCode::kInvalidArgument) return s;
        return absl::InvalidArgumentError(absl::StrCat("header.k: ", s.message()));
      }
      out.push_back(std::move(spec));
    }
  }
  return out;
}

void Describe(const HmmSpecAndNames& spec, v1::Candidate* candidate) {
  candidate->set_k(static_cast<uint32_t>(spec.spec.k));
  if (spec.spec.emission == hmm::EmissionType::kGaussian) {
    candidate->set_covariance_type(ToProto(spec.spec.covariance_type));
  }
  SpecToProto(spec, candidate->mutable_spec()->mutable_hmm());
}

}  // namespace emfit::server
