#include "mk/pruning.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "emfit/base/status_macros.h"
#include "emfit/exec/thread_pool.h"
#include "exec/stripes.h"

namespace emfit::mk::internal {

namespace {

// "'a', 'b', 'c' and 4 more"
std::string NameList(const std::vector<std::string>& names) {
  constexpr size_t kShown = 5;
  std::vector<std::string> shown;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) shown.push_back("'" + names[i] + "'");
  std::string out = absl::StrJoin(shown, ", ");
  if (names.size() > kShown) absl::StrAppend(&out, " and ", names.size() - kShown, " more");
  return out;
}

}  // namespace

absl::StatusOr<TreeData> MatchTips(const Tree& tree, const MkTips& tips, int k, const char* what) {
  const Eigen::Index rows = tips.likelihoods.rows(), cols = tips.likelihoods.cols();
  if (k < 2) {
    return absl::InvalidArgumentError(absl::StrFormat("the model needs k >= 2 states, got %d", k));
  }
  if (static_cast<size_t>(rows) != tips.labels.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %d labels for %d rows of tip likelihoods", what, tips.labels.size(), rows));
  }
  if (cols == 0 || cols % k != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.likelihoods: must have C*k columns (k=%d states, C >= 1 characters), got %d", what, k,
        cols));
  }
  const int characters = static_cast<int>(cols / k);
  for (Eigen::Index r = 0; r < rows; ++r) {
    for (int c = 0; c < characters; ++c) {
      const auto block = tips.likelihoods.row(r).segment(c * k, k);
      if (!block.allFinite() || (block.array() < 0).any()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: row %d ('%s'): tip likelihoods must be finite and >= 0", what,
                            r + 1, tips.labels[r]));
      }
      if (!(block.maxCoeff() > 0)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: row %d ('%s') allows no state for character %d", what, r + 1,
                            tips.labels[r], c + 1));
      }
    }
  }
  absl::flat_hash_map<std::string, int> tip_of;
  tip_of.reserve(tree.num_tips);
  for (int v = 0; v < tree.num_tips; ++v) tip_of.emplace(tree.labels[v], v);
  TreeData data;
  data.tree = &tree;
  data.k = k;
  data.characters = characters;
  const int n = tree.num_nodes();
  data.tips = Eigen::MatrixXd::Ones(k, static_cast<Eigen::Index>(n) * characters);
  std::vector<int> row_of(tree.num_tips, -1);
  std::vector<std::string> unmatched;
  for (Eigen::Index r = 0; r < rows; ++r) {
    auto it = tip_of.find(tips.labels[r]);
    if (it == tip_of.end()) {
      unmatched.push_back(tips.labels[r]);
      continue;
    }
    if (row_of[it->second] >= 0) {
      return absl::InvalidArgumentError(absl::StrFormat("%s.labels: '%s' appears in rows %d and %d",
                                                        what, tips.labels[r],
                                                        row_of[it->second] + 1, r + 1));
    }
    row_of[it->second] = static_cast<int>(r);
    for (int c = 0; c < characters; ++c) {
      data.tips.col(static_cast<Eigen::Index>(it->second) * characters + c) =
          tips.likelihoods.row(r).segment(c * k, k).transpose();
    }
  }
  std::vector<std::string> missing;
  for (int v = 0; v < tree.num_tips; ++v) {
    if (row_of[v] < 0) missing.push_back(tree.labels[v]);
  }
  data.tips_used = tree.num_tips - static_cast<int64_t>(missing.size());
  if (!tips.allow_missing_tips && (!missing.empty() || !unmatched.empty())) {
    if (!missing.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: %d tip%s of the tree ha%s no row: %s (allow_missing_tips treats them as missing)",
          what, missing.size(), missing.size() == 1 ? "" : "s", missing.size() == 1 ? "s" : "ve",
          NameList(missing)));
    }
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %d row%s match%s no tip of the tree: %s (allow_missing_tips ignores them)", what,
        unmatched.size(), unmatched.size() == 1 ? "" : "s", unmatched.size() == 1 ? "es" : "",
        NameList(unmatched)));
  }
  if (!missing.empty()) {
    data.warnings.push_back(
        {"missing_tips",
         absl::StrFormat("%d tip%s of the tree without a row treated as missing: %s",
                         missing.size(), missing.size() == 1 ? "" : "s", NameList(missing)),
         0, -1});
  }
  if (!unmatched.empty()) {
    data.warnings.push_back(
        {"unmatched_rows",
         absl::StrFormat("%d row%s matching no tip ignored: %s", unmatched.size(),
                         unmatched.size() == 1 ? "" : "s", NameList(unmatched)),
         0, -1});
  }
  int branches = 0;
  double total = 0;
  for (int v = 0; v < n; ++v) {
    if (tree.parent[v] < 0) continue;
    ++branches;
    total += tree.length[v];
  }
  data.mean_branch_length = branches > 0 ? total / branches : 0.0;
  return data;
}

