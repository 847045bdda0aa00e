#include "hmm/init.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "emfit/base/status_macros.h"
#include "exec/stripes.h"
#include "gmm/family.h"
#include "gmm/init.h"
#include "math/rng.h"

namespace emfit::hmm::internal {

using ::emfit::internal::CategoricalEmission;
using ::emfit::internal::DeriveSeed;
using ::emfit::internal::ForEachBlock;
using ::emfit::internal::GaussianEmission;
using ::emfit::internal::PoissonEmission;
using ::emfit::internal::Rng;
using ::emfit::internal::StreamPurpose;
using ::emfit::internal::Stripes;

namespace {

// Streams of a restart's initialisation besides the mixture's own (index 0).
enum Stream : uint64_t { kChainStream = 1, kEmissionStream = 2 };

Rng StreamOf(uint64_t seed, Stream stream) {
  return Rng(DeriveSeed(seed, stream, StreamPurpose::kInit));
}

// A random distribution over the allowed entries (normalised uniforms in [0.1, 1)).
Eigen::RowVectorXd RandomRow(const Eigen::Ref<const Eigen::RowVectorXi>& allowed, Rng* rng) {
  Eigen::RowVectorXd p(allowed.size());
  for (Eigen::Index j = 0; j < p.size(); ++j) p[j] = allowed[j] ? 0.1 + 0.9 * rng->Uniform() : 0;
  return p / p.sum();
}

// Counts (plus one per allowed entry) normalised.
Eigen::RowVectorXd Smoothed(const Eigen::Ref<const Eigen::RowVectorXd>& counts,
                            const Eigen::Ref<const Eigen::RowVectorXi>& allowed) {
  Eigen::RowVectorXd p(counts.size());
  for (Eigen::Index j = 0; j < p.size(); ++j) p[j] = allowed[j] ? counts[j] + 1.0 : 0.0;
  return p / p.sum();
}

// The linear-interpolation quantile at p of sorted values.
double Quantile(const std::vector<double>& sorted, double p) {
  const double pos = p * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(sorted.size() - 1, lo + 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

}  // namespace

absl::StatusOr<GaussianEmissions> InitialEmissions(const GaussianEmission& e,
                                                   const Dataset& complete, const HmmSpec& spec,
                                                   uint64_t seed, const FitControls& controls) {
  // The mixture's own initialisation: k-means means and the clusters' covariances, or k random
  // rows with the pooled covariance.
  gmm::GmmSpec mixture;
  mixture.k = e.k();
  mixture.covariance_type = e.covariance_type();
  mixture.reg_covar = spec.reg_covar;
  mixture.init = spec.init == InitMethod::kRandom ? gmm::InitMethod::kRandomFromData
                                                  : gmm::InitMethod::kKMeans;
  const gmm::internal::GmmFamily family(complete, mixture);
  EMFIT_ASSIGN_OR_RETURN(gmm::GmmParams p,
                         gmm::internal::InitialParams(family, complete, mixture, seed, controls));
  GaussianEmissions out;
  out.covariance_type = p.covariance_type;
  out.means = std::move(p.means);
  out.covariances = std::move(p.covariances);
  return out;
}

absl::StatusOr<CategoricalEmissions> InitialEmissions(const CategoricalEmission& e, const Dataset&,
                                                      const HmmSpec& spec, uint64_t seed,
                                                      const FitControls&) {
  // Data: the symbol frequencies, perturbed per state; random: normalised uniforms. Symbols
  // that never occur get 0 (the first M-step would give them 0 anyway).
  Rng rng = StreamOf(seed, kEmissionStream);
  const Eigen::VectorXd f = e.Frequencies();
  CategoricalEmissions out;
  out.probabilities.resize(e.k(), e.num_symbols());
  for (int j = 0; j < e.k(); ++j) {
    for (int m = 0; m < e.num_symbols(); ++m) {
      const double u = rng.Uniform();
      if (f[m] <= 0) {
        out.probabilities(j, m) = 0;
      } else {
        out.probabilities(j, m) = spec.init == InitMethod::kRandom ? 0.05 + u : f[m] * (0.5 + u);
      }
    }
    out.probabilities.row(j) /= out.probabilities.row(j).sum();
  }
  return out;
}

absl::StatusOr<PoissonEmissions> InitialEmissions(const PoissonEmission& e, const Dataset& data,
                                                  const HmmSpec& spec, uint64_t seed,
                                                  const FitControls& controls) {
  Rng rng = StreamOf(seed, kEmissionStream);
  const int k = e.k(), d = e.dim();
  PoissonEmissions out;
  out.rates.resize(k, d);
  for (int c = 0; c < d; ++c) {
    EMFIT_RETURN_IF_ERROR(CheckCancelled(controls));
    std::vector<double> counts;
    counts.reserve(static_cast<size_t>(data.rows()));
    for (Eigen::Index i = 0; i < data.rows(); ++i) {
      const double w = data.weights.size() == 0 ? 1.0 : data.weights[i];
      if (!std::isnan(data.x(i, c)) && w > 0) counts.push_back(data.x(i, c));
    }
    double mean = 0;
    for (double v : counts) mean += v;
    mean = counts.empty() ? 1.0 : mean / static_cast<double>(counts.size());
    std::sort(counts.begin(), counts.end());
    for (int j = 0; j < k; ++j) {
      const double u = rng.Uniform();
      if (spec.init == InitMethod::kRandom || counts.empty()) {
        out.rates(j, c) = (mean + 0.1) * (0.25 + 1.5 * u);
      } else {
        // Quantiles at increasing positions, kept apart by a small state-dependent offset so
        // that tied counts (many zeros) still give distinct states.
        const double p = (j + u) / k;
        out.rates(j, c) = Quantile(counts, p) + 0.1 * (mean + 0.1) * (j + 1) / k;
      }
    }
  }
  return out;
}

template <class Emission>
absl::StatusOr<HmmParams> InitialParams(const HmmFamily<Emission>& family, const Dataset& data,
                                        const Dataset& emission_data, const HmmSpec& spec,
                                        uint64_t seed, const FitControls& controls) {
  const Emission& emission = family.emission();
  const ChainSpec& chain = family.chain_spec();
  const int k = emission.k();
  HmmParams params;
  EMFIT_ASSIGN_OR_RETURN(typename Emission::Params e,
                         InitialEmissions(emission, emission_data, spec, seed, controls));
  params.emissions = e;
  params.start.resize(k);
  params.transitions.resize(k, k);
  if (spec.init == InitMethod::kRandom) {
    Rng rng = StreamOf(seed, kChainStream);
    params.start = RandomRow(chain.start_allowed.transpose(), &rng).transpose();
    for (int i = 0; i < k; ++i) {
      params.transitions.row(i) = RandomRow(chain.transitions_allowed.row(i), &rng);
    }
    return params;
  }
  // Each step's preferred state (the largest emission density; -1 with nothing observed), then
  // the first states and the transitions between consecutive labelled steps, counted.
  EMFIT_ASSIGN_OR_RETURN(std::unique_ptr<const typename Emission::Evaluator> evaluator,
                         emission.Prepare(e));
  std::vector<int32_t> labels(static_cast<size_t>(data.rows()));
  ObjectPool<typename Emission::Scratch> scratches;
  EMFIT_RETURN_IF_ERROR(
      ForEachBlock(Stripes::OverRows(data.rows()), controls, [&](int, int64_t begin, int64_t end) {
        auto scratch = scratches.Get();
        RowMatrix g(end - begin, k);
        EMFIT_RETURN_IF_ERROR(
            emission.LogDensities(*evaluator, begin, end, g.data(), scratch.get()));
        for (int64_t t = begin; t < end; ++t) {
          Eigen::Index best = 0;
          g.row(t - begin).maxCoeff(&best);
          labels[t] = data.x.row(t).array().isNaN().all() ? -1 : static_cast<int32_t>(best);
        }
        return absl::OkStatus();
      }));
  Eigen::RowVectorXd first = Eigen::RowVectorXd::Zero(k);
  Eigen::MatrixXd counts = Eigen::MatrixXd::Zero(k, k);
  const std::vector<int64_t>& offsets = family.offsets();
  for (size_t q = 0; q + 1 < offsets.size(); ++q) {
    const double w = data.weights.size() == 0 ? 1.0 : data.weights[offsets[q]];
    if (labels[offsets[q]] >= 0) first[labels[offsets[q]]] += w;
    for (int64_t t = offsets[q] + 1; t < offsets[q + 1]; ++t) {
      if (labels[t - 1] >= 0 && labels[t] >= 0) counts(labels[t - 1], labels[t]) += w;
    }
  }
  params.start = Smoothed(first, chain.start_allowed.transpose()).transpose();
  for (int i = 0; i < k; ++i) {
    params.transitions.row(i) = Smoothed(counts.row(i), chain.transitions_allowed.row(i));
  }
  return params;
}

template absl::StatusOr<HmmParams> InitialParams(const HmmFamily<GaussianEmission>&, const Dataset&,
                                                 const Dataset&, const HmmSpec&, uint64_t,
                                                 const FitControls&);
template absl::StatusOr<HmmParams> InitialParams(const HmmFamily<CategoricalEmission>&,
                                                 const Dataset&, const Dataset&, const HmmSpec&,
                                                 uint64_t, const FitControls&);
template absl::StatusOr<HmmParams> InitialParams(const HmmFamily<PoissonEmission>&, const Dataset&,
                                                 const Dataset&, const HmmSpec&, uint64_t,
                                                 const FitControls&);

}  // namespace emfit::hmm::internal
