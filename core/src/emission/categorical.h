// Categorical emissions (docs/algorithms.md §3): state j emits symbol m with probability
// E_jm; the data have one column of symbol indices, NaN for a missing symbol (factor 1).
// See emission.h for the contract.
#ifndef EMFIT_CORE_EMISSION_CATEGORICAL_H_
#define EMFIT_CORE_EMISSION_CATEGORICAL_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "emfit/data/dataset.h"
#include "emfit/hmm/hmm.h"

namespace emfit::internal {

class CategoricalEmission {
 public:
  using Params = hmm::CategoricalEmissions;
  static constexpr bool kScaledDensities = true;  // see emission.h
  struct Stats {
    RowMatrix counts;  // M x k: sum_t w_t gamma_tj [x_t = m]
    void Add(const Stats& other) { counts += other.counts; }
  };
  struct Scratch {};
  struct Evaluator {
    RowMatrix log_probabilities;  // M x k: ln E_jm, a row per symbol
    RowMatrix scaled;             // M x k: E_jm / max_j E_jm
    Eigen::VectorXd shift;        // M: ln max_j E_jm
  };

  // INVALID_ARGUMENT unless `data` has one column whose values are NaN or integers in
  // [0, num_symbols), naming the first bad row (1-based).
  static absl::Status ValidateData(const Dataset& data, int num_symbols);
  // 1 + the largest symbol in the data (at least 1).
  static int SymbolsIn(const Dataset& data);

  CategoricalEmission(const Dataset& data, int k, int num_symbols);

  int k() const { return k_; }
  int num_symbols() const { return m_; }
  absl::StatusOr<std::unique_ptr<const Evaluator>> Prepare(const Params& params) const;
  void ResetStats(const Evaluator&, Stats* stats) const { stats->counts.setZero(m_, k_); }
  absl::Status LogDensities(const Evaluator& e, int64_t begin, int64_t end, double* g,
                            Scratch*) const;
  // What ScaleRows makes of LogDensities, from a table per symbol: no exp per step.
  absl::Status ScaledDensities(const Evaluator& e, int64_t begin, int64_t end, double* b,
                               double* shift, Scratch*) const;
  absl::Status Accumulate(const Evaluator& e, int64_t begin, int64_t end, const double* gamma,
                          Stats* stats, Scratch*) const;
  absl::Status MStep(const Stats& stats, const Params& previous, Params* next) const;
  double ExpectedLogDensity(const Stats& stats, const Params& params) const;
  Eigen::VectorXd StateMass(const Stats& stats) const;
  int64_t PackSize() const;
  void Pack(const Params& params, double* out) const;
  absl::StatusOr<Params> Unpack(const double* in, const Params& like) const;
  int64_t NumFreeParameters() const { return static_cast<int64_t>(k_) * (m_ - 1); }

  // Symbol frequencies of the data (weighted), M values summing to 1.
  Eigen::VectorXd Frequencies() const;
  // Checks `params` against k and M; messages name `what`.
  absl::Status CheckShape(const Params& params, absl::string_view what) const;

 private:
  const Dataset& data_;
  int k_;
  int m_;
  std::vector<int32_t> symbols_;  // per row, -1 when missing
  // Symbols that occur in the data (with positive weight): the others get probability 0 after
  // one M-step and are left out of the packed coordinates.
  std::vector<int> seen_;
};

}  // namespace emfit::internal

#endif  // EMFIT_CORE_EMISSION_CATEGORICAL_H_
