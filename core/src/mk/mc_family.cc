#include "mk/mc_family.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "emfit/base/status_macros.h"
#include "emfit/em/mcem.h"
#include "emfit/exec/thread_pool.h"

namespace emfit::mk::internal {

namespace {

constexpr int64_t kDrawsPerTask = 16;

double MaxBranchLength(const Tree& tree) {
  double m = 0;
  for (int v = 0; v < tree.num_nodes(); ++v) {
    if (tree.parent[v] >= 0) m = std::max(m, tree.length[v]);
  }
  return m;
}

}  // namespace

absl::StatusOr<double> MkMonteCarloFamily::StartSample(const Params& theta,
                                                       const FitControls& controls,
                                                       Sample* sample) const {
  sample->theta = theta;
  sample->generator = std::make_unique<Generator>(model_.MakeGenerator(theta));
  EMFIT_RETURN_IF_ERROR(model_.Prune(theta, *sample->generator, controls, &sample->up));
  sample->sampler = rao_blackwell_
                        ? nullptr
                        : std::make_unique<BranchSampler>(*sample->generator, sampler_,
                                                          MaxBranchLength(*model_.data().tree));
  const int k = model_.k();
  sample->size = 0;
  sample->states.clear();
  sample->tallies.resize(k * k + k, 0);
  sample->pairs.setZero(k, static_cast<Eigen::Index>(model_.data().num_nodes()) * k);
  sample->root_counts.setZero(k);
  return sample->up.total;
}

absl::Status MkMonteCarloFamily::Draw(int64_t count, uint64_t seed, int iteration,
                                      const FitControls& controls, Sample* sample) const {
  if (count <= 0) return absl::OkStatus();
  const TreeData& data = model_.data();
  const Tree& tree = *data.tree;
  const int k = model_.k(), chars = data.characters, n = tree.num_nodes();
  const int64_t per_draw = static_cast<int64_t>(n) * chars;
  const int64_t first = sample->size;
  sample->states.resize((first + count) * per_draw);
  if (!rao_blackwell_) sample->tallies.conservativeResize(Eigen::NoChange, first + count);
  const int64_t tasks = (count + kDrawsPerTask - 1) / kDrawsPerTask;
  std::vector<absl::Status> status(tasks);
  ParallelFor(controls.pool, static_cast<int>(tasks), [&](int task) {
    status[task] = CheckCancelled(controls);
    if (!status[task].ok()) return;
    std::vector<int> x(per_draw);
    std::vector<Segment> path;
    Eigen::MatrixXd jumps(k, k);
    Eigen::VectorXd times(k);
    const int64_t begin = first + task * kDrawsPerTask;
    const int64_t end = std::min(first + count, begin + kDrawsPerTask);
    for (int64_t i = begin; i < end; ++i) {
      Rng rng(McemDrawSeed(seed, iteration, i));
      SampleNodeStates(data, sample->up, rng, x.data());
      std::copy(x.begin(), x.end(), sample->states.begin() + i * per_draw);
      if (rao_blackwell_) continue;
      jumps.setZero();
      times.setZero();
      for (int v = 0; v < n; ++v) {
        if (tree.parent[v] < 0 || tree.length[v] == 0) continue;
        const auto p = sample->up.p.middleCols(static_cast<Eigen::Index>(v) * k, k);
        for (int c = 0; c < chars; ++c) {
          const int a = x[static_cast<int64_t>(tree.parent[v]) * chars + c];
          const int b = x[static_cast<int64_t>(v) * chars + c];
          sample->sampler->Sample(a, b, tree.length[v], p(a, b), rng, &path);
          Tally(path, &jumps, &times);
        }
      }
      sample->tallies.col(i).head(k * k) = jumps.reshaped();
      sample->tallies.col(i).tail(k) = times;
    }
  });
  for (const absl::Status& s : status) EMFIT_RETURN_IF_ERROR(s);
  // Pooled counts, in draw order.
  for (int64_t i = first; i < first + count; ++i) {
    const uint16_t* x = sample->states.data() + i * per_draw;
    for (int c = 0; c < chars; ++c) sample->root_counts[x[tree.root() * chars + c]] += 1;
    if (!rao_blackwell_) continue;
    for (int v = 0; v < n; ++v) {
      if (tree.parent[v] < 0) continue;
      for (int c = 0; c < chars; ++c) {
        sample->pairs(x[tree.parent[v] * chars + c],
                      static_cast<Eigen::Index>(v) * k + x[static_cast<int64_t>(v) * chars + c]) +=
            1;
      }
    }
  }
  sample->size = first + count;
  return absl::OkStatus();
}

absl::Status MkMonteCarloFamily::Expectations(const Sample& sample, const FitControls& controls,
                                              Eigen::MatrixXd* n, Eigen::VectorXd* t,
                                              Eigen::VectorXd* root) const {
  const int k = model_.k();
  const double m = static_cast<double>(sample.size);
  *root = sample.root_counts / m;
  if (!rao_blackwell_) {
    const Eigen::VectorXd mean = sample.tallies.leftCols(sample.size).rowwise().sum() / m;
    *n = mean.head(k * k).reshaped(k, k);
    *t = mean.tail(k);
    return absl::OkStatus();
  }
  const Tree& tree = *model_.data().tree;
  const int nodes = tree.num_nodes();
  const ::emfit::internal::Stripes node_stripes = NodeStripes(nodes);
  const int stripes = node_stripes.count();
  std::vector<Eigen::MatrixXd> part_n(stripes, Eigen::MatrixXd::Zero(k, k));
  std::vector<Eigen::VectorXd> part_t(stripes, Eigen::VectorXd::Zero(k));
  const Eigen::MatrixXd& q = sample.generator->q();
  EMFIT_RETURN_IF_ERROR(::emfit::internal::ForEachBlock(
      node_stripes, controls, [&](int s, int64_t begin, int64_t end) -> absl::Status {
        Eigen::MatrixXd bt(k, k), integral(k, k);
        for (int64_t v = begin; v < end; ++v) {
          if (tree.parent[v] < 0 || tree.length[v] == 0) continue;
          const auto p = sample.up.p.middleCols(v * k, k);
          const auto counts = sample.pairs.middleCols(v * k, k);
          for (int a = 0; a < k; ++a) {
            for (int b = 0; b < k; ++b) {
              bt(b, a) = counts(a, b) > 0 ? counts(a, b) / (p(a, b) * m) : 0.0;
            }
          }
          sample.generator->Integral(tree.length[v], bt, &integral);
          part_t[s] += integral.diagonal();
          part_n[s].array() += q.array() * integral.transpose().array();
        }
        return absl::OkStatus();
      }));
  n->setZero(k, k);
  t->setZero(k);
  for (int s = 0; s < stripes; ++s) {
    *n += part_n[s];
    *t += part_t[s];
  }
  n->diagonal().setZero();
  *n = n->cwiseMax(0.0);
  *t = t->cwiseMax(0.0);
  return absl::OkStatus();
}

absl::Status MkMonteCarloFamily::MStep(const Sample& sample, Params* next) const {
  Eigen::MatrixXd n;
  Eigen::VectorXd t, root;
  EMFIT_RETURN_IF_ERROR(Expectations(sample, {}, &n, &t, &root));
  *next = model_.MStep(n, t, root, sample.theta);
  return absl::OkStatus();
}

absl::Status MkMonteCarloFamily::Increments(const Sample& sample, const Params& next,
                                            const FitControls& controls,
                                            Eigen::VectorXd* delta) const {
  const TreeData& data = model_.data();
  const Tree& tree = *data.tree;
  const int k = model_.k(), chars = data.characters, n = tree.num_nodes();
  const Eigen::MatrixXd& q = sample.theta.q;
  // W_ij = q_ij ln(q'_ij / q_ij) off the diagonal, W_ii = -(q'_i - q_i): the increment of
  // ln f(history) is sum_ij N_ij ln(q'_ij/q_ij) + sum_i T_i W_ii.
  Eigen::MatrixXd log_ratio = Eigen::MatrixXd::Zero(k, k);
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < k; ++j) {
      if (i != j && q(i, j) > 0 && next.q(i, j) > 0) {
        log_ratio(i, j) = std::log(next.q(i, j) / q(i, j));
      }
    }
  }
  const Eigen::VectorXd exit_change = next.q.diagonal() - q.diagonal();  // -(q'_i - q_i)
  Eigen::VectorXd root_change = Eigen::VectorXd::Zero(k);
  if (model_.root() == RootPrior::kStationary) {
    EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd from, RootDistribution(sample.theta));
    EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd to, RootDistribution(next));
    for (int i = 0; i < k; ++i) {
      root_change[i] = from[i] > 0 && to[i] > 0 ? std::log(to[i] / from[i]) : 0.0;
    }
  }
  const int64_t m = sample.size;
  const int64_t per_draw = static_cast<int64_t>(n) * chars;
  delta->resize(m);
  if (!rao_blackwell_) {
    for (int64_t s = 0; s < m; ++s) {
      const auto col = sample.tallies.col(s);
      double d = 0;
      for (int idx = 0; idx < k * k; ++idx) d += col[idx] * log_ratio(idx % k, idx / k);
      d += col.tail(k).dot(exit_change);
      const uint16_t* x = sample.states.data() + s * per_draw;
      for (int c = 0; c < chars; ++c) d += root_change[x[tree.root() * chars + c]];
      (*delta)[s] = d;
    }
    return absl::OkStatus();
  }
  // Rao-Blackwellised: G_e(a, b) = I(t_e, W)_ab / P_ab = E[increment on e | a, b] (§4.5).
  Eigen::MatrixXd w = q.cwiseProduct(log_ratio);
  w.diagonal() = exit_change;
  Eigen::MatrixXd g(k, static_cast<Eigen::Index>(n) * k);
  EMFIT_RETURN_IF_ERROR(::emfit::internal::ForEachBlock(
      NodeStripes(n), controls, [&](int, int64_t begin, int64_t end) -> absl::Status {
        Eigen::MatrixXd integral(k, k);
        for (int64_t v = begin; v < end; ++v) {
          auto gv = g.middleCols(v * k, k);
          if (tree.parent[v] < 0 || tree.length[v] == 0) {
            gv.setZero();
            continue;
          }
          sample.generator->Integral(tree.length[v], w, &integral);
          const auto p = sample.up.p.middleCols(v * k, k);
          gv = (p.array() > 0).select(integral.array() / p.array(), 0.0);
        }
        return absl::OkStatus();
      }));
  const int tasks = static_cast<int>((m + 1023) / 1024);
  ParallelFor(controls.pool, tasks, [&](int task) {
    const int64_t begin = int64_t{task} * 1024, end = std::min(m, begin + 1024);
    for (int64_t s = begin; s < end; ++s) {
      const uint16_t* x = sample.states.data() + s * per_draw;
      double d = 0;
      for (int c = 0; c < chars; ++c) d += root_change[x[tree.root() * chars + c]];
      for (int v = 0; v < n; ++v) {
        if (tree.parent[v] < 0) continue;
        for (int c = 0; c < chars; ++c) {
          d += g(x[tree.parent[v] * chars + c],
                 static_cast<Eigen::Index>(v) * k + x[static_cast<int64_t>(v) * chars + c]);
        }
      }
      (*delta)[s] = d;
    }
  });
  return absl::OkStatus();
}

