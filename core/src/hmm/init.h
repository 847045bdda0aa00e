// Starting parameters of an HMM restart (docs/algorithms.md §3): emissions from the data
// (k-means for Gaussian means, through the mixture's initialisation; quantiles of the counts;
// perturbed symbol frequencies) or at random, then start and transition probabilities counted
// from the states each step's emission density prefers (data) or drawn (random), every
// structural zero respected.
#ifndef EMFIT_CORE_HMM_INIT_H_
#define EMFIT_CORE_HMM_INIT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "emfit/data/dataset.h"
#include "emfit/em/options.h"
#include "emfit/hmm/hmm.h"
#include "emission/categorical.h"
#include "emission/gaussian.h"
#include "emission/poisson.h"
#include "hmm/family.h"

namespace emfit::hmm::internal {

// Starting emission parameters for restart seed `seed`. `data` are the family's data (Gaussian:
// centred by the caller; with missing values, `complete` holds the rows with an observed value,
// missing entries at the column mean 0, for the k-means initialisation; otherwise it is `data`).
absl::StatusOr<GaussianEmissions> InitialEmissions(const ::emfit::internal::GaussianEmission& e,
                                                   const Dataset& complete, const HmmSpec& spec,
                                                   uint64_t seed, const FitControls& controls);
absl::StatusOr<CategoricalEmissions> InitialEmissions(
    const ::emfit::internal::CategoricalEmission& e, const Dataset& data, const HmmSpec& spec,
    uint64_t seed, const FitControls& controls);
absl::StatusOr<PoissonEmissions> InitialEmissions(const ::emfit::internal::PoissonEmission& e,
                                                  const Dataset& data, const HmmSpec& spec,
                                                  uint64_t seed, const FitControls& controls);

// The whole starting point: emissions as above (from `emission_data`), then the chain.
template <class Emission>
absl::StatusOr<HmmParams> InitialParams(const HmmFamily<Emission>& family, const Dataset& data,
                                        const Dataset& emission_data, const HmmSpec& spec,
                                        uint64_t seed, const FitControls& controls);

}  // namespace emfit::hmm::internal

#endif  // EMFIT_CORE_HMM_INIT_H_