absl::StatusOr<Eigen::VectorXd> RootDistribution(const MkParams& params) {
  const int k = params.k();
  switch (params.root) {
    case RootPrior::kEqual:
    case RootPrior::kFitzJohn:
      return Eigen::VectorXd::Constant(k, 1.0 / k);
    case RootPrior::kGiven:
      return params.root_probs / params.root_probs.sum();
    case RootPrior::kStationary:
      return StationaryDistribution(params.q);
  }
  return absl::InternalError("unknown root prior");
}

absl::Status PruneUp(const TreeData& data, const Generator& generator, RootPrior root,
                     const Eigen::VectorXd& rho, const FitControls& controls, Upward* up) {
  const Tree& tree = *data.tree;
  const int k = data.k, chars = data.characters, n = tree.num_nodes();
  up->p.resize(k, static_cast<Eigen::Index>(n) * k);
  up->lhat.resize(k, static_cast<Eigen::Index>(n) * chars);
  up->msg.resize(k, static_cast<Eigen::Index>(n) * chars);
  up->log_scale.setZero(chars);
  EMFIT_RETURN_IF_ERROR(::emfit::internal::ForEachBlock(
      NodeStripes(n), controls, [&](int, int64_t begin, int64_t end) -> absl::Status {
        Eigen::MatrixXd p;
        for (int64_t v = begin; v < end; ++v) {
          generator.Transition(tree.parent[v] < 0 ? 0.0 : tree.length[v], &p);
          up->p.middleCols(v * k, k) = p;
        }
        return absl::OkStatus();
      }));
  Eigen::MatrixXd prod(k, chars);
  for (int v : tree.postorder) {
    auto cols = up->lhat.middleCols(static_cast<Eigen::Index>(v) * chars, chars);
    if (tree.IsTip(v)) {
      prod = data.tips.middleCols(static_cast<Eigen::Index>(v) * chars, chars);
    } else {
      prod.setOnes();
      for (int c : tree.Children(v)) {
        prod.array() *= up->msg.middleCols(static_cast<Eigen::Index>(c) * chars, chars).array();
      }
    }
    for (int c = 0; c < chars; ++c) {
      const double s = prod.col(c).maxCoeff();
      if (!(s > 0) || !std::isfinite(s)) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "the tip data have probability 0 under this model (below node %d%s, character %d): "
            "they need a transition the rate structure forbids",
            v, tree.labels[v].empty() ? "" : absl::StrCat(" '", tree.labels[v], "'"), c + 1));
      }
      cols.col(c) = prod.col(c) / s;
      up->log_scale[c] += std::log(s);
    }
    if (tree.parent[v] >= 0) {
      up->msg.middleCols(static_cast<Eigen::Index>(v) * chars, chars).noalias() =
          up->p.middleCols(static_cast<Eigen::Index>(v) * k, k) * cols;
    }
  }
  const auto root_l = up->lhat.middleCols(static_cast<Eigen::Index>(tree.root()) * chars, chars);
  up->rho.resize(k, chars);
  up->log_likelihood.resize(chars);
  for (int c = 0; c < chars; ++c) {
    if (root == RootPrior::kFitzJohn) {
      up->rho.col(c) = root_l.col(c) / root_l.col(c).sum();
    } else {
      up->rho.col(c) = rho;
    }
    const double l = up->rho.col(c).dot(root_l.col(c));
    if (!(l > 0)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "the tip data have probability 0 under this model: the root prior excludes every "
          "state the data allow at the root (character %d)",
          c + 1));
    }
    up->log_likelihood[c] = std::log(l) + up->log_scale[c];
  }
  up->total = up->log_likelihood.sum();
  return absl::OkStatus();
}

