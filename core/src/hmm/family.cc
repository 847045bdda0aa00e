#include "hmm/family.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <variant>

#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"
#include "emission/categorical.h"
#include "emission/emission.h"
#include "emission/gaussian.h"
#include "emission/poisson.h"
#include "exec/stripes.h"

namespace emfit::hmm::internal {

using ::emfit::internal::CategoricalEmission;
using ::emfit::internal::ForEachBlock;
using ::emfit::internal::GaussianEmission;
using ::emfit::internal::kBlockRows;
using ::emfit::internal::kMinPackedProbability;
using ::emfit::internal::PoissonEmission;
using ::emfit::internal::Stripes;

namespace {

// A mass at most this fraction of the total is "no mass" (as in the emissions).
constexpr double kNoMass = 1e-10;
// Ranges of rows at least this long have their emission work split over the pool; shorter ones
// run on the caller (the split into blocks, hence the result, is the same either way).
constexpr int64_t kParallelRows = 8 * kBlockRows;

// Row-stochastic logits of `p` over the entries where `allowed` is nonzero, against the last
// allowed entry; nothing when fewer than two are allowed.
void PackRow(const Eigen::Ref<const Eigen::RowVectorXd>& p,
             const Eigen::Ref<const Eigen::RowVectorXi>& allowed, double** out) {
  int ref = -1;
  for (Eigen::Index j = 0; j < p.size(); ++j) {
    if (allowed[j]) ref = static_cast<int>(j);
  }
  const double base = std::log(std::max(p[ref], kMinPackedProbability));
  for (Eigen::Index j = 0; j < ref; ++j) {
    if (allowed[j]) *(*out)++ = std::log(std::max(p[j], kMinPackedProbability)) - base;
  }
}

void UnpackRow(const Eigen::Ref<const Eigen::RowVectorXi>& allowed, const double** in,
               Eigen::Ref<Eigen::RowVectorXd> p) {
  int ref = -1;
  for (Eigen::Index j = 0; j < p.size(); ++j) {
    if (allowed[j]) ref = static_cast<int>(j);
  }
  double top = 0;  // the reference's logit
  p.setConstant(-std::numeric_limits<double>::infinity());
  p[ref] = 0;
  for (Eigen::Index j = 0; j < ref; ++j) {
    if (!allowed[j]) continue;
    p[j] = *(*in)++;
    top = std::max(top, p[j]);
  }
  // std::exp: Eigen's vectorised exp does not give 0 for -inf.
  for (Eigen::Index j = 0; j < p.size(); ++j) p[j] = std::exp(p[j] - top);
  p /= p.sum();
}

int64_t PackedRowSize(const Eigen::Ref<const Eigen::RowVectorXi>& allowed) {
  return std::max<int64_t>(0, allowed.count() - 1);
}

}  // namespace

template <class Emission>
HmmFamily<Emission>::HmmFamily(const Dataset& data, Emission emission, ChainSpec spec)
    : data_(data), emission_(std::move(emission)), spec_(std::move(spec)), k_(emission_.k()) {
  offsets_ =
      data.sequence_offsets.empty() ? std::vector<int64_t>{0, data.rows()} : data.sequence_offsets;
  if (spec_.start_allowed.size() == 0) spec_.start_allowed = Eigen::VectorXi::Ones(k_);
  if (spec_.transitions_allowed.size() == 0) {
    spec_.transitions_allowed = Eigen::MatrixXi::Ones(k_, k_);
  }
  if (spec_.segment_steps == 0) spec_.segment_steps = DefaultSegmentSteps(k_);
  // Blocks of the E-step hold sequences two by two where the scaled recursions run two
  // sequences in lockstep (PairedRecursions): the blocks are formed over pairs.
  pair_blocks_ = spec_.forward_backward == ForwardBackward::kScaled && PairedRecursions(k_);
  const int64_t sequences = static_cast<int64_t>(offsets_.size()) - 1;
  for (int64_t q = 0; q < sequences; q += pair_blocks_ ? 2 : 1)
    block_offsets_.push_back(offsets_[q]);
  block_offsets_.push_back(offsets_.back());
  // BIC's n: the weight of the steps with an observed value.
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    if (data.x.row(i).array().isNaN().all()) continue;
    total_weight_ += data.weights.size() == 0 ? 1.0 : data.weights[i];
  }
}

template <class Emission>
std::pair<int64_t, int64_t> HmmFamily<Emission>::SequencesOf(int64_t from, int64_t to) const {
  const int64_t sequences = static_cast<int64_t>(offsets_.size()) - 1;
  if (!pair_blocks_) return {from, to};
  return {2 * from, std::min(2 * to, sequences)};
}

