#include "convert/mk.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"
#include "emfit/mk/tree.h"

namespace emfit::server {
namespace {

// Posterior blocks and SIMMAP batches: about this many bytes per message, far below the 4 MiB
// default limit.
constexpr size_t kMessageBytes = size_t{1} << 20;
// FitResult.mk.tree.node_probabilities beyond this is left out (Posterior streams them).
constexpr size_t kMaxNodeProbabilityBytes = size_t{32} << 20;

// ---- enums ----

absl::StatusOr<mk::RateModel> RateModelFromProto(v1::RateModel m, absl::string_view field) {
  switch (m) {
    case v1::RATE_MODEL_UNSPECIFIED:
    case v1::RATE_MODEL_ER:
      return mk::RateModel::kER;
    case v1::RATE_MODEL_SYM:
      return mk::RateModel::kSYM;
    case v1::RATE_MODEL_ARD:
      return mk::RateModel::kARD;
    case v1::RATE_MODEL_CUSTOM:
      return mk::RateModel::kCustom;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: unknown rate model %d", field, static_cast<int>(m)));
  }
}

v1::RateModel RateModelToProto(mk::RateModel m) {
  switch (m) {
    case mk::RateModel::kER:
      return v1::RATE_MODEL_ER;
    case mk::RateModel::kSYM:
      return v1::RATE_MODEL_SYM;
    case mk::RateModel::kARD:
      return v1::RATE_MODEL_ARD;
    case mk::RateModel::kCustom:
      return v1::RATE_MODEL_CUSTOM;
  }
  return v1::RATE_MODEL_UNSPECIFIED;
}

absl::StatusOr<mk::RootPrior> RootFromProto(v1::RootPrior r, absl::string_view field) {
  switch (r) {
    case v1::ROOT_PRIOR_UNSPECIFIED:
    case v1::ROOT_PRIOR_EQUAL:
      return mk::RootPrior::kEqual;
    case v1::ROOT_PRIOR_STATIONARY:
      return mk::RootPrior::kStationary;
    case v1::ROOT_PRIOR_GIVEN:
      return mk::RootPrior::kGiven;
    case v1::ROOT_PRIOR_FITZJOHN:
      return mk::RootPrior::kFitzJohn;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: unknown root prior %d", field, static_cast<int>(r)));
  }
}

v1::RootPrior RootToProto(mk::RootPrior r) {
  switch (r) {
    case mk::RootPrior::kEqual:
      return v1::ROOT_PRIOR_EQUAL;
    case mk::RootPrior::kStationary:
      return v1::ROOT_PRIOR_STATIONARY;
    case mk::RootPrior::kGiven:
      return v1::ROOT_PRIOR_GIVEN;
    case mk::RootPrior::kFitzJohn:
      return v1::ROOT_PRIOR_FITZJOHN;
  }
  return v1::ROOT_PRIOR_UNSPECIFIED;
}

absl::StatusOr<mk::PathSampler> SamplerFromProto(v1::PathSampler s, absl::string_view field) {
  switch (s) {
    case v1::PATH_SAMPLER_UNSPECIFIED:
    case v1::PATH_SAMPLER_AUTO:
      return mk::PathSampler::kAuto;
    case v1::PATH_SAMPLER_REJECTION:
      return mk::PathSampler::kRejection;
    case v1::PATH_SAMPLER_MODIFIED_REJECTION:
      return mk::PathSampler::kModifiedRejection;
    case v1::PATH_SAMPLER_UNIFORMIZATION:
      return mk::PathSampler::kUniformization;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: unknown path sampler %d", field, static_cast<int>(s)));
  }
}

v1::PathSampler SamplerToProto(mk::PathSampler s) {
  switch (s) {
    case mk::PathSampler::kAuto:
      return v1::PATH_SAMPLER_AUTO;
    case mk::PathSampler::kRejection:
      return v1::PATH_SAMPLER_REJECTION;
    case mk::PathSampler::kModifiedRejection:
      return v1::PATH_SAMPLER_MODIFIED_REJECTION;
    case mk::PathSampler::kUniformization:
      return v1::PATH_SAMPLER_UNIFORMIZATION;
  }
  return v1::PATH_SAMPLER_UNSPECIFIED;
}

// ---- messages ----

// An index matrix: non-negative integers (core checks the shape and renumbers the values).
absl::StatusOr<Eigen::MatrixXi> IndexFromProto(const v1::Matrix& m, absl::string_view field) {
  EMFIT_ASSIGN_OR_RETURN(Eigen::MatrixXd values, FromProto(m, field));
  Eigen::MatrixXi out(values.rows(), values.cols());
  for (Eigen::Index i = 0; i < values.rows(); ++i) {
    for (Eigen::Index j = 0; j < values.cols(); ++j) {
      const double v = values(i, j);
      if (!(v >= 0 && v <= INT_MAX) || v != std::floor(v)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: entry (%d, %d) is %g; entries must be integers >= 0 (equal positive values share "
            "a rate, 0 forbids the change)",
            field, i + 1, j + 1, v));
      }
      out(i, j) = static_cast<int>(v);
    }
  }
  return out;
}

void SpecToProto(const mk::MkSpec& spec, v1::MkSpec* out) {
  out->mutable_state_names()->Assign(spec.state_names.begin(), spec.state_names.end());
  out->set_rate_model(RateModelToProto(spec.rates));
  if (spec.rates == mk::RateModel::kCustom) {
    ToProto(spec.index.cast<double>(), out->mutable_index());
  }
  out->set_root(RootToProto(spec.root));
  out->mutable_root_probs()->Assign(spec.root_probs.data(),
                                    spec.root_probs.data() + spec.root_probs.size());
  out->set_estep(spec.estep == mk::EStepMethod::kExact ? v1::E_STEP_METHOD_EXACT
                                                       : v1::E_STEP_METHOD_MONTE_CARLO);
  if (spec.estep == mk::EStepMethod::kMonteCarlo) {
    v1::McemOptions* m = out->mutable_mcem();
    m->set_initial_sample_size(static_cast<uint32_t>(spec.mcem.initial_sample_size));
    m->set_max_sample_size(static_cast<uint32_t>(spec.mcem.max_sample_size));
    m->set_alpha(spec.mcem.alpha);
    m->set_beta(spec.mcem.beta);
    m->set_gamma(spec.mcem.gamma);
    m->set_tol(spec.mcem.tol);
    m->set_plain_tallies(!spec.rao_blackwell);
    m->set_sampler(SamplerToProto(spec.sampler));
    m->set_kappa(spec.mcem.kappa);
    m->set_guard(spec.mcem.guard);
    m->set_ascent_stop(spec.mcem.ascent_stop);
  }
  out->set_q_min(spec.q_min);
  out->set_q_max(spec.q_max);
}

// An Mk request's data: the tree is the Newick text, the tips are the named rows.
absl::Status CheckMkShape(const v1::DataShape& shape, int k, const ServiceLimits& limits,
                          absl::string_view field) {
  if (shape.num_sequences() != 0 || shape.weight_column()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: an Mk model's rows are the tips of a tree; num_sequences and weight_column belong "
        "to other families",
        field));
  }
  if (shape.newick_bytes() == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.newick_bytes: an Mk model needs the tree: declare the bytes of its "
                        "Newick text and stream them in chunk.newick",
                        field));
  }
  if (!shape.row_names()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.row_names: an Mk model's rows are the tips: set row_names and stream "
                        "each row's tip label in chunk.row_names",
                        field));
  }
  if (shape.rows() > limits.max_tips) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s.rows: at most %d tips per request (--max_tips), got %d", field,
                        limits.max_tips, shape.rows()));
  }
  if (k > 0 && shape.cols() % static_cast<uint32_t>(k) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.cols: an Mk model of k=%d states takes k columns per character (each tip's "
        "likelihood of each state), got %d",
        field, k, shape.cols()));
  }
  return absl::OkStatus();
}

