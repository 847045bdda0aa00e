#include "convert/gmm.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "convert/common.h"
#include "emfit/base/status_macros.h"

namespace emfit::server {
namespace {

void SpecToProto(const gmm::GmmSpec& spec, v1::GaussianMixtureSpec* out) {
  out->set_k(static_cast<uint32_t>(spec.k));
  out->set_covariance_type(ToProto(spec.covariance_type));
  out->set_reg_covar(spec.reg_covar);
  out->set_fix_weights(spec.fix_weights);
  out->set_fix_means(spec.fix_means);
  out->set_fix_covariances(spec.fix_covariances);
  switch (spec.init) {
    case gmm::InitMethod::kKMeans:
      out->set_init(v1::INIT_METHOD_KMEANS);
      break;
    case gmm::InitMethod::kKMeansPlusPlus:
      out->set_init(v1::INIT_METHOD_KMEANS_PLUS_PLUS);
      break;
    case gmm::InitMethod::kRandomFromData:
      out->set_init(v1::INIT_METHOD_RANDOM_FROM_DATA);
      break;
    case gmm::InitMethod::kRandom:
      out->set_init(v1::INIT_METHOD_RANDOM);
      break;
  }
}

// A mixture's data are a plain table: sequences, a tree and row names belong to other families.
absl::Status CheckTable(const v1::DataShape& shape) {
  if (shape.num_sequences() != 0 || shape.newick_bytes() != 0 || shape.row_names()) {
    return absl::InvalidArgumentError(
        "header.shape: a Gaussian mixture takes a table of rows; num_sequences, newick_bytes "
        "and row_names belong to hidden Markov and Mk models");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<gmm::GmmSpec> FromProto(const v1::GaussianMixtureSpec& spec) {
  gmm::GmmSpec out;
  out.k = static_cast<int>(std::min<uint32_t>(spec.k(), 1u << 30));
  EMFIT_ASSIGN_OR_RETURN(out.covariance_type,
                         FromProto(spec.covariance_type(), "spec.gmm.covariance_type"));
  if (spec.has_reg_covar()) out.reg_covar = spec.reg_covar();
  out.fix_weights = spec.fix_weights();
  out.fix_means = spec.fix_means();
  out.fix_covariances = spec.fix_covariances();
  switch (spec.init()) {
    case v1::INIT_METHOD_UNSPECIFIED:
    case v1::INIT_METHOD_KMEANS:
      out.init = gmm::InitMethod::kKMeans;
      break;
    case v1::INIT_METHOD_KMEANS_PLUS_PLUS:
      out.init = gmm::InitMethod::kKMeansPlusPlus;
      break;
    case v1::INIT_METHOD_RANDOM_FROM_DATA:
      out.init = gmm::InitMethod::kRandomFromData;
      break;
    case v1::INIT_METHOD_RANDOM:
      out.init = gmm::InitMethod::kRandom;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("spec.gmm.init: unknown method %d", static_cast<int>(spec.init())));
  }
  return out;
}

void ToProto(const gmm::GmmParams& params, v1::GaussianMixture* out) {
  out->set_covariance_type(ToProto(params.covariance_type));
  out->mutable_weights()->Assign(params.weights.data(),
                                 params.weights.data() + params.weights.size());
  ToProto(params.means, out->mutable_means());
  ToProto(params.covariances, out->mutable_covariances());
}

absl::StatusOr<gmm::GmmParams> FromProto(const v1::GaussianMixture& model,
                                         absl::string_view field) {
  gmm::GmmParams p;
  EMFIT_ASSIGN_OR_RETURN(p.covariance_type, FromProto(model.covariance_type(),
                                                      absl::StrCat(field, ".covariance_type")));
  p.weights = Eigen::Map<const Eigen::VectorXd>(model.weights().data(), model.weights_size());
  EMFIT_ASSIGN_OR_RETURN(p.means, FromProto(model.means(), absl::StrCat(field, ".means")));
  EMFIT_ASSIGN_OR_RETURN(p.covariances,
                         FromProto(model.covariances(), absl::StrCat(field, ".covariances")));
  EMFIT_RETURN_IF_ERROR(p.Validate(field));
  return p;
}

absl::Status PlanSpec(gmm::GmmSpec* spec, const v1::ModelSpec& sent, const v1::Model* init,
                      const v1::DataShape& shape, const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckTable(shape));
  // The value sent, not the clamped one, so that the message quotes the request.
  EMFIT_RETURN_IF_ERROR(CheckK(sent.gmm().k(), limits, "spec.gmm.k"));
  if (init != nullptr) {
    EMFIT_ASSIGN_OR_RETURN(spec->init_params, FromProto(init->gmm(), "header.init.gmm"));
  }
  // Core's checks of the spec and the starting model, before any data arrive.
  const auto rows = static_cast<int64_t>(shape.rows());
  const auto cols = static_cast<int64_t>(shape.cols());
  EMFIT_RETURN_IF_ERROR(spec->Validate(rows, cols));
  return CheckModelSize(
      gmm::NumFreeParameters(spec->covariance_type, spec->k, static_cast<int>(cols)), limits,
      "spec.gmm");
}

absl::Status PlanModel(gmm::GmmParams* model, const v1::DataShape& shape,
                       const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckTable(shape));
  EMFIT_RETURN_IF_ERROR(CheckK(static_cast<uint32_t>(model->k()), limits, "header.model.gmm"));
  if (static_cast<uint64_t>(model->dim()) != shape.cols()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "header.shape.cols: the model has d=%d dimensions, the data declare %d columns",
        model->dim(), shape.cols()));
  }
  return absl::OkStatus();
}