absl::Status ExpectedCounts(const TreeData& data, const Generator& generator, const Upward& up,
                            const FitControls& controls, Expected* out, Eigen::MatrixXd* nodes) {
  const Tree& tree = *data.tree;
  const int k = data.k, chars = data.characters, n = tree.num_nodes();
  const auto block = [chars](int v) { return static_cast<Eigen::Index>(v) * chars; };
  // Outside pass (pre-order): ahat_v = omega_u o (product of v's siblings' messages), omega_v =
  // P(t_v)^T ahat_v, both scaled per column (every scale cancels in z).
  Eigen::MatrixXd ahat(k, static_cast<Eigen::Index>(n) * chars);
  Eigen::MatrixXd omega(k, static_cast<Eigen::Index>(n) * chars);
  omega.middleCols(block(tree.root()), chars) = up.rho;
  std::vector<Eigen::MatrixXd> suffix;
  Eigen::MatrixXd pre(k, chars);
  auto scale_columns = [chars](auto&& m) {
    for (int c = 0; c < chars; ++c) {
      const double s = m.col(c).maxCoeff();
      if (s > 0) m.col(c) /= s;
    }
  };
  for (auto it = tree.postorder.rbegin(); it != tree.postorder.rend(); ++it) {
    const int u = *it;
    const absl::Span<const int> ch = tree.Children(u);
    if (ch.empty()) continue;
    const int d = static_cast<int>(ch.size());
    suffix.resize(std::max<size_t>(suffix.size(), d + 1));
    suffix[d].setOnes(k, chars);
    for (int i = d - 1; i >= 1; --i) {
      suffix[i] = suffix[i + 1].cwiseProduct(up.msg.middleCols(block(ch[i]), chars));
      scale_columns(suffix[i]);
    }
    pre = omega.middleCols(block(u), chars);
    for (int i = 0; i < d; ++i) {
      const int v = ch[i];
      auto a = ahat.middleCols(block(v), chars);
      a = pre.cwiseProduct(suffix[i + 1]);
      scale_columns(a);
      auto w = omega.middleCols(block(v), chars);
      w.noalias() = up.p.middleCols(static_cast<Eigen::Index>(v) * k, k).transpose() * a;
      scale_columns(w);
      if (i + 1 < d) {
        pre.array() *= up.msg.middleCols(block(v), chars).array();
        scale_columns(pre);
      }
    }
  }
  // One endpoint-conditioned integral per branch; per-stripe partials reduced in order.
  const ::emfit::internal::Stripes node_stripes = NodeStripes(n);
  const int stripes = node_stripes.count();
  std::vector<Eigen::MatrixXd> part_n(stripes, Eigen::MatrixXd::Zero(k, k));
  std::vector<Eigen::VectorXd> part_t(stripes, Eigen::VectorXd::Zero(k));
  const Eigen::MatrixXd& q = generator.q();
  EMFIT_RETURN_IF_ERROR(::emfit::internal::ForEachBlock(
      node_stripes, controls, [&](int s, int64_t begin, int64_t end) -> absl::Status {
        Eigen::MatrixXd b(k, k), integral(k, k);
        for (int64_t v = begin; v < end; ++v) {
          if (tree.parent[v] < 0 || tree.length[v] == 0) continue;
          b.setZero();
          for (int c = 0; c < chars; ++c) {
            const Eigen::Index col = v * chars + c;
            const double z = ahat.col(col).dot(up.msg.col(col));
            // B^T directly: the integral is taken of B^T.
            b.noalias() += up.lhat.col(col) * (ahat.col(col).transpose() / z);
          }
          generator.Integral(tree.length[v], b, &integral);
          // S = integral^T: E[T_i] = S_ii, E[N_ij] = q_ij S_ij = q_ij integral_ji.
          part_t[s] += integral.diagonal();
          part_n[s].array() += q.array() * integral.transpose().array();
        }
        return absl::OkStatus();
      }));
  out->transitions.setZero(k, k);
  out->times.setZero(k);
  for (int s = 0; s < stripes; ++s) {
    out->transitions += part_n[s];
    out->times += part_t[s];
  }
  out->transitions.diagonal().setZero();
  out->transitions = out->transitions.cwiseMax(0.0);
  out->times = out->times.cwiseMax(0.0);
  out->root.setZero(k);
  const auto root_l = up.lhat.middleCols(block(tree.root()), chars);
  for (int c = 0; c < chars; ++c) {
    const Eigen::VectorXd post = up.rho.col(c).cwiseProduct(root_l.col(c));
    out->root += post / post.sum();
  }
  if (nodes != nullptr) {
    nodes->resize(n, static_cast<Eigen::Index>(chars) * k);
    for (int v = 0; v < n; ++v) {
      for (int c = 0; c < chars; ++c) {
        const Eigen::Index col = block(v) + c;
        Eigen::VectorXd post = omega.col(col).cwiseProduct(up.lhat.col(col));
        post /= post.sum();
        nodes->row(v).segment(c * k, k) = post.transpose();
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace emfit::mk::internal