absl::Status CheckStates(size_t k, const ServiceLimits& limits, absl::string_view field) {
  if (k > static_cast<size_t>(limits.max_states)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: at most %d states per model (--max_states), got %d", field, limits.max_states, k));
  }
  return absl::OkStatus();
}

MkDataPlan DataPlan(const v1::DataShape& shape, const ServiceLimits& limits) {
  MkDataPlan plan;
  plan.allow_missing_tips = shape.allow_missing_tips();
  plan.max_tips = limits.max_tips;
  // The store of Monte Carlo EM's node states may take as much memory as the largest table a
  // request may send.
  plan.max_sample_bytes = limits.max_values * sizeof(double);
  return plan;
}

constexpr uint64_t kDouble = sizeof(double);

// The most nodes a tree of `shape` can have: every node takes at least three bytes of Newick
// text ("A:1," or "):0"), and a tree without unary nodes has fewer than twice its tips.
uint64_t MaxNodes(const v1::DataShape& shape) {
  const uint64_t by_text = shape.newick_bytes() / 3 + 1;
  return std::max<uint64_t>(1, shape.newick_bytes() > 0 ? by_text : 2 * shape.rows());
}

// The free rates of a (validated) spec.
int64_t NumRates(const mk::MkSpec& spec) {
  const Eigen::MatrixXi index =
      spec.rates == mk::RateModel::kCustom ? spec.index : mk::RateIndex(spec.rates, spec.k());
  std::set<int> rates;
  for (Eigen::Index i = 0; i < index.rows(); ++i) {
    for (Eigen::Index j = 0; j < index.cols(); ++j) {
      if (i != j && index(i, j) > 0) rates.insert(index(i, j));
    }
  }
  return static_cast<int64_t>(rates.size());
}

