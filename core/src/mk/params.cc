// MkParams, MkSpec, names and tip states (docs/algorithms.md §4.1-4.2).
#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "emfit/base/status_macros.h"
#include "emfit/mk/mk.h"
#include "mk/model.h"

namespace emfit::mk {

const char* RateModelName(RateModel model) {
  switch (model) {
    case RateModel::kER:
      return "ER";
    case RateModel::kSYM:
      return "SYM";
    case RateModel::kARD:
      return "ARD";
    case RateModel::kCustom:
      return "custom";
  }
  return "unknown";
}

absl::StatusOr<RateModel> ParseRateModel(absl::string_view name) {
  const std::string n = absl::AsciiStrToUpper(name);
  if (n == "ER") return RateModel::kER;
  if (n == "SYM") return RateModel::kSYM;
  if (n == "ARD") return RateModel::kARD;
  return absl::InvalidArgumentError(
      absl::StrFormat("rates: must be one of ER, SYM, ARD or an index matrix; got '%s'", name));
}

Eigen::MatrixXi RateIndex(RateModel model, int k) {
  Eigen::MatrixXi index = Eigen::MatrixXi::Zero(k, k);
  int next = 0;
  switch (model) {
    case RateModel::kER:
      index.setOnes();
      index.diagonal().setZero();
      break;
    case RateModel::kARD:
      for (int j = 0; j < k; ++j) {
        for (int i = 0; i < k; ++i) {
          if (i != j) index(i, j) = ++next;
        }
      }
      break;
    case RateModel::kSYM:
    case RateModel::kCustom:
      for (int j = 0; j < k; ++j) {
        for (int i = j + 1; i < k; ++i) {
          index(i, j) = index(j, i) = ++next;
        }
      }
      break;
  }
  return index;
}

const char* RootPriorName(RootPrior root) {
  switch (root) {
    case RootPrior::kEqual:
      return "equal";
    case RootPrior::kStationary:
      return "stationary";
    case RootPrior::kGiven:
      return "given";
    case RootPrior::kFitzJohn:
      return "fitzjohn";
  }
  return "unknown";
}

absl::StatusOr<RootPrior> ParseRootPrior(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "equal" || n == "flat") return RootPrior::kEqual;
  if (n == "stationary") return RootPrior::kStationary;
  if (n == "given") return RootPrior::kGiven;
  if (n == "fitzjohn") return RootPrior::kFitzJohn;
  return absl::InvalidArgumentError(
      absl::StrFormat("root: must be one of equal, stationary, given, fitzjohn; got '%s'", name));
}

const char* PathSamplerName(PathSampler sampler) {
  switch (sampler) {
    case PathSampler::kAuto:
      return "auto";
    case PathSampler::kRejection:
      return "rejection";
    case PathSampler::kModifiedRejection:
      return "modified-rejection";
    case PathSampler::kUniformization:
      return "uniformization";
  }
  return "unknown";
}

absl::StatusOr<PathSampler> ParsePathSampler(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "auto") return PathSampler::kAuto;
  if (n == "rejection") return PathSampler::kRejection;
  if (n == "modified-rejection") return PathSampler::kModifiedRejection;
  if (n == "uniformization" || n == "uniformisation") return PathSampler::kUniformization;
  return absl::InvalidArgumentError(absl::StrFormat(
      "sampler: must be one of auto, rejection, modified-rejection, uniformization; got '%s'",
      name));
}

const char* EStepMethodName(EStepMethod method) {
  return method == EStepMethod::kExact ? "exact" : "monte-carlo";
}

absl::StatusOr<EStepMethod> ParseEStepMethod(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "exact") return EStepMethod::kExact;
  if (n == "monte-carlo" || n == "monte_carlo" || n == "mc") return EStepMethod::kMonteCarlo;
  return absl::InvalidArgumentError(
      absl::StrFormat("estep: must be exact or monte-carlo; got '%s'", name));
}