absl::Status MkMonteCarloFamily::RateCovariance(const Sample& sample, const Params& next,
                                                const FitControls& controls,
                                                Eigen::MatrixXd* cov) const {
  const TreeData& data = model_.data();
  const Tree& tree = *data.tree;
  const RateLayout& layout = model_.layout();
  const int k = model_.k(), chars = data.characters, n = tree.num_nodes();
  const int rates = layout.num_rates;
  const int64_t m = sample.size, per_draw = static_cast<int64_t>(n) * chars;
  // Per draw and rate: N_p^s and T_p^s (rows 0..P-1 and P..2P-1).
  Eigen::MatrixXd per(2 * rates, m);
  if (!rao_blackwell_) {
    for (int64_t s = 0; s < m; ++s) {
      for (int p = 0; p < rates; ++p) {
        double np = 0, tp = 0;
        for (const auto& [i, j] : layout.cells[p]) {
          np += sample.tallies(i + j * k, s);
          tp += sample.tallies(k * k + i, s);
        }
        per(p, s) = np;
        per(rates + p, s) = tp;
      }
    }
  } else {
    // Per branch, tables E[N_p | a, b] (rate p's cells) and E[T_i | a, b] (state i), each an
    // integral of a unit pattern divided by P_ab (§4.4), then added up over the draws.
    per.setZero();
    const Eigen::MatrixXd& q = sample.generator->q();
    const int tables = rates + k;
    Eigen::MatrixXd g(k, static_cast<Eigen::Index>(k) * tables), w(k, k), integral(k, k);
    for (int v = 0; v < n; ++v) {
      EMFIT_RETURN_IF_ERROR(CheckCancelled(controls));
      if (tree.parent[v] < 0 || tree.length[v] == 0) continue;
      const auto p = sample.up.p.middleCols(static_cast<Eigen::Index>(v) * k, k);
      for (int x = 0; x < tables; ++x) {
        w.setZero();
        if (x < rates) {
          for (const auto& [i, j] : layout.cells[x]) w(i, j) = q(i, j);
        } else {
          w(x - rates, x - rates) = 1;
        }
        sample.generator->Integral(tree.length[v], w, &integral);
        g.middleCols(static_cast<Eigen::Index>(x) * k, k) =
            (p.array() > 0).select(integral.array() / p.array(), 0.0);
      }
      for (int64_t s = 0; s < m; ++s) {
        const uint16_t* x = sample.states.data() + s * per_draw;
        for (int c = 0; c < chars; ++c) {
          const int a = x[static_cast<int64_t>(tree.parent[v]) * chars + c];
          const int b = x[static_cast<int64_t>(v) * chars + c];
          for (int r = 0; r < rates; ++r) {
            per(r, s) += g(a, static_cast<Eigen::Index>(r) * k + b);
            for (const auto& [i, j] : layout.cells[r]) {
              per(rates + r, s) += g(a, static_cast<Eigen::Index>(rates + i) * k + b);
            }
          }
        }
      }
    }
  }
  const Eigen::VectorXd theta = model_.RatesOf(next);
  // Linearised ratio estimators: theta_p - theta ~ mean(z_p) / mean(T_p), z = N_p - theta_p T_p.
  Eigen::MatrixXd z(rates, m);
  Eigen::VectorXd mean_t(rates);
  for (int p = 0; p < rates; ++p) {
    mean_t[p] = per.row(rates + p).mean();
    z.row(p) = per.row(p) - theta[p] * per.row(rates + p);
  }
  const Eigen::MatrixXd centred = z.colwise() - z.rowwise().mean();
  *cov = m > 1 ? Eigen::MatrixXd(centred * centred.transpose() / (m - 1) / static_cast<double>(m))
               : Eigen::MatrixXd::Zero(rates, rates);
  const Eigen::VectorXd inv = (mean_t.array() > 0).select(mean_t.cwiseInverse(), 0.0);
  *cov = inv.asDiagonal() * *cov * inv.asDiagonal();
  return absl::OkStatus();
}

