#include "testing/hmm_data.h"

#include <Eigen/Cholesky>
#include <random>
#include <variant>

namespace emfit::testing {
namespace {

int Draw(const Eigen::Ref<const Eigen::RowVectorXd>& p, std::mt19937_64* rng) {
  std::uniform_real_distribution<double> u;
  double x = u(*rng), acc = 0;
  for (Eigen::Index j = 0; j < p.size(); ++j) {
    acc += p[j];
    if (x < acc) return static_cast<int>(j);
  }
  return static_cast<int>(p.size()) - 1;
}

}  // namespace

Dataset SampleHmm(const hmm::HmmParams& params, const std::vector<int64_t>& lengths, uint64_t seed,
                  std::vector<int>* states) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z;
  int64_t n = 0;
  for (int64_t l : lengths) n += l;
  Dataset data;
  data.x.resize(n, params.dim());
  data.sequence_offsets.push_back(0);
  if (states != nullptr) states->resize(n);
  std::vector<Eigen::MatrixXd> chol;
  if (const auto* g = std::get_if<hmm::GaussianEmissions>(&params.emissions)) {
    gmm::GmmParams m;
    m.covariance_type = g->covariance_type;
    m.means = g->means;
    m.covariances = g->covariances;
    for (int j = 0; j < params.k(); ++j) chol.push_back(m.ComponentCovariance(j).llt().matrixL());
  }
  int64_t row = 0;
  for (int64_t l : lengths) {
    int s = Draw(params.start.transpose(), &rng);
    for (int64_t t = 0; t < l; ++t, ++row) {
      if (t > 0) s = Draw(params.transitions.row(s), &rng);
      if (states != nullptr) (*states)[row] = s;
      if (const auto* g = std::get_if<hmm::GaussianEmissions>(&params.emissions)) {
        Eigen::VectorXd e(params.dim());
        for (int c = 0; c < params.dim(); ++c) e[c] = z(rng);
        data.x.row(row) = g->means.row(s) + (chol[s] * e).transpose();
      } else if (const auto* c = std::get_if<hmm::CategoricalEmissions>(&params.emissions)) {
        data.x(row, 0) = Draw(c->probabilities.row(s), &rng);
      } else {
        const auto& p = std::get<hmm::PoissonEmissions>(params.emissions);
        for (int c = 0; c < params.dim(); ++c) {
          std::poisson_distribution<int64_t> poisson(p.rates(s, c));
          data.x(row, c) = static_cast<double>(poisson(rng));
        }
      }
    }
    data.sequence_offsets.push_back(row);
  }
  return data;
}

hmm::HmmParams SeparatedModel(hmm::EmissionType type, int k, int d, int symbols,
                              gmm::CovarianceType covariance) {
  hmm::HmmParams p;
  p.start = Eigen::VectorXd::Constant(k, 1.0 / k);
  p.transitions = Eigen::MatrixXd::Constant(k, k, k == 1 ? 1.0 : 0.2 / (k - 1));
  p.transitions.diagonal().setConstant(k == 1 ? 1.0 : 0.8);
  switch (type) {
    case hmm::EmissionType::kGaussian: {
      hmm::GaussianEmissions g;
      g.covariance_type = covariance;
      g.means.resize(k, d);
      for (int j = 0; j < k; ++j) {
        for (int c = 0; c < d; ++c) g.means(j, c) = 3.0 * k * ((j + c) % k) / (c + 1);
      }
      Eigen::MatrixXd cov = Eigen::MatrixXd::Identity(d, d);
      for (int c = 0; c + 1 < d; ++c) cov(c, c + 1) = cov(c + 1, c) = 0.3;
      switch (covariance) {
        case gmm::CovarianceType::kFull:
          g.covariances.resize(static_cast<Eigen::Index>(k) * d, d);
          for (int j = 0; j < k; ++j) g.covariances.middleRows(j * d, d) = cov * (1 + 0.25 * j);
          break;
        case gmm::CovarianceType::kTied:
          g.covariances = cov;
          break;
        case gmm::CovarianceType::kDiag:
          g.covariances = Eigen::MatrixXd::Ones(k, d);
          for (int j = 0; j < k; ++j) g.covariances.row(j) *= 1 + 0.25 * j;
          break;
        case gmm::CovarianceType::kSpherical:
          g.covariances.resize(k, 1);
          for (int j = 0; j < k; ++j) g.covariances(j, 0) = 1 + 0.25 * j;
          break;
      }
      p.emissions = g;
      break;
    }
    case hmm::EmissionType::kCategorical: {
      hmm::CategoricalEmissions c;
      c.probabilities = Eigen::MatrixXd::Constant(k, symbols, 0.2 / symbols);
      for (int j = 0; j < k; ++j) {
        for (int m = j; m < symbols; m += k) c.probabilities(j, m) += 1.0;
        c.probabilities.row(j) /= c.probabilities.row(j).sum();
      }
      p.emissions = c;
      break;
    }
    case hmm::EmissionType::kPoisson: {
      hmm::PoissonEmissions r;
      r.rates.resize(k, d);
      for (int j = 0; j < k; ++j) {
        for (int c = 0; c < d; ++c) r.rates(j, c) = 2.0 + 6.0 * ((j + c) % k) * (1 + 0.5 * j);
      }
      p.emissions = r;
      break;
    }
  }
  return p;
}

}  // namespace emfit::testing