// Bytes Monte Carlo EM keeps per draw (core/src/mk/mc_family.cc): the node states (2 bytes per
// node and character), the draw's tallies of transitions and times, its increment in the
// ascent test and its rows of the rate covariance's tables (4 per rate).
uint64_t BytesPerDraw(const mk::MkSpec& spec, uint64_t nodes, uint64_t characters) {
  const uint64_t k = static_cast<uint64_t>(spec.k());
  return nodes * characters * 2 +
         (4 * static_cast<uint64_t>(NumRates(spec)) + k * k + k + 2) * sizeof(double);
}

// The spec against the declared data and the limits, before the data arrive (fits and grids).
absl::Status PlanMkSpec(MkSpecPlan* plan, const v1::DataShape& shape, const ServiceLimits& limits,
                        absl::string_view field) {
  const mk::MkSpec& spec = plan->spec;
  EMFIT_RETURN_IF_ERROR(CheckStates(spec.state_names.size(), limits, "spec.mk.state_names"));
  EMFIT_RETURN_IF_ERROR(CheckMkShape(shape, spec.k(), limits, "header.shape"));
  if (absl::Status s = spec.mcem.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("spec.mk.", s.message()));
  }
  EMFIT_RETURN_IF_ERROR(spec.Validate());
  EMFIT_RETURN_IF_ERROR(CheckModelSize(NumRates(spec), limits, field));
  plan->data = DataPlan(shape, limits);
  if (spec.estep == mk::EStepMethod::kMonteCarlo) {
    // The store of draws this fit reserves: what the client's max_sample_size needs, else
    // kDefaultSampleStoreBytes (the default max_sample_size is lowered to fit it, as it is to
    // fit the limit); never more than the limit.
    uint64_t store = kDefaultSampleStoreBytes;
    if (plan->max_sample_size_given) {
      const uint64_t characters =
          std::max<uint64_t>(1, shape.cols() / std::max<uint64_t>(1, spec.k()));
      const double wanted = static_cast<double>(BytesPerDraw(spec, MaxNodes(shape), characters)) *
                            static_cast<double>(spec.mcem.max_sample_size);
      store = wanted >= static_cast<double>(plan->data.max_sample_bytes)
                  ? plan->data.max_sample_bytes
                  : static_cast<uint64_t>(wanted);
    }
    plan->data.max_sample_bytes = std::min(plan->data.max_sample_bytes, store);
  }
  return absl::OkStatus();
}

// The parsed tree (labels, parents, lengths, children) and the pruning tables of one pass for
// `columns` = k x characters (core/src/mk/pruning.cc: the tips' table and its copy, the
// upward partials and messages, the outside pass's two tables, the node posteriors, the
// suffix products of polytomies: eight at most), and the branches' transition matrices.
uint64_t TreeBytes(const v1::DataShape& shape, uint64_t k) {
  const uint64_t nodes = MaxNodes(shape), columns = std::max<uint64_t>(shape.cols(), k);
  return shape.newick_bytes() + nodes * 96 + nodes * columns * kDouble * 8 +
         nodes * k * k * kDouble * 2;
}

// The tree and the tips of a request.
struct MkInput {
  mk::Tree tree;
  mk::MkTips tips;
};