namespace {

absl::Status CheckStateNames(const std::vector<std::string>& names, absl::string_view what) {
  if (names.size() < 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.state_names: at least 2 states are needed, got %d", what, names.size()));
  }
  std::set<std::string> seen;
  for (const std::string& s : names) {
    if (s.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s.state_names: a state name is empty", what));
    }
    if (!seen.insert(s).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s.state_names: '%s' appears twice", what, s));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRootProbs(const Eigen::VectorXd& probs, int k, absl::string_view what) {
  if (probs.size() != k) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.root_probs: the given root prior needs k=%d values, got %d", what, k, probs.size()));
  }
  if (!probs.allFinite() || (probs.array() < 0).any() || !(probs.sum() > 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.root_probs: values must be finite, >= 0 and have a positive sum", what));
  }
  return absl::OkStatus();
}

}  // namespace

int MkParams::num_rates() const { return index.size() == 0 ? 0 : index.maxCoeff(); }

Eigen::VectorXd MkParams::Rates() const {
  const int p = num_rates();
  Eigen::VectorXd rates = Eigen::VectorXd::Zero(p);
  Eigen::VectorXd count = Eigen::VectorXd::Zero(p);
  for (int i = 0; i < k(); ++i) {
    for (int j = 0; j < k(); ++j) {
      if (i == j || index(i, j) <= 0) continue;
      rates[index(i, j) - 1] += q(i, j);
      count[index(i, j) - 1] += 1;
    }
  }
  return rates.cwiseQuotient(count.cwiseMax(1.0));
}

Eigen::VectorXd MkParams::RootDistribution() const {
  if (root == RootPrior::kGiven && root_probs.size() == k() && root_probs.sum() > 0) {
    return root_probs / root_probs.sum();
  }
  if (root == RootPrior::kStationary) {
    absl::StatusOr<Eigen::VectorXd> pi = internal::StationaryDistribution(q);
    if (pi.ok()) return *pi;
  }
  return Eigen::VectorXd::Constant(k(), 1.0 / k());
}

absl::Status MkParams::Validate(absl::string_view what) const {
  const int kk = k();
  if (q.rows() != q.cols() || kk < 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.q: must be a k x k rate matrix with k >= 2, got %d x %d", what, q.rows(), q.cols()));
  }
  if (static_cast<int>(state_names.size()) != kk) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.state_names: the rate matrix has k=%d states, got %d names", what, kk,
                        state_names.size()));
  }
  EMFIT_RETURN_IF_ERROR(CheckStateNames(state_names, what));
  if (index.rows() != kk || index.cols() != kk) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.index: must be k x k (%d x %d) like the rate matrix, got %d x %d", what,
                        kk, kk, index.rows(), index.cols()));
  }
  EMFIT_ASSIGN_OR_RETURN(internal::RateLayout layout,
                         internal::RateLayout::FromIndex(index, absl::StrCat(what, ".index")));
  Eigen::MatrixXi given = index;
  given.diagonal().setZero();
  if (layout.index != given) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.index: values must be 1..P with every value used and 0 on the diagonal", what));
  }
  if (!q.allFinite()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s.q: values must be finite", what));
  }
  const Eigen::VectorXd rates = Rates();
  for (int i = 0; i < kk; ++i) {
    for (int j = 0; j < kk; ++j) {
      if (i == j) continue;
      const double v = q(i, j);
      if (index(i, j) == 0) {
        if (v != 0) {
          return absl::InvalidArgumentError(
              absl::StrFormat("%s.q: entry (%d, %d) is %g but the index forbids that transition",
                              what, i + 1, j + 1, v));
        }
        continue;
      }
      if (v < 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s.q: entry (%d, %d) is %g; rates must be >= 0", what, i + 1, j + 1, v));
      }
      const double r = rates[index(i, j) - 1];
      if (std::abs(v - r) > 1e-9 * std::max(std::abs(r), 1e-300)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s.q: entry (%d, %d) is %.17g but other cells with index %d hold %.17g", what, i + 1,
            j + 1, v, index(i, j), r));
      }
    }
    const double off = q.row(i).sum() - q(i, i);
    if (std::abs(q(i, i) + off) > 1e-9 * std::max(off, 1e-300)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s.q: row %d must sum to 0 (diagonal %.17g, off-diagonal sum %.17g)",
                          what, i + 1, q(i, i), off));
    }
  }
  if (root == RootPrior::kGiven) EMFIT_RETURN_IF_ERROR(CheckRootProbs(root_probs, kk, what));
  return absl::OkStatus();
}

absl::StatusOr<MkParams> MkParams::FromRates(std::vector<std::string> state_names,
                                             const Eigen::MatrixXi& index,
                                             const Eigen::VectorXd& rates, RootPrior root,
                                             Eigen::VectorXd root_probs) {
  EMFIT_ASSIGN_OR_RETURN(internal::RateLayout layout,
                         internal::RateLayout::FromIndex(index, "index"));
  if (rates.size() != layout.num_rates) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "rates: the index matrix has %d rates, got %d values", layout.num_rates, rates.size()));
  }
  if (!rates.allFinite() || (rates.array() < 0).any()) {
    return absl::InvalidArgumentError("rates: values must be finite and >= 0");
  }
  MkParams p;
  p.state_names = std::move(state_names);
  p.index = layout.index;
  p.q = layout.Q(rates);
  p.root = root;
  if (root == RootPrior::kGiven) {
    EMFIT_RETURN_IF_ERROR(CheckRootProbs(root_probs, layout.k, "model.mk"));
    p.root_probs = root_probs / root_probs.sum();
  }
  EMFIT_RETURN_IF_ERROR(p.Validate());
  return p;
}