template <class Emission>
typename HmmFamily<Emission>::Stats HmmFamily<Emission>::NewStats() const {
  Stats s;
  s.work = std::make_shared<ObjectPool<Work>>();
  return s;
}

template <class Emission>
int64_t HmmFamily<Emission>::NumFreeParameters() const {
  int64_t p = 0;
  if (!spec_.fix_start) p += PackedRowSize(spec_.start_allowed.transpose());
  if (!spec_.fix_transitions) {
    for (int i = 0; i < k_; ++i) p += PackedRowSize(spec_.transitions_allowed.row(i));
  }
  if (!spec_.fix_emissions) p += emission_.NumFreeParameters();
  return p;
}

template <class Emission>
absl::Status HmmFamily<Emission>::LogDensities(const typename Emission::Evaluator& e, int64_t begin,
                                               int64_t end, double* g, const FitControls& controls,
                                               ObjectPool<Work>* pool) const {
  const int64_t n = end - begin;
  if (n <= kBlockRows) {
    auto work = pool->Get();
    return emission_.LogDensities(e, begin, end, g, &work->emission);
  }
  // A long sequence: its blocks of rows on every core.
  FitControls inner = controls;
  if (n < kParallelRows) inner.pool = nullptr;
  return ForEachBlock(Stripes::OverRows(n), inner, [&](int, int64_t b, int64_t b_end) {
    auto work = pool->Get();
    return emission_.LogDensities(e, begin + b, begin + b_end, g + b * k_, &work->emission);
  });
}

template <class Emission>
absl::Status HmmFamily<Emission>::ScaledDensities(const typename Emission::Evaluator& e,
                                                  int64_t begin, int64_t end, double* b,
                                                  double* shift, Work* work) const {
  if constexpr (Emission::kScaledDensities) {
    return emission_.ScaledDensities(e, begin, end, b, shift, &work->emission);
  } else {
    (void)e, (void)begin, (void)end, (void)b, (void)shift, (void)work;
    return absl::InternalError("the emission has no scaled densities");
  }
}

template <class Emission>
absl::Status HmmFamily<Emission>::Accumulate(const typename Emission::Evaluator& e, int64_t begin,
                                             int64_t end, const double* gamma,
                                             EmissionStats* target, Work* work,
                                             const FitControls& controls,
                                             ObjectPool<Work>* pool) const {
  const int64_t n = end - begin;
  if (n <= kBlockRows) return emission_.Accumulate(e, begin, end, gamma, target, &work->emission);
  // Blocks of rows into partials reduced in order: the split depends on n only.
  const Stripes stripes = Stripes::OverRows(n);
  std::vector<EmissionStats>& inner = work->inner;
  inner.resize(stripes.count());
  for (EmissionStats& s : inner) emission_.ResetStats(e, &s);
  FitControls parallel = controls;
  if (n < kParallelRows) parallel.pool = nullptr;
  EMFIT_RETURN_IF_ERROR(ForEachBlock(stripes, parallel, [&](int s, int64_t b, int64_t b_end) {
    auto block_work = pool->Get();
    return emission_.Accumulate(e, begin + b, begin + b_end, gamma + b * k_, &inner[s],
                                &block_work->emission);
  }));
  for (const EmissionStats& s : inner) target->Add(s);
  return absl::OkStatus();
}

template <class Emission>
absl::StatusOr<double> HmmFamily<Emission>::EStep(const Params& params, const FitControls& controls,
                                                  Stats* stats) const {
  const Chain chain = Chain::From(params.start, params.transitions);
  EMFIT_ASSIGN_OR_RETURN(std::unique_ptr<const typename Emission::Evaluator> e,
                         emission_.Prepare(std::get<EmissionParams>(params.emissions)));
  const Stripes stripes = Stripes::OverSequences(block_offsets_);
  stats->stripes.resize(stripes.count());
  for (Partial& part : stats->stripes) {
    part.chain.Reset(k_);
    emission_.ResetStats(*e, &part.emission);
  }
  ObjectPool<Work>* pool = stats->work.get();
  const SequenceOptions options{spec_.forward_backward, spec_.segment_steps};
  EMFIT_RETURN_IF_ERROR(ForEachBlock(stripes, controls, [&](int s, int64_t from, int64_t to) {
    const auto [first, last] = SequencesOf(from, to);
    Partial& part = stats->stripes[s];
    auto work = pool->Get();
    emission_.ResetStats(*e, &work->provisional);
    auto log_density = [&](int64_t begin, int64_t end, double* g) {
      return LogDensities(*e, begin, end, g, controls, pool);
    };
    auto on_gamma = [&](int64_t begin, int64_t end, const double* gamma, bool provisional) {
      return Accumulate(*e, begin, end, gamma, provisional ? &work->provisional : &part.emission,
                        work.get(), controls, pool);
    };
    auto commit = [&](bool keep) {
      if (keep) part.emission.Add(work->provisional);
      emission_.ResetStats(*e, &work->provisional);
    };
    auto scaled_density = [&](int64_t begin, int64_t end, double* b, double* shift) {
      return ScaledDensities(*e, begin, end, b, shift, work.get());
    };
    const ScaledDensityFn scaled(scaled_density);
    return SequencesEStep(
        chain, offsets_, first, last, data_.weights, options,
        {log_density, on_gamma, commit, Emission::kScaledDensities ? &scaled : nullptr},
        &part.chain, SequenceOutputs{}, &work->sequence);
  }));
  stats->chain.Reset(k_);
  emission_.ResetStats(*e, &stats->emission);
  for (const Partial& part : stats->stripes) {
    stats->chain.Add(part.chain);
    stats->emission.Add(part.emission);
  }
  stats->xi = params.transitions.cwiseProduct(Eigen::MatrixXd(stats->chain.m));
  return stats->chain.log_likelihood;
}