absl::StatusOr<MkInput> ReadInput(const Upload& upload, const MkDataPlan& plan) {
  MkInput in;
  EMFIT_ASSIGN_OR_RETURN(in.tree, mk::ParseNewick(upload.newick));
  if (static_cast<uint64_t>(in.tree.num_tips) > plan.max_tips) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("chunk.newick: the tree has %d tips, at most %d are allowed (--max_tips)",
                        in.tree.num_tips, plan.max_tips));
  }
  in.tips.labels = upload.row_names;
  in.tips.likelihoods = upload.data.x;
  in.tips.allow_missing_tips = plan.allow_missing_tips;
  return in;
}

// Monte Carlo EM keeps every draw's node states and tallies (BytesPerDraw): the most draws
// per iteration must fit in the store the fit reserved. A default the client did not set is
// lowered to fit; a value it set is refused.
absl::Status FitSampleStore(const MkSpecPlan& plan, const MkInput& in, McemOptions* mcem) {
  const uint64_t characters = static_cast<uint64_t>(in.tips.likelihoods.cols()) /
                              static_cast<uint64_t>(std::max(1, plan.spec.k()));
  const uint64_t per_draw =
      BytesPerDraw(plan.spec, static_cast<uint64_t>(in.tree.num_nodes()), characters);
  const uint64_t fits = plan.data.max_sample_bytes / std::max<uint64_t>(1, per_draw);
  if (static_cast<uint64_t>(mcem->max_sample_size) <= fits) return absl::OkStatus();
  if (!plan.max_sample_size_given && fits >= static_cast<uint64_t>(mcem->initial_sample_size)) {
    mcem->max_sample_size = static_cast<int64_t>(fits);
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "spec.mk.mcem.max_sample_size: %d draws of the states of %d nodes x %d characters (with "
      "their tallies, %d bytes each) would take %d bytes; this fit may use %d (at most "
      "--max_values x 8 bytes), i.e. at most %d draws",
      mcem->max_sample_size, in.tree.num_nodes(), characters, per_draw,
      mcem->max_sample_size * per_draw, plan.data.max_sample_bytes, fits));
}

// Nodes [begin, end) of `tree`: labels, parents, branch lengths.
void NodesToProto(const mk::Tree& tree, int begin, int end, v1::MkTreeSummary* out) {
  out->set_num_tips(static_cast<uint32_t>(tree.num_tips));
  for (int v = begin; v < end; ++v) {
    out->add_node_labels(tree.labels[v]);
    out->add_parents(tree.parent[v]);
    out->add_branch_lengths(tree.length[v]);
  }
}

void ExpectationsToProto(const mk::MkPosteriors& post, v1::MkTreeSummary* out) {
  ToProto(post.transitions, out->mutable_expected_transitions());
  out->mutable_expected_times()->Assign(post.dwelling_times.data(),
                                        post.dwelling_times.data() + post.dwelling_times.size());
  out->set_log_likelihood(post.log_likelihood);
}

}  // namespace

absl::StatusOr<MkSpecPlan> FromProto(const v1::MkSpec& sent) {
  MkSpecPlan plan;
  mk::MkSpec& spec = plan.spec;
  spec.state_names.assign(sent.state_names().begin(), sent.state_names().end());
  EMFIT_ASSIGN_OR_RETURN(spec.rates, RateModelFromProto(sent.rate_model(), "spec.mk.rate_model"));
  if (sent.has_index()) {
    EMFIT_ASSIGN_OR_RETURN(spec.index, IndexFromProto(sent.index(), "spec.mk.index"));
  }
  EMFIT_ASSIGN_OR_RETURN(spec.root, RootFromProto(sent.root(), "spec.mk.root"));
  spec.root_probs =
      Eigen::Map<const Eigen::VectorXd>(sent.root_probs().data(), sent.root_probs_size());
  switch (sent.estep()) {
    case v1::E_STEP_METHOD_UNSPECIFIED:
    case v1::E_STEP_METHOD_EXACT:
      spec.estep = mk::EStepMethod::kExact;
      break;
    case v1::E_STEP_METHOD_MONTE_CARLO:
      spec.estep = mk::EStepMethod::kMonteCarlo;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("spec.mk.estep: unknown method %d", static_cast<int>(sent.estep())));
  }
  const v1::McemOptions& m = sent.mcem();
  McemOptions& mcem = spec.mcem;
  if (m.initial_sample_size() != 0) mcem.initial_sample_size = m.initial_sample_size();
  if (m.max_sample_size() != 0) mcem.max_sample_size = m.max_sample_size();
  plan.max_sample_size_given = m.max_sample_size() != 0;
  if (m.has_alpha()) mcem.alpha = m.alpha();
  if (m.has_beta()) mcem.beta = m.beta();
  if (m.has_gamma()) mcem.gamma = m.gamma();
  if (m.has_tol()) mcem.tol = m.tol();
  if (m.has_kappa()) mcem.kappa = m.kappa();
  if (m.has_guard()) mcem.guard = m.guard();
  if (m.has_ascent_stop()) mcem.ascent_stop = m.ascent_stop();
  spec.rao_blackwell = !m.plain_tallies();
  EMFIT_ASSIGN_OR_RETURN(spec.sampler, SamplerFromProto(m.sampler(), "spec.mk.mcem.sampler"));
  spec.q_min = sent.q_min();
  spec.q_max = sent.q_max();
  return plan;
}

