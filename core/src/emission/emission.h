// Emission distributions of a latent-state model: one small contract shared by the Gaussian
// (the mixture's kernels, missing values included), categorical and Poisson emissions
// (docs/style.md, "Emissions share one contract"). A family that combines the states itself
// (hmm::internal::HmmFamily) is written once against it:
//
//   using Params = ...;            // the public parameters (e.g. hmm::PoissonEmissions)
//   struct Stats {                 // weighted sufficient statistics of rows given their state
//     void Add(const Stats&);      //   probabilities, summed in the caller's fixed order
//   };
//   struct Scratch;                // per-thread work memory, reused across calls
//   struct Evaluator;              // one E-step's read-only (thread-safe) view of Params
//
//   Emission(const Dataset& data, ...);   // the data (validated with ValidateData) outlive it
//   int k() const;
//   absl::StatusOr<std::unique_ptr<const Evaluator>> Prepare(const Params&) const;
//   void ResetStats(const Evaluator&, Stats*) const;
//   // ln f_j(x_t) for rows [begin, end): g is (end - begin) x k, row-major. A row with nothing
//   // observed has density 1 (g = 0).
//   absl::Status LogDensities(const Evaluator&, int64_t begin, int64_t end, double* g,
//                             Scratch*) const;
//   // Whether ScaledDensities exists: the scaled densities exp(g - max_j g) and the shifts
//   // max_j g of rows [begin, end) straight from the emission (e.g. a table per symbol).
//   static constexpr bool kScaledDensities;
//   absl::Status ScaledDensities(const Evaluator&, int64_t begin, int64_t end, double* b,
//                                double* shift, Scratch*) const;
//   // Adds the statistics of rows [begin, end) with state probabilities `gamma` (row-major)
//   // and the data's row weights.
//   absl::Status Accumulate(const Evaluator&, int64_t begin, int64_t end, const double* gamma,
//                           Stats*, Scratch*) const;
//   // The exact maximiser of the expected complete-data log-likelihood; a state with no mass
//   // keeps its previous parameters. FAILED_PRECONDITION for a numerical failure.
//   absl::Status MStep(const Stats&, const Params& previous, Params* next) const;
//   // sum_t sum_j w_t gamma_tj E[ln f_j(x_t)] at `params` for the statistics' posterior.
//   double ExpectedLogDensity(const Stats&, const Params&) const;
//   // Mass of each state (sum of w gamma over the rows with an observed value).
//   Eigen::VectorXd StateMass(const Stats&) const;
//   // Unconstrained coordinates for SQUAREM and back (algorithms.md §5.1).
//   int64_t PackSize() const;
//   void Pack(const Params&, double* out) const;
//   absl::StatusOr<Params> Unpack(const double* in, const Params& like) const;
//   int64_t NumFreeParameters() const;
#ifndef EMFIT_CORE_EMISSION_EMISSION_H_
#define EMFIT_CORE_EMISSION_EMISSION_H_

#include <cstdint>

namespace emfit::internal {

// Floor of probabilities before their logarithm is taken as an unconstrained coordinate, so
// that a probability that became exactly 0 (e.g. a symbol no state emits) stays finite.
inline constexpr double kMinPackedProbability = 1e-300;

}  // namespace emfit::internal

#endif  // EMFIT_CORE_EMISSION_EMISSION_H_