template <class Emission>
absl::Status HmmFamily<Emission>::MStep(const Stats& stats, Params* params) const {
  if (!spec_.fix_start) {
    const double total = stats.chain.start.sum();
    if (total > 0) {
      params->start = stats.chain.start / total;
      for (int j = 0; j < k_; ++j) {
        if (!spec_.start_allowed[j]) params->start[j] = 0;  // exactly, whatever the rounding
      }
    }
  }
  if (!spec_.fix_transitions) {
    const double total = stats.xi.sum();
    for (int i = 0; i < k_; ++i) {
      const double row = stats.xi.row(i).sum();
      // A state never left keeps its row (Inspect warns).
      if (!(row > kNoMass * total)) continue;
      params->transitions.row(i) = stats.xi.row(i) / row;
      for (int j = 0; j < k_; ++j) {
        if (!spec_.transitions_allowed(i, j)) params->transitions(i, j) = 0;
      }
    }
  }
  if (!spec_.fix_emissions) {
    const EmissionParams previous = std::get<EmissionParams>(params->emissions);
    EmissionParams next;
    EMFIT_RETURN_IF_ERROR(emission_.MStep(stats.emission, previous, &next));
    params->emissions = std::move(next);
  }
  return absl::OkStatus();
}

template <class Emission>
double HmmFamily<Emission>::ExpectedLogJoint(const Stats& stats, const Params& params) const {
  // Q = sum_j n_j ln pi_j + sum_ij Xi_ij ln A_ij + E[sum_t ln f_{z_t}(x_t)], with 0 ln 0 = 0.
  double q = 0;
  for (int j = 0; j < k_; ++j) {
    if (stats.chain.start[j] > 0) q += stats.chain.start[j] * std::log(params.start[j]);
  }
  for (int i = 0; i < k_; ++i) {
    for (int j = 0; j < k_; ++j) {
      if (stats.xi(i, j) > 0) q += stats.xi(i, j) * std::log(params.transitions(i, j));
    }
  }
  return q +
         emission_.ExpectedLogDensity(stats.emission, std::get<EmissionParams>(params.emissions));
}

template <class Emission>
std::vector<FitWarning> HmmFamily<Emission>::Inspect(const Stats& stats,
                                                     const Params& /*params*/) const {
  std::vector<FitWarning> out;
  const Eigen::VectorXd mass = emission_.StateMass(stats.emission);
  const double total = mass.sum();
  for (int j = 0; j < k_; ++j) {
    if (mass[j] > kNoMass * total) continue;
    FitWarning w;
    w.code = "empty_state";
    w.component = j;
    w.message = absl::StrFormat(
        "state %d is not used (posterior mass %.3g of %.3g); it keeps its emission parameters; "
        "consider a smaller k",
        j, mass[j], total);
    out.push_back(std::move(w));
  }
  if (!spec_.fix_transitions) {
    const double xi_total = stats.xi.sum();
    for (int i = 0; i < k_; ++i) {
      if (stats.xi.row(i).sum() > kNoMass * xi_total) continue;
      FitWarning w;
      w.code = "transitions_kept";
      w.component = i;
      w.message = absl::StrFormat(
          "state %d is never left in the posterior (expected transitions out of it: %.3g); its "
          "row of the transition matrix keeps its previous values",
          i, stats.xi.row(i).sum());
      out.push_back(std::move(w));
    }
  }
  return out;
}