void ToProto(const mk::MkParams& params, v1::MkModel* out) {
  out->mutable_state_names()->Assign(params.state_names.begin(), params.state_names.end());
  ToProto(params.q, out->mutable_q());
  ToProto(params.index.cast<double>(), out->mutable_index());
  out->set_root(RootToProto(params.root));
  out->mutable_root_probs()->Assign(params.root_probs.data(),
                                    params.root_probs.data() + params.root_probs.size());
}

absl::StatusOr<MkModelPlan> FromProto(const v1::MkModel& model, absl::string_view field) {
  MkModelPlan plan;
  mk::MkParams& p = plan.params;
  p.state_names.assign(model.state_names().begin(), model.state_names().end());
  EMFIT_ASSIGN_OR_RETURN(p.q, FromProto(model.q(), absl::StrCat(field, ".q")));
  EMFIT_ASSIGN_OR_RETURN(p.index, IndexFromProto(model.index(), absl::StrCat(field, ".index")));
  EMFIT_ASSIGN_OR_RETURN(p.root, RootFromProto(model.root(), absl::StrCat(field, ".root")));
  p.root_probs =
      Eigen::Map<const Eigen::VectorXd>(model.root_probs().data(), model.root_probs_size());
  EMFIT_RETURN_IF_ERROR(p.Validate(field));
  return plan;
}

absl::Status PlanSpec(MkSpecPlan* spec, const v1::ModelSpec&, const v1::Model* init,
                      const v1::DataShape& shape, const ServiceLimits& limits) {
  if (init != nullptr) {
    EMFIT_ASSIGN_OR_RETURN(MkModelPlan start, FromProto(init->mk(), "header.init.mk"));
    spec->spec.init_params = std::move(start.params);
  }
  return PlanMkSpec(spec, shape, limits, "spec.mk");
}

absl::Status PlanModel(MkModelPlan* model, const v1::DataShape& shape,
                       const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(
      CheckStates(model->params.state_names.size(), limits, "header.model.mk.state_names"));
  EMFIT_RETURN_IF_ERROR(CheckMkShape(shape, model->params.k(), limits, "header.shape"));
  model->data = DataPlan(shape, limits);
  return absl::OkStatus();
}

