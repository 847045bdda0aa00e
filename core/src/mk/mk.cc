// The Mk family's public entry points (docs/algorithms.md §4).
#include "emfit/mk/mk.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"
#include "mk/family.h"
#include "mk/model.h"
#include "mk/pruning.h"

namespace emfit::mk {

namespace {

// The model of `params` on `tree` and `tips`, ready for the internal algorithms.
struct Prepared {
  internal::TreeData data;
  internal::RateLayout layout;
};

absl::StatusOr<Prepared> Prepare(const MkParams& params, const Tree& tree, const MkTips& tips) {
  EMFIT_RETURN_IF_ERROR(params.Validate());
  Prepared out;
  EMFIT_ASSIGN_OR_RETURN(out.data, internal::MatchTips(tree, tips, params.k()));
  EMFIT_ASSIGN_OR_RETURN(out.layout,
                         internal::RateLayout::FromIndex(params.index, "model.mk.index"));
  return out;
}

}  // namespace

absl::StatusOr<MkScore> Score(const MkParams& params, const Tree& tree, const MkTips& tips,
                              const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(Prepared p, Prepare(params, tree, tips));
  const internal::Generator generator(params.q, p.layout.symmetric);
  EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd rho, internal::RootDistribution(params));
  internal::Upward up;
  EMFIT_RETURN_IF_ERROR(internal::PruneUp(p.data, generator, params.root, rho, controls, &up));
  MkScore out;
  out.log_likelihood = up.total;
  out.num_free_parameters = NumFreeParameters(params);
  out.tips_used = p.data.tips_used;
  const double n = static_cast<double>(std::max<int64_t>(1, p.data.tips_used * p.data.characters));
  out.aic = -2 * out.log_likelihood + 2.0 * static_cast<double>(out.num_free_parameters);
  out.bic = -2 * out.log_likelihood + static_cast<double>(out.num_free_parameters) * std::log(n);
  out.warnings = std::move(p.data.warnings);
  return out;
}

absl::StatusOr<MkPosteriors> NodePosteriors(const MkParams& params, const Tree& tree,
                                            const MkTips& tips, const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(Prepared p, Prepare(params, tree, tips));
  const internal::Generator generator(params.q, p.layout.symmetric);
  EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd rho, internal::RootDistribution(params));
  internal::Upward up;
  EMFIT_RETURN_IF_ERROR(internal::PruneUp(p.data, generator, params.root, rho, controls, &up));
  internal::Expected e;
  MkPosteriors out;
  EMFIT_RETURN_IF_ERROR(internal::ExpectedCounts(p.data, generator, up, controls, &e, &out.nodes));
  out.log_likelihood = up.total;
  out.transitions = std::move(e.transitions);
  out.dwelling_times = std::move(e.times);
  out.warnings = std::move(p.data.warnings);
  return out;
}

}  // namespace emfit::mk