template <class Emission>
Eigen::VectorXd HmmFamily<Emission>::Pack(const Params& params) const {
  int64_t size = 0;
  if (!spec_.fix_start) size += PackedRowSize(spec_.start_allowed.transpose());
  if (!spec_.fix_transitions) {
    for (int i = 0; i < k_; ++i) size += PackedRowSize(spec_.transitions_allowed.row(i));
  }
  if (!spec_.fix_emissions) size += emission_.PackSize();
  Eigen::VectorXd x(size);
  double* out = x.data();
  if (!spec_.fix_start) {
    PackRow(params.start.transpose(), spec_.start_allowed.transpose(), &out);
  }
  if (!spec_.fix_transitions) {
    for (int i = 0; i < k_; ++i) {
      PackRow(params.transitions.row(i), spec_.transitions_allowed.row(i), &out);
    }
  }
  if (!spec_.fix_emissions) {
    emission_.Pack(std::get<EmissionParams>(params.emissions), out);
  }
  return x;
}

template <class Emission>
absl::StatusOr<HmmParams> HmmFamily<Emission>::Unpack(const Eigen::VectorXd& x,
                                                      const Params& like) const {
  if (!x.allFinite()) return absl::InvalidArgumentError("extrapolated point is not finite");
  if (x.size() != Pack(like).size()) {
    return absl::InternalError("extrapolated point has the wrong size");
  }
  Params p = like;  // fixed blocks stay exactly as they were
  const double* in = x.data();
  if (!spec_.fix_start) {
    Eigen::RowVectorXd row(k_);
    UnpackRow(spec_.start_allowed.transpose(), &in, row);
    p.start = row.transpose();
  }
  if (!spec_.fix_transitions) {
    for (int i = 0; i < k_; ++i) {
      Eigen::RowVectorXd row(k_);
      UnpackRow(spec_.transitions_allowed.row(i), &in, row);
      p.transitions.row(i) = row;
    }
  }
  if (!p.start.allFinite() || !p.transitions.allFinite()) {
    return absl::InvalidArgumentError("extrapolated point is not finite");
  }
  if (!spec_.fix_emissions) {
    EMFIT_ASSIGN_OR_RETURN(EmissionParams e,
                           emission_.Unpack(in, std::get<EmissionParams>(like.emissions)));
    p.emissions = std::move(e);
  }
  return p;
}

template <class Emission>
absl::Status HmmFamily<Emission>::Infer(const Params& params, const FitControls& controls,
                                        SequenceOutputs outputs, double* gamma, int64_t first,
                                        int64_t last) const {
  const int64_t sequences = static_cast<int64_t>(offsets_.size()) - 1;
  if (last < 0) last = sequences;
  const Chain chain = Chain::From(params.start, params.transitions);
  EMFIT_ASSIGN_OR_RETURN(std::unique_ptr<const typename Emission::Evaluator> e,
                         emission_.Prepare(std::get<EmissionParams>(params.emissions)));
  const int64_t first_row = offsets_[first];
  outputs.first_sequence = first;
  outputs.first_row = first_row;
  // The blocks of the range, formed as block_offsets_ are (pairs of sequences or single ones).
  const int64_t step = pair_blocks_ ? 2 : 1;
  std::vector<int64_t> blocks;
  blocks.reserve(static_cast<size_t>((last - first) / step + 2));
  for (int64_t q = first; q < last; q += step) blocks.push_back(offsets_[q]);
  blocks.push_back(offsets_[last]);
  const Stripes stripes = Stripes::OverSequences(blocks);
  ObjectPool<Work> pool;
  // Whole sequences when every step's output is wanted; checkpointed otherwise.
  const bool whole = gamma != nullptr || outputs.viterbi_log_probability != nullptr;
  const SequenceOptions options{spec_.forward_backward, whole ? 0 : spec_.segment_steps};
  return ForEachBlock(stripes, controls, [&](int, int64_t from, int64_t to) {
    const int64_t lo = first + step * from;
    const int64_t hi = std::min(first + step * to, last);
    auto work = pool.Get();
    ChainStats unused;
    unused.Reset(k_);
    auto log_density = [&](int64_t begin, int64_t end, double* g) {
      return LogDensities(*e, begin, end, g, controls, &pool);
    };
    auto on_gamma = [&](int64_t begin, int64_t end, const double* rows, bool) {
      if (gamma != nullptr) {
        std::copy(rows, rows + (end - begin) * k_, gamma + (begin - first_row) * k_);
      }
      return absl::OkStatus();
    };
    auto scaled_density = [&](int64_t begin, int64_t end, double* b, double* shift) {
      return ScaledDensities(*e, begin, end, b, shift, work.get());
    };
    const ScaledDensityFn scaled(scaled_density);
    return SequencesEStep(
        chain, offsets_, lo, hi, Eigen::VectorXd(), options,
        {log_density, on_gamma, [](bool) {}, Emission::kScaledDensities ? &scaled : nullptr},
        &unused, outputs, &work->sequence);
  });
}

template class HmmFamily<GaussianEmission>;
template class HmmFamily<CategoricalEmission>;
template class HmmFamily<PoissonEmission>;

}  // namespace emfit::hmm::internal