absl::Status PlanOptions(const MkSpecPlan& spec, const v1::FitOptions& sent,
                         const ServiceLimits& limits, FitOptions* options) {
  if (!sent.has_tol()) options->tol = 1e-10;
  if (!sent.has_max_iter()) options->max_iter = std::min(1000, limits.max_iter);
  if (spec.spec.estep == mk::EStepMethod::kMonteCarlo) {
    return CheckMcemOptions(*options, spec.spec.mcem);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::FitResult> FitJob(const MkSpecPlan& plan, Upload upload,
                                     const FitOptions& options, const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(MkInput in, ReadInput(upload, plan.data));
  upload = Upload();  // the tips are copied in `in`
  mk::MkSpec spec = plan.spec;
  if (spec.estep == mk::EStepMethod::kMonteCarlo) {
    EMFIT_RETURN_IF_ERROR(FitSampleStore(plan, in, &spec.mcem));
  }
  EMFIT_ASSIGN_OR_RETURN(mk::MkFitResult fit, mk::Fit(in.tree, in.tips, spec, options, controls));
  v1::FitResult out;
  ToProto(fit.params, out.mutable_model()->mutable_mk());
  ToProto(fit.summary, out.mutable_summary());
  v1::MkFitResult* mk = out.mutable_mk();
  v1::MkTreeSummary* tree = mk->mutable_tree();
  NodesToProto(in.tree, 0, in.tree.num_nodes(), tree);
  const size_t bytes = static_cast<size_t>(fit.posteriors.nodes.size()) * sizeof(double);
  if (bytes <= kMaxNodeProbabilityBytes) {
    ToProto(fit.posteriors.nodes, tree->mutable_node_probabilities());
  } else {
    ToProto(FitWarning{"node_probabilities_omitted",
                       absl::StrFormat("the node posteriors (%d bytes) are left out of the "
                                       "result; the Posterior call streams them",
                                       bytes),
                       fit.summary.best_restart, -1},
            out.mutable_summary()->add_warnings());
  }
  ExpectationsToProto(fit.posteriors, tree);
  const Eigen::VectorXd rates = fit.params.Rates();
  mk->mutable_rates()->Assign(rates.data(), rates.data() + rates.size());
  mk->mutable_rate_standard_errors()->Assign(
      fit.rate_standard_errors.data(),
      fit.rate_standard_errors.data() + fit.rate_standard_errors.size());
  return out;
}

IterationCost CostOfIteration(const MkSpecPlan& plan, const v1::DataShape& shape) {
  // Pruning: each node's k x characters values against a k x k matrix; Monte Carlo EM also
  // visits each draw's node states for every rate (the increments and the rates' covariance),
  // counted at the first iteration's sample size (the later ones grow as the ascent rule
  // needs, within the store the fit reserved and --max_job_seconds).
  const double k = plan.spec.k(), nodes = static_cast<double>(MaxNodes(shape));
  const double columns = std::max<double>(static_cast<double>(shape.cols()), k);
  IterationCost cost{nodes * columns * k,
                     absl::StrFormat("%.0f nodes x %.0f columns x k=%.0f", nodes, columns, k)};
  if (plan.spec.estep == mk::EStepMethod::kMonteCarlo) {
    const double draws = static_cast<double>(plan.spec.mcem.initial_sample_size);
    const double rates = static_cast<double>(NumRates(plan.spec));
    cost.values += draws * nodes * (columns / k) * (rates + 1);
    absl::StrAppend(&cost.what, absl::StrFormat(" + %.0f draws x %.0f nodes x (%.0f rates + 1)",
                                                draws, nodes, rates));
  }
  return cost;
}

uint64_t ResultBytes(const MkSpecPlan& plan, const v1::DataShape& shape,
                     const FitOptions& options) {
  const uint64_t k = static_cast<uint64_t>(plan.spec.k());
  const uint64_t max_iter = static_cast<uint64_t>(std::max(0, options.max_iter));
  // The model, its history and a summary per restart; the tree summary with the node
  // posteriors (at most kMaxNodeProbabilityBytes) and labels; twice, for the proto's copy.
  const uint64_t nodes = MaxNodes(shape);
  return 2 * (k * k * kDouble + (max_iter + 1) * kDouble * 4 + shape.newick_bytes() +
              nodes * 2 * kDouble +
              std::min<uint64_t>(kMaxNodeProbabilityBytes, nodes * shape.cols() * kDouble)) +
         static_cast<uint64_t>(std::max(1, options.n_init)) * 512;
}

uint64_t WorkingBytes(const MkSpecPlan& plan, const v1::DataShape& shape, const FitOptions& options,
                      int threads) {
  const uint64_t k = static_cast<uint64_t>(plan.spec.k());
  const uint64_t restarts =
      plan.spec.init_params.has_value() ? 1 : static_cast<uint64_t>(std::max(1, options.n_init));
  const uint64_t running =
      std::min<uint64_t>(restarts, static_cast<uint64_t>(std::max(1, threads)));
  // Each running restart prunes on its own tables; Monte Carlo EM also keeps the draws' node
  // states and tallies in a store of max_sample_bytes (PlanMkSpec, FitSampleStore).
  uint64_t per_restart = TreeBytes(shape, k);
  if (plan.spec.estep == mk::EStepMethod::kMonteCarlo) per_restart += plan.data.max_sample_bytes;
  // The tree as parsed once for the job, and each restart's kept history.
  const uint64_t max_iter = static_cast<uint64_t>(std::max(0, options.max_iter));
  return TreeBytes(shape, k) + running * per_restart +
         restarts * (2 * (max_iter + 1) * kDouble * 4 + k * k * kDouble * 2 + 512) +
         ResultBytes(plan, shape, options);
}

uint64_t WorkingBytes(const MkModelPlan& model, const v1::DataShape& shape, int) {
  // One pruning pass, and about 1 MiB of node posteriors per block, up to five queued or in
  // flight, each also as a message.
  return TreeBytes(shape, static_cast<uint64_t>(model.params.k())) + 2 * 6 * (uint64_t{1} << 20);
}

uint64_t WorkingBytes(const HistoriesPlan& plan, const v1::DataShape& shape, int threads) {
  // The Posterior's pruning, plus SIMMAP batches of about 1 MiB, four in flight and one being
  // written, each also as a message.
  return WorkingBytes(plan.model, shape, threads) + 2 * 5 * (uint64_t{1} << 20);
}

absl::Status PosteriorJob(const MkModelPlan& model, const Upload& upload,
                          const FitControls& controls, const PosteriorEmitter& emit) {
  EMFIT_ASSIGN_OR_RETURN(MkInput in, ReadInput(upload, model.data));
  EMFIT_ASSIGN_OR_RETURN(mk::MkPosteriors post,
                         mk::NodePosteriors(model.params, in.tree, in.tips, controls));
  const int nodes = in.tree.num_nodes();
  const int k = model.params.k();
  const int characters = static_cast<int>(post.nodes.cols()) / k;
  for (int begin = 0; begin < nodes;) {
    EMFIT_RETURN_IF_ERROR(CheckCancelled(controls));
    int end = begin;
    for (size_t bytes = 0; end < nodes && bytes < kMessageBytes; ++end) {
      bytes += post.nodes.cols() * sizeof(double) + in.tree.labels[end].size() + 24;
    }
    v1::PosteriorResponse r;
    r.set_first_row(static_cast<uint64_t>(begin));
    ToProto(post.nodes.middleRows(begin, end - begin), r.mutable_responsibilities());
    for (int v = begin; v < end; ++v) {
      for (int c = 0; c < characters; ++c) {
        Eigen::Index state = 0;
        post.nodes.row(v).segment(c * k, k).maxCoeff(&state);
        r.add_labels(static_cast<uint32_t>(state));
      }
    }
    NodesToProto(in.tree, begin, end, r.mutable_mk());
    if (end == nodes) {
      ExpectationsToProto(post, r.mutable_mk());
      for (const FitWarning& w : post.warnings) ToProto(w, r.mutable_mk()->add_warnings());
    }
    emit(std::move(r));
    begin = end;
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ScoreResponse> ScoreJob(const MkModelPlan& model, const Upload& upload,
                                           const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(MkInput in, ReadInput(upload, model.data));
  EMFIT_ASSIGN_OR_RETURN(mk::MkScore s, mk::Score(model.params, in.tree, in.tips, controls));
  const int64_t characters = in.tips.likelihoods.cols() / model.params.k();
  v1::ScoreResponse out;
  out.set_log_likelihood(s.log_likelihood);
  out.set_mean_log_likelihood(s.log_likelihood /
                              static_cast<double>(std::max<int64_t>(1, s.tips_used * characters)));
  out.set_bic(s.bic);
  out.set_aic(s.aic);
  out.set_num_free_parameters(static_cast<uint64_t>(s.num_free_parameters));
  out.set_rows(static_cast<uint64_t>(s.tips_used));
  for (const FitWarning& w : s.warnings) ToProto(w, out.add_warnings());
  return out;
}

absl::StatusOr<std::vector<MkSpecPlan>> SelectGrid(const MkSpecPlan& base,
                                                   const v1::SelectModelHeader& header,
                                                   const ServiceLimits& limits) {
  if (header.k_size() != 0 || header.covariance_types_size() != 0) {
    return absl::InvalidArgumentError(
        "header.k, header.covariance_types: an Mk grid is header.rate_models (k and covariance "
        "types belong to mixtures and hidden Markov models)");
  }
  if (header.rate_models_size() == 0) {
    return absl::InvalidArgumentError(
        "header.rate_models: give at least one rate model (e.g. ER, SYM, ARD)");
  }
  if (header.rate_models_size() > limits.max_candidates) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("header.rate_models: %d candidates exceed --max_candidates=%d",
                        header.rate_models_size(), limits.max_candidates));
  }
  std::vector<MkSpecPlan> out;
  for (int i = 0; i < header.rate_models_size(); ++i) {
    MkSpecPlan plan = base;
    EMFIT_ASSIGN_OR_RETURN(plan.spec.rates,
                           RateModelFromProto(static_cast<v1::RateModel>(header.rate_models(i)),
                                              absl::StrFormat("header.rate_models[%d]", i)));
    EMFIT_RETURN_IF_ERROR(PlanMkSpec(&plan, header.shape(), limits, "header.rate_models"));
    out.push_back(std::move(plan));
  }
  return out;
}

void Describe(const MkSpecPlan& spec, v1::Candidate* candidate) {
  candidate->set_k(static_cast<uint32_t>(spec.spec.k()));
  SpecToProto(spec.spec, candidate->mutable_spec()->mutable_mk());
}

absl::Status PlanDraws(const v1::SampleHistoriesHeader& header, const ServiceLimits& limits,
                       HistoriesPlan* plan) {
  if (header.shape().cols() != static_cast<uint32_t>(plan->model.params.k())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "header.shape.cols: stochastic maps are drawn for one character: k=%d columns, got %d",
        plan->model.params.k(), header.shape().cols()));
  }
  if (header.n() == 0) {
    return absl::InvalidArgumentError("header.n: draw at least one history");
  }
  if (header.n() > limits.max_histories) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("header.n: at most %d histories per call (--max_histories), got %d",
                        limits.max_histories, header.n()));
  }
  plan->n = header.n();
  plan->seed = header.seed();
  EMFIT_ASSIGN_OR_RETURN(plan->sampler, SamplerFromProto(header.sampler(), "header.sampler"));
  return absl::OkStatus();
}

