// Rate structures, transition probabilities and endpoint-conditioned integrals of an Mk model
// (docs/algorithms.md §4.2, §4.4).
#ifndef EMFIT_CORE_MK_MODEL_H_
#define EMFIT_CORE_MK_MODEL_H_

#include <Eigen/Core>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace emfit::mk::internal {

// The parameters of a rate structure: rate p (0-based) is shared by the cells index == p + 1.
struct RateLayout {
  int k = 0;
  int num_rates = 0;
  Eigen::MatrixXi index;  // k x k, values 0..P, 0 on the diagonal
  // Whether index is symmetric, so that Q is symmetric whatever the rates (ER, SYM).
  bool symmetric = false;
  std::vector<std::vector<std::pair<int, int>>> cells;  // per rate, its (i, j) cells

  // From any index matrix (k x k, entries >= 0, diagonal ignored; positive values renumbered
  // 1..P in increasing order). INVALID_ARGUMENT names `what`, the cell and the value.
  static absl::StatusOr<RateLayout> FromIndex(const Eigen::MatrixXi& index, absl::string_view what);
  Eigen::MatrixXd Q(const Eigen::VectorXd& rates) const;
  // The rates of a generator with this structure (the mean over each rate's cells).
  Eigen::VectorXd Rates(const Eigen::MatrixXd& q) const;
};

// How the endpoint-conditioned integrals are computed.
enum class IntegralMethod {
  kAuto,     // eigendecomposition for symmetric Q, Van Loan otherwise
  kVanLoan,  // one 2k x 2k matrix exponential (Van Loan 1978)
  kEigen,    // symmetric eigendecomposition (symmetric Q only)
};

// P(t) = exp(Qt) and the integrals I(t, W) = int_0^t exp(Qs) W exp(Q(t-s)) ds for one
// generator. Immutable after construction; thread-safe.
class Generator {
 public:
  Generator(const Eigen::MatrixXd& q, bool symmetric,
            IntegralMethod method = IntegralMethod::kAuto);

  const Eigen::MatrixXd& q() const { return q_; }
  int k() const { return static_cast<int>(q_.rows()); }
  bool symmetric() const { return symmetric_; }
  // max_i q_i (the uniformisation rate).
  double max_exit_rate() const { return max_exit_; }

  // P(t): tiny negatives clamped to 0 and rows renormalised to sum to 1.
  void Transition(double t, Eigen::MatrixXd* p) const;
  // I(t, W) (k x k). E[N_ij] and E[T_i] of a branch are q_ij S_ij and S_ii with
  // S = I(t, B^T)^T (docs/algorithms.md §4.4).
  void Integral(double t, const Eigen::MatrixXd& w, Eigen::MatrixXd* out) const;

 private:
  Eigen::MatrixXd q_;
  bool symmetric_;
  bool use_eigen_;
  double max_exit_ = 0;
  Eigen::MatrixXd v_;  // symmetric: Q = V diag(lambda) V^T
  Eigen::VectorXd lambda_;
};

// The stationary distribution pi (pi^T Q = 0, sum 1). FAILED_PRECONDITION if it is not unique
// (a reducible chain, e.g. two absorbing states).
absl::StatusOr<Eigen::VectorXd> StationaryDistribution(const Eigen::MatrixXd& q);

}  // namespace emfit::mk::internal

#endif  // EMFIT_CORE_MK_MODEL_H_