absl::StatusOr<Eigen::VectorXd> MkMonteCarloFamily::FixedPointStandardErrors(
    const Eigen::MatrixXd& cov, const Params& at, const FitControls& controls) const {
  // J: the exact EM map's Jacobian in rate space, by central differences.
  const MkFamily exact(model_);
  const Eigen::VectorXd theta = model_.RatesOf(at);
  const int rates = static_cast<int>(theta.size());
  Eigen::MatrixXd j(rates, rates);
  MkFamily::Stats stats = exact.NewStats();
  auto map = [&](const Eigen::VectorXd& x) -> absl::StatusOr<Eigen::VectorXd> {
    const MkParams p = model_.ParamsFromRates(x);
    EMFIT_RETURN_IF_ERROR(exact.EStep(p, controls, &stats).status());
    return model_.RatesOf(model_.MStep(stats.n, stats.t, stats.root, p));
  };
  for (int p = 0; p < rates; ++p) {
    const double h = 1e-5 * theta[p];
    Eigen::VectorXd up = theta, down = theta;
    up[p] += h;
    down[p] = std::max(down[p] - h, 0.0);
    EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd f_up, map(up));
    EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd f_down, map(down));
    j.col(p) = (f_up - f_down) / (up[p] - down[p]);
  }
  // V = J V J^T + cov, the stationary covariance of theta_{t+1} - theta* = J (theta_t - theta*)
  // + e_t; summed as a series (it converges when EM does, spectral radius of J < 1).
  Eigen::MatrixXd v = cov, term = cov;
  for (int i = 0; i < 100000; ++i) {
    term = j * term * j.transpose();
    v += term;
    if (!(term.cwiseAbs().maxCoeff() > 1e-12 * v.cwiseAbs().maxCoeff())) break;
  }
  return v.diagonal().cwiseMax(0.0).cwiseSqrt();
}

}  // namespace emfit::mk::internal
