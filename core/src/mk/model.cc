#include "mk/model.h"

#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <map>
#include <unsupported/Eigen/MatrixFunctions>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace emfit::mk::internal {

absl::StatusOr<RateLayout> RateLayout::FromIndex(const Eigen::MatrixXi& index,
                                                 absl::string_view what) {
  if (index.rows() != index.cols() || index.rows() < 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: must be a square k x k matrix with k >= 2, got %d x %d", what,
                        index.rows(), index.cols()));
  }
  RateLayout layout;
  layout.k = static_cast<int>(index.rows());
  std::map<int, int> renumber;
  for (int i = 0; i < layout.k; ++i) {
    for (int j = 0; j < layout.k; ++j) {
      if (i == j) continue;
      const int v = index(i, j);
      if (v < 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: entry (%d, %d) is %d; entries must be >= 0 (0 forbids the transition)", what,
            i + 1, j + 1, v));
      }
      if (v > 0) renumber.emplace(v, 0);
    }
  }
  if (renumber.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: every off-diagonal entry is 0, so the model has no rate", what));
  }
  int next = 0;
  for (auto& [value, id] : renumber) id = ++next;
  layout.num_rates = next;
  layout.index = Eigen::MatrixXi::Zero(layout.k, layout.k);
  layout.cells.resize(next);
  for (int j = 0; j < layout.k; ++j) {
    for (int i = 0; i < layout.k; ++i) {
      if (i == j || index(i, j) == 0) continue;
      const int id = renumber[index(i, j)];
      layout.index(i, j) = id;
      layout.cells[id - 1].push_back({i, j});
    }
  }
  layout.symmetric = layout.index == layout.index.transpose();
  return layout;
}

Eigen::MatrixXd RateLayout::Q(const Eigen::VectorXd& rates) const {
  Eigen::MatrixXd q = Eigen::MatrixXd::Zero(k, k);
  for (int p = 0; p < num_rates; ++p) {
    for (const auto& [i, j] : cells[p]) q(i, j) = rates[p];
  }
  for (int i = 0; i < k; ++i) q(i, i) = -(q.row(i).sum() - q(i, i));
  return q;
}

Eigen::VectorXd RateLayout::Rates(const Eigen::MatrixXd& q) const {
  Eigen::VectorXd rates(num_rates);
  for (int p = 0; p < num_rates; ++p) {
    double sum = 0;
    for (const auto& [i, j] : cells[p]) sum += q(i, j);
    rates[p] = sum / static_cast<double>(cells[p].size());
  }
  return rates;
}

Generator::Generator(const Eigen::MatrixXd& q, bool symmetric, IntegralMethod method)
    : q_(q), symmetric_(symmetric) {
  use_eigen_ = symmetric && method != IntegralMethod::kVanLoan;
  for (int i = 0; i < k(); ++i) max_exit_ = std::max(max_exit_, -q_(i, i));
  if (use_eigen_) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(q_);
    v_ = solver.eigenvectors();
    lambda_ = solver.eigenvalues().cwiseMin(0.0);  // a generator's eigenvalues are <= 0
  }
}

namespace {

// Clamps round-off negatives to 0 and makes each row sum to 1.
void Normalise(Eigen::MatrixXd* p) {
  *p = p->cwiseMax(0.0);
  for (Eigen::Index i = 0; i < p->rows(); ++i) {
    const double s = p->row(i).sum();
    if (s > 0) p->row(i) /= s;
  }
}

}  // namespace

void Generator::Transition(double t, Eigen::MatrixXd* p) const {
  const int n = k();
  if (t == 0) {
    p->setIdentity(n, n);
    return;
  }
  if (use_eigen_) {
    *p = v_ * (lambda_.array() * t).exp().matrix().asDiagonal() * v_.transpose();
  } else {
    *p = (q_ * t).exp();
  }
  Normalise(p);
}

void Generator::Integral(double t, const Eigen::MatrixXd& w, Eigen::MatrixXd* out) const {
  const int n = k();
  if (t == 0) {
    out->setZero(n, n);
    return;
  }
  if (use_eigen_) {
    // I = V ((V^T W V) o J) V^T with J_pq = int_0^t e^{l_p s} e^{l_q (t-s)} ds, computed from
    // the larger eigenvalue so that nothing overflows and close pairs lose no digits (§4.4).
    Eigen::MatrixXd c = v_.transpose() * w * v_;
    for (int p = 0; p < n; ++p) {
      for (int q = 0; q < n; ++q) {
        const double hi = std::max(lambda_[p], lambda_[q]);
        const double d = std::abs(lambda_[p] - lambda_[q]) * t;
        const double ratio = d < 1e-8 ? 1.0 - 0.5 * d : -std::expm1(-d) / d;
        c(p, q) *= t * std::exp(hi * t) * ratio;
      }
    }
    *out = v_ * c * v_.transpose();
    return;
  }
  Eigen::MatrixXd block = Eigen::MatrixXd::Zero(2 * n, 2 * n);
  block.topLeftCorner(n, n) = q_ * t;
  block.bottomRightCorner(n, n) = q_ * t;
  block.topRightCorner(n, n) = w * t;
  const Eigen::MatrixXd e = block.exp();
  *out = e.topRightCorner(n, n);
}

absl::StatusOr<Eigen::VectorXd> StationaryDistribution(const Eigen::MatrixXd& q) {
  const Eigen::Index n = q.rows();
  Eigen::MatrixXd a(n + 1, n);
  a.topRows(n) = q.transpose();
  a.row(n).setOnes();
  Eigen::VectorXd b = Eigen::VectorXd::Zero(n + 1);
  b[n] = 1;
  // Scale so that the rank test does not depend on the rates' magnitude.
  const double scale = std::max(q.cwiseAbs().maxCoeff(), 1e-300);
  a.topRows(n) /= scale;
  Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(a);
  qr.setThreshold(1e-13);
  if (qr.rank() < n) {
    return absl::FailedPreconditionError(
        "the rate matrix has no unique stationary distribution (it is reducible)");
  }
  Eigen::VectorXd pi = qr.solve(b).cwiseMax(0.0);
  const double s = pi.sum();
  if (!(s > 0) || !pi.allFinite()) {
    return absl::FailedPreconditionError("the stationary distribution could not be computed");
  }
  return pi / s;
}

}  // namespace emfit::mk::internal