namespace {

// The E-step's layout, as in core/src/exec/stripes.h: blocks of 512 rows in at most 64 stripes,
// all stripes' partial sums together within 2^25 doubles.
constexpr uint64_t kBlockRows = 512;
constexpr uint64_t kMaxStripes = 64;
constexpr uint64_t kMaxPartialValues = uint64_t{1} << 25;
constexpr uint64_t kDouble = sizeof(double);

}  // namespace

uint64_t ParamValues(gmm::CovarianceType type, uint64_t k, uint64_t d) {
  switch (type) {
    case gmm::CovarianceType::kFull:
      return k + k * d + k * d * d;
    case gmm::CovarianceType::kTied:
      return k + k * d + d * d;
    case gmm::CovarianceType::kDiag:
      return k + 2 * k * d;
    case gmm::CovarianceType::kSpherical:
      return 2 * k + k * d;
  }
  return k + k * d + k * d * d;
}

uint64_t EStepBytes(gmm::CovarianceType type, uint64_t k, uint64_t d, uint64_t rows) {
  const bool scatter = type == gmm::CovarianceType::kFull || type == gmm::CovarianceType::kTied;
  const uint64_t partial = k * (d + 1) + (scatter ? k * d * d : d * d);
  const uint64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  const uint64_t stripes =
      std::max<uint64_t>(1, std::min({blocks, kMaxStripes, kMaxPartialValues / partial}));
  // Per stripe: responsibilities, row log-likelihoods, feature-major copies of the block (for
  // complete rows, observed and completed coordinates), a copy of the parameters.
  const uint64_t scratch = kBlockRows * (2 * k + 4 * d + 8) + 2 * ParamValues(type, k, d);
  return (stripes + 1) * (partial + scratch) * kDouble;
}

IterationCost CostOfIteration(const gmm::GmmSpec&, const v1::DataShape& shape) {
  return {static_cast<double>(shape.rows()) * static_cast<double>(shape.cols()),
          absl::StrFormat("%d rows x %d columns", shape.rows(), shape.cols())};
}

uint64_t ResultBytes(const gmm::GmmSpec& spec, const v1::DataShape& shape,
                     const FitOptions& options) {
  const uint64_t k = static_cast<uint64_t>(spec.k), d = shape.cols();
  const uint64_t max_iter = static_cast<uint64_t>(std::max(0, options.max_iter));
  // The model, its history, a summary per restart (and the copies of converting them).
  return 2 * (ParamValues(spec.covariance_type, k, d) + max_iter + 1) * kDouble +
         static_cast<uint64_t>(std::max(1, options.n_init)) * 512;
}

uint64_t WorkingBytes(const gmm::GmmSpec& spec, const v1::DataShape& shape,
                      const FitOptions& options, int threads) {
  const uint64_t k = static_cast<uint64_t>(spec.k), d = shape.cols(), n = shape.rows();
  const uint64_t restarts =
      spec.init_params.has_value() ? 1 : static_cast<uint64_t>(std::max(1, options.n_init));
  const uint64_t running =
      std::min<uint64_t>(restarts, static_cast<uint64_t>(std::max(1, threads)));
  const uint64_t max_iter = static_cast<uint64_t>(std::max(0, options.max_iter));
  const uint64_t params = ParamValues(spec.covariance_type, k, d) * kDouble;
  // Missing values (core/src/gmm/gmm.cc): the data re-laid by pattern next to the original,
  // then a copy with the gaps filled for the initialisation; each row's pattern key, order and
  // weight.
  const uint64_t layout = n * d * kDouble + n * (3 + (d + 63) / 64) * kDouble;
  // Each running restart: its initialisation (k-means++: five values per row) then its E-step,
  // and its current, previous and (SQUAREM) extrapolated parameters and their factors.
  const uint64_t per_restart =
      std::max(5 * n * kDouble, EStepBytes(spec.covariance_type, k, d, n)) + 8 * params;
  // Every restart: its starting point and result, and its history (a growing vector: up to
  // twice its length).
  const uint64_t per_restart_kept = 2 * params + 2 * (max_iter + 1) * kDouble + 512;
  return layout + running * per_restart + restarts * per_restart_kept +
         ResultBytes(spec, shape, options);
}

