// Starting parameters of a restart (docs/algorithms.md §1.4).
#ifndef EMFIT_CORE_GMM_INIT_H_
#define EMFIT_CORE_GMM_INIT_H_

#include <Eigen/Core>
#include <cstdint>

#include "absl/status/statusor.h"
#include "emfit/data/dataset.h"
#include "emfit/em/options.h"
#include "emfit/gmm/gmm.h"
#include "gmm/family.h"
#include "math/rng.h"

namespace emfit::gmm::internal {

using ::emfit::internal::Rng;

// Greedy k-means++ seeding (scikit-learn's variant): 2 + floor(ln k) candidates per centre,
// drawn with probability proportional to w_i D(x_i)^2, keeping the one that lowers the
// potential most. INVALID_ARGUMENT when the data have fewer than k distinct rows.
// CANCELLED when the token fires.
absl::StatusOr<Eigen::MatrixXd> KMeansPlusPlusSeeds(const Dataset& data, int k, Rng* rng,
                                                    const FitControls& controls);

// Runs of k-means (seeding and Lloyd) per restart of the `kmeans` initialisation; the run with
// the lowest inertia starts EM.
inline constexpr int kKMeansRuns = 4;

struct KMeansResult {
  Eigen::MatrixXd centers;
  double inertia = 0;  // sum of w_i times the squared distance to the nearest centre
};

// Lloyd iterations from `centers` until the total squared centre shift is at most
// 1e-4 times the mean column variance, or `max_iter` iterations. Empty clusters keep their
// centre. Deterministic for any pool size; CANCELLED when the token fires.
absl::StatusOr<KMeansResult> Lloyd(const Dataset& data, Eigen::MatrixXd centers, int max_iter,
                                   const FitControls& controls);

// Starting parameters for restart seed `seed` with `spec.init`.
absl::StatusOr<GmmParams> InitialParams(const GmmFamily& family, const Dataset& data,
                                        const GmmSpec& spec, uint64_t seed,
                                        const FitControls& controls);

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_INIT_H_