absl::Status HistoriesJob(const HistoriesPlan& plan, const Upload& upload,
                          const FitControls& controls, const HistoriesEmitter& emit) {
  EMFIT_ASSIGN_OR_RETURN(MkInput in, ReadInput(upload, plan.model.data));
  const mk::MkParams& params = plan.model.params;
  mk::SimmapOptions options;
  options.sampler = plan.sampler;
  mk::MapSummary summary(in.tree.num_nodes(), params.k());
  v1::SampleHistoriesResponse batch;
  size_t bytes = 0;
  EMFIT_RETURN_IF_ERROR(mk::SampleHistories(
      params, in.tree, in.tips, plan.n, plan.seed, options, controls,
      [&](int64_t index, const mk::StochasticMap& map) -> absl::Status {
        EMFIT_ASSIGN_OR_RETURN(std::string line, mk::WriteSimmap(in.tree, map, params.state_names));
        summary.Add(map);
        if (batch.simmap_size() == 0) batch.set_first_history(static_cast<uint64_t>(index));
        bytes += line.size();
        batch.add_simmap(std::move(line));
        if (bytes >= kMessageBytes) {
          emit(std::move(batch));
          batch.Clear();
          bytes = 0;
        }
        return absl::OkStatus();
      }));
  if (batch.simmap_size() > 0) emit(std::move(batch));
  v1::SampleHistoriesResponse last;
  last.set_first_history(static_cast<uint64_t>(plan.n));
  v1::HistoriesSummary* s = last.mutable_summary();
  s->set_count(static_cast<uint64_t>(summary.count()));
  ToProto(summary.MeanTransitions(), s->mutable_mean_transitions());
  const Eigen::VectorXd times = summary.MeanDwellingTimes();
  s->mutable_mean_times()->Assign(times.data(), times.data() + times.size());
  ToProto(summary.NodeFrequencies(), s->mutable_node_frequencies());
  s->mutable_node_labels()->Assign(in.tree.labels.begin(), in.tree.labels.end());
  s->set_num_tips(static_cast<uint32_t>(in.tree.num_tips));
  emit(std::move(last));
  return absl::OkStatus();
}

}  // namespace emfit::server