uint64_t WorkingBytes(const gmm::GmmParams& model, const v1::DataShape& shape, int) {
  const uint64_t k = static_cast<uint64_t>(model.k()), d = shape.cols(),
                 n = shape.rows();  // Score: the rows' pattern order and keys with missing values,
                                    // the stripes' scratch.
  const uint64_t score =
      n * (2 + (d + 63) / 64) * kDouble + EStepBytes(model.covariance_type, k, d, n);
  // Posterior: about 1 MiB of responsibilities per block, the block being computed, up to five
  // queued or in flight, each also as a message.
  const uint64_t posterior = 2 * 6 * (uint64_t{1} << 20);
  return std::max(score, posterior) + 2 * ParamValues(model.covariance_type, k, d) * kDouble;
}

absl::StatusOr<v1::FitResult> FitJob(const gmm::GmmSpec& spec, Upload upload,
                                     const FitOptions& options, const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(gmm::GmmFitResult fit,
                         gmm::Fit(std::move(upload.data), spec, options, controls));
  v1::FitResult out;
  ToProto(fit.params, out.mutable_model()->mutable_gmm());
  ToProto(fit.summary, out.mutable_summary());
  return out;
}

absl::Status PosteriorJob(const gmm::GmmParams& model, const Upload& upload,
                          const FitControls& controls, const PosteriorEmitter& emit) {
  const Dataset& data = upload.data;
  EMFIT_RETURN_IF_ERROR(data.ValidateAllowingMissing());
  // About 1 MiB of responsibilities per message, far below the 4 MiB default limit.
  const Eigen::Index block = std::max<Eigen::Index>(1, (1 << 17) / (model.k() + 2));
  for (Eigen::Index begin = 0; begin < data.rows(); begin += block) {
    EMFIT_RETURN_IF_ERROR(CheckCancelled(controls));
    const Eigen::Index rows = std::min(block, data.rows() - begin);
    EMFIT_ASSIGN_OR_RETURN(gmm::Posteriors post,
                           gmm::ComputePosteriors(model, data.x.middleRows(begin, rows), begin));
    v1::PosteriorResponse r;
    r.set_first_row(static_cast<uint64_t>(begin));
    ToProto(post.responsibilities, r.mutable_responsibilities());
    r.mutable_log_likelihood()->Assign(post.log_likelihood.data(),
                                       post.log_likelihood.data() + rows);
    for (Eigen::Index i = 0; i < rows; ++i) r.add_labels(post.labels[i]);
    emit(std::move(r));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ScoreResponse> ScoreJob(const gmm::GmmParams& model, const Upload& upload,
                                           const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(auto s, gmm::Score(model, upload.data, controls));
  return ScoreToProto(s);
}

absl::StatusOr<std::vector<gmm::GmmSpec>> SelectGrid(const gmm::GmmSpec& base,
                                                     const v1::SelectModelHeader& header,
                                                     const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckTable(header.shape()));
  if (header.k_size() == 0) {
    return absl::InvalidArgumentError("header.k: give at least one number of components");
  }
  if (base.fix_weights || base.fix_means || base.fix_covariances) {
    return absl::InvalidArgumentError(
        "header.gmm.fix_*: fixed parameters need a starting model; SelectModel has none");
  }
  std::vector<gmm::CovarianceType> types;
  for (int t : header.covariance_types()) {
    EMFIT_ASSIGN_OR_RETURN(gmm::CovarianceType type, FromProto(static_cast<v1::CovarianceType>(t),
                                                               "header.covariance_types"));
    types.push_back(type);
  }
  if (types.empty()) types.push_back(gmm::CovarianceType::kFull);
  const uint64_t grid = static_cast<uint64_t>(header.k_size()) * types.size();
  if (grid > static_cast<uint64_t>(limits.max_candidates)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "header: %d candidates (k values x covariance types) exceed --max_candidates=%d", grid,
        limits.max_candidates));
  }
  const auto rows = static_cast<int64_t>(header.shape().rows());
  const auto cols = static_cast<int64_t>(header.shape().cols());
  std::vector<gmm::GmmSpec> out;
  for (uint32_t k : header.k()) {
    EMFIT_RETURN_IF_ERROR(CheckK(k, limits, "header.k"));
    for (gmm::CovarianceType type : types) {
      gmm::GmmSpec spec = base;
      spec.k = static_cast<int>(k);
      spec.covariance_type = type;
      EMFIT_RETURN_IF_ERROR(CheckModelSize(
          gmm::NumFreeParameters(type, spec.k, static_cast<int>(cols)), limits, "header.k"));
      if (absl::Status s = spec.Validate(rows, cols); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("header.k: ", s.message()));
      }
      out.push_back(spec);
    }
  }
  return out;
}

void Describe(const gmm::GmmSpec& spec, v1::Candidate* candidate) {
  candidate->set_k(static_cast<uint32_t>(spec.k));
  candidate->set_covariance_type(ToProto(spec.covariance_type));
  SpecToProto(spec, candidate->mutable_spec()->mutable_gmm());
}

}  // namespace emfit::server
