// Seeded samples from hidden Markov models, for the HMM tests.
#ifndef EMFIT_TESTS_TESTING_HMM_DATA_H_
#define EMFIT_TESTS_TESTING_HMM_DATA_H_

#include <cstdint>
#include <vector>

#include "emfit/data/dataset.h"
#include "emfit/hmm/hmm.h"

namespace emfit::testing {

// Sequences of the given lengths drawn from `params` (any emission type), seeded; the states
// drawn go to `states` when it is not null. The Dataset carries the sequence offsets.
Dataset SampleHmm(const hmm::HmmParams& params, const std::vector<int64_t>& lengths, uint64_t seed,
                  std::vector<int>* states = nullptr);

// A k-state model with well separated emissions of the given type: Gaussian means k * 3 apart
// in d dimensions with unit-ish covariances, categorical states each favouring their own
// symbols among `symbols`, Poisson rates 2, 8, 20, ...; sticky transitions (0.8 on the
// diagonal) and a uniform start.
hmm::HmmParams SeparatedModel(hmm::EmissionType type, int k, int d = 2, int symbols = 6,
                              gmm::CovarianceType covariance = gmm::CovarianceType::kFull);

}  // namespace emfit::testing

#endif  // EMFIT_TESTS_TESTING_HMM_DATA_H_