int64_t NumFreeParameters(const MkParams& params) { return params.num_rates(); }

absl::Status MkSpec::Validate() const {
  EMFIT_RETURN_IF_ERROR(CheckStateNames(state_names, "spec.mk"));
  const int kk = k();
  if (rates == RateModel::kCustom) {
    if (index.rows() != kk || index.cols() != kk) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "spec.mk.index: must be a square k x k matrix (%d x %d, one row and column per "
          "state), got %d x %d",
          kk, kk, index.rows(), index.cols()));
    }
    EMFIT_RETURN_IF_ERROR(internal::RateLayout::FromIndex(index, "spec.mk.index").status());
  }
  if (root == RootPrior::kGiven) EMFIT_RETURN_IF_ERROR(CheckRootProbs(root_probs, kk, "spec.mk"));
  if (root == RootPrior::kFitzJohn) {
    return absl::InvalidArgumentError(
        "spec.mk.root: fitzjohn is not a prior (it depends on the data), so EM cannot fit it; "
        "use equal, stationary or given (Score and NodePosteriors accept fitzjohn)");
  }
  if (!std::isfinite(q_min) || !std::isfinite(q_max) || q_min < 0 || q_max < 0 ||
      (q_max > 0 && q_min >= q_max)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "spec.mk.q_min, q_max: must be finite, >= 0 (0: default) and q_min < q_max; got %g, %g",
        q_min, q_max));
  }
  EMFIT_RETURN_IF_ERROR(mcem.Validate());
  if (init_params.has_value()) {
    EMFIT_RETURN_IF_ERROR(init_params->Validate("init"));
    if (init_params->state_names != state_names) {
      return absl::InvalidArgumentError(
          "init.state_names: the starting model's states differ from the spec's");
    }
    const Eigen::MatrixXi spec_index = rates == RateModel::kCustom ? index : RateIndex(rates, kk);
    if (init_params->index != spec_index) {
      return absl::InvalidArgumentError(
          "init.index: the starting model's index matrix differs from the spec's rate structure");
    }
    if (init_params->root != root) {
      return absl::InvalidArgumentError(
          "init.root: the starting model's root prior differs from the spec's");
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> StateNames(absl::Span<const std::string> states) {
  std::set<std::string> names;
  for (const std::string& s : states) {
    for (absl::string_view part : absl::StrSplit(s, '|')) {
      part = absl::StripAsciiWhitespace(part);
      if (part.empty() || part == "?" || part == "-") continue;
      names.emplace(part);
    }
  }
  return std::vector<std::string>(names.begin(), names.end());
}

absl::StatusOr<Eigen::MatrixXd> TipLikelihoods(absl::Span<const std::string> labels,
                                               absl::Span<const std::string> states,
                                               absl::Span<const std::string> state_names) {
  if (labels.size() != states.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tips: %d labels for %d states", labels.size(), states.size()));
  }
  absl::flat_hash_map<std::string, int> index_of;
  for (size_t i = 0; i < state_names.size(); ++i) index_of.emplace(state_names[i], i);
  const int k = static_cast<int>(state_names.size());
  Eigen::MatrixXd out = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(states.size()), k);
  for (size_t r = 0; r < states.size(); ++r) {
    const absl::string_view s = absl::StripAsciiWhitespace(states[r]);
    if (s.empty() || s == "?" || s == "-") {
      out.row(r).setOnes();
      continue;
    }
    for (absl::string_view part : absl::StrSplit(s, '|')) {
      part = absl::StripAsciiWhitespace(part);
      auto it = index_of.find(part);
      if (it == index_of.end()) {
        std::vector<std::string> names(state_names.begin(), state_names.end());
        return absl::InvalidArgumentError(absl::StrFormat(
            "tips: row %d ('%s'): state '%s' is not one of the declared states (%s)", r + 1,
            labels[r], part, absl::StrJoin(names, ", ")));
      }
      out(r, it->second) = 1.0;
    }
  }
  return out;
}

}  // namespace emfit::mk
