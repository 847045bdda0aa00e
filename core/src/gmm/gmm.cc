#include "emfit/gmm/gmm.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "emfit/base/status_macros.h"
#include "emfit/em/restarts.h"
#include "emfit/exec/cancellation.h"
#include "emfit/exec/thread_pool.h"
#include "exec/stripes.h"
#include "gmm/components.h"
#include "gmm/family.h"
#include "gmm/init.h"
#include "gmm/kernels.h"
#include "gmm/missing.h"
#include "math/rng.h"

namespace emfit::gmm {

const char* CovarianceTypeName(CovarianceType type) {
  switch (type) {
    case CovarianceType::kFull:
      return "full";
    case CovarianceType::kDiag:
      return "diag";
    case CovarianceType::kTied:
      return "tied";
    case CovarianceType::kSpherical:
      return "spherical";
  }
  return "unknown";
}

absl::StatusOr<CovarianceType> ParseCovarianceType(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "full") return CovarianceType::kFull;
  if (n == "diag") return CovarianceType::kDiag;
  if (n == "tied") return CovarianceType::kTied;
  if (n == "spherical") return CovarianceType::kSpherical;
  return absl::InvalidArgumentError(absl::StrFormat(
      "covariance_type: must be one of full, diag, tied, spherical; got '%s'", name));
}

const char* InitMethodName(InitMethod init) {
  switch (init) {
    case InitMethod::kKMeans:
      return "kmeans";
    case InitMethod::kKMeansPlusPlus:
      return "k-means++";
    case InitMethod::kRandomFromData:
      return "random_from_data";
    case InitMethod::kRandom:
      return "random";
  }
  return "unknown";
}

absl::Status GmmSpec::Validate(int64_t rows, int64_t cols) const {
  if (k < 1 || k > rows) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "spec.gmm.k: must be between 1 and the number of rows (%d), got %d", rows, k));
  }
  if (!std::isfinite(reg_covar) || reg_covar < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("spec.gmm.reg_covar: must be finite and >= 0, got %g", reg_covar));
  }
  if (cols < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("data: must have at least 1 column, got %d", cols));
  }
  if (!init_params.has_value()) {
    if (fix_weights || fix_means || fix_covariances) {
      return absl::InvalidArgumentError(
          "spec.gmm.fix_*: holding parameters fixed needs starting parameters (init)");
    }
    return absl::OkStatus();
  }
  EMFIT_RETURN_IF_ERROR(init_params->Validate("init.gmm"));
  if (init_params->k() != k || init_params->dim() != cols ||
      init_params->covariance_type != covariance_type) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "init.gmm: the starting model has k=%d, d=%d, covariance %s; the spec asks for k=%d, "
        "covariance %s on %d columns",
        init_params->k(), init_params->dim(), CovarianceTypeName(init_params->covariance_type), k,
        CovarianceTypeName(covariance_type), cols));
  }
  return absl::OkStatus();
}

Eigen::MatrixXd GmmParams::ComponentCovariance(int j) const {
  const int d = dim();
  switch (covariance_type) {
    case CovarianceType::kFull:
      return covariances.middleRows(static_cast<Eigen::Index>(j) * d, d);
    case CovarianceType::kTied:
      return covariances;
    case CovarianceType::kDiag:
      return covariances.row(j).transpose().asDiagonal();
    case CovarianceType::kSpherical:
      return Eigen::MatrixXd::Identity(d, d) * covariances(j, 0);
  }
  return {};
}

absl::Status GmmParams::Validate(absl::string_view what) const {
  const int kk = k();
  const int d = dim();
  if (kk < 1 || d < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.means: must be a k x d matrix with k, d >= 1, got %d x %d", what, kk, d));
  }
  if (weights.size() != kk) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.weights: expected k=%d values (one per row of means), got %d", what, kk,
                        weights.size()));
  }
  Eigen::Index want_rows = kk, want_cols = d;
  switch (covariance_type) {
    case CovarianceType::kFull:
      want_rows = static_cast<Eigen::Index>(kk) * d;
      break;
    case CovarianceType::kTied:
      want_rows = d;
      break;
    case CovarianceType::kDiag:
      break;
    case CovarianceType::kSpherical:
      want_cols = 1;
      break;
  }
  if (covariances.rows() != want_rows || covariances.cols() != want_cols) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.covariances: covariance_type %s with k=%d, d=%d needs a %d x %d matrix, got %d x %d",
        what, CovarianceTypeName(covariance_type), kk, d, want_rows, want_cols, covariances.rows(),
        covariances.cols()));
  }
  if (!weights.allFinite() || !means.allFinite() || !covariances.allFinite()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: weights, means and covariances must be finite", what));
  }
  if ((weights.array() < 0).any() || std::abs(weights.sum() - 1.0) > 1e-8) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.weights: must be >= 0 and sum to 1 (within 1e-8), sum is %.17g", what, weights.sum()));
  }
  if (covariance_type == CovarianceType::kFull || covariance_type == CovarianceType::kTied) {
    for (Eigen::Index j = 0; j * d < covariances.rows(); ++j) {
      const Eigen::MatrixXd c = covariances.middleRows(j * d, d);
      if ((c - c.transpose()).cwiseAbs().maxCoeff() > 1e-8 * (1.0 + c.cwiseAbs().maxCoeff())) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s.covariances: the covariance of component %d is not symmetric", what, j));
      }
    }
  }
  absl::StatusOr<internal::Components> c = internal::Factorize(*this, what);
  if (!c.ok()) return absl::InvalidArgumentError(c.status().message());
  return absl::OkStatus();
}

int64_t NumFreeParameters(CovarianceType type, int k, int d) {
  const int64_t kk = k, dd = d;
  int64_t cov = 0;
  switch (type) {
    case CovarianceType::kFull:
      cov = kk * dd * (dd + 1) / 2;
      break;
    case CovarianceType::kTied:
      cov = dd * (dd + 1) / 2;
      break;
    case CovarianceType::kDiag:
      cov = kk * dd;
      break;
    case CovarianceType::kSpherical:
      cov = kk;
      break;
  }
  return (kk - 1) + kk * dd + cov;
}

namespace {

// Removes rows with no observed value and sorts the rest by missingness pattern (stable), so
// that rows of a pattern are contiguous (algorithms.md §2, Implementation); rows with every
// value observed come last. Returns the number of rows removed, and each column's sum and
// count of observed values.
int64_t PrepareMissing(Dataset* data, Eigen::RowVectorXd* observed_sum,
                       Eigen::RowVectorXd* observed_count) {
  const Eigen::Index n = data->rows();
  const Eigen::Index d = data->cols();
  const int words = static_cast<int>((d + 63) / 64);
  std::vector<uint64_t> keys;
  internal::PatternKeys(data->x, &keys);
  const std::vector<Eigen::Index> order = internal::OrderByPattern(keys, words);
  // Rows with nothing observed have the smallest key, 0: they come first.
  Eigen::Index skipped = 0;
  while (skipped < n &&
         std::all_of(&keys[order[skipped] * words], &keys[order[skipped] * words] + words,
                     [](uint64_t word) { return word == 0; })) {
    ++skipped;
  }
  RowMatrix x(n - skipped, d);
  Eigen::VectorXd w(data->weights.size() == 0 ? 0 : n - skipped);
  observed_sum->setZero(d);
  observed_count->setZero(d);
  for (Eigen::Index r = 0; r < n - skipped; ++r) {
    const Eigen::Index from = order[skipped + r];
    x.row(r) = data->x.row(from);
    if (w.size() != 0) w[r] = data->weights[from];
    for (Eigen::Index j = 0; j < d; ++j) {
      const double v = x(r, j);
      if (std::isnan(v)) continue;
      (*observed_sum)[j] += v;
      (*observed_count)[j] += 1;
    }
  }
  data->x.swap(x);
  data->weights.swap(w);
  return skipped;
}

}  // namespace

absl::StatusOr<GmmFitResult> Fit(Dataset data, const GmmSpec& spec, const FitOptions& options,
                                 const FitControls& controls) {
  const absl::Time start = absl::Now();
  EMFIT_RETURN_IF_ERROR(options.Validate());
  EMFIT_RETURN_IF_ERROR(data.ValidateAllowingMissing());
  const bool missing = data.HasMissing();
  int64_t skipped = 0;
  Eigen::RowVectorXd observed_sum, observed_count;
  if (missing) {
    skipped = PrepareMissing(&data, &observed_sum, &observed_count);
    for (Eigen::Index j = 0; j < data.cols(); ++j) {
      if (observed_count[j] == 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "data: column %d has no observed value; its parameters are not identifiable", j + 1));
      }
    }
  }
  if (data.rows() < 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data: at least 2 rows with an observed value are needed, got %d", data.rows()));
  }
  EMFIT_RETURN_IF_ERROR(spec.Validate(data.rows(), data.cols()));
  if (!(data.TotalWeight() > 0)) {
    return absl::InvalidArgumentError("data.weights: the used rows have total weight 0");
  }

  // Centre once by the observed column means (algorithms.md §1.1, mitigation 1); the
  // log-likelihood is translation invariant and the means are shifted back on output.
  // One row-wise pass (the data are row-major).
  Eigen::RowVectorXd center;
  if (missing) {
    center = observed_sum.array() / observed_count.array();
  } else {
    center = data.x.colwise().mean();
  }
  data.x.rowwise() -= center;

  internal::GmmFamily family(data, spec, missing);
  // Initialisation never sees NaN: with missing values it runs on a copy where each missing
  // entry is its column's observed mean (0 after centring). EM itself is exact.
  std::optional<Dataset> imputed;
  if (missing && !spec.init_params.has_value()) {
    imputed = Dataset{data.x.array().isNaN().select(0.0, data.x), data.weights};
  }
  const Dataset& init_data = imputed.has_value() ? *imputed : data;
  const internal::GmmFamily init_family(init_data, spec, false);
  // All initialisations come first: EM then reads complete data in a layout they cannot.
  std::vector<absl::StatusOr<GmmParams>> starts = InitialiseRestarts<GmmParams>(
      spec.init_params.has_value() ? 1 : options.n_init, options, controls,
      [&](int, uint64_t seed) -> absl::StatusOr<GmmParams> {
        if (!spec.init_params.has_value()) {
          return internal::InitialParams(init_family, init_data, spec, seed, controls);
        }
        GmmParams p = *spec.init_params;
        p.means.rowwise() -= center;
        return p;
      });
  imputed.reset();
  if (!missing) {
    // Each block of rows rearranged feature-major in its own storage, so that the E-step's
    // kernels read it in place instead of transposing it every iteration (no extra memory;
    // docs/benchmarks.md). Only the fit's own copy of the data is touched.
    internal::BlocksToFeatureMajor(&data.x);
    family.UseFeatureMajorBlocks();
  }
  EMFIT_ASSIGN_OR_RETURN(FitOutcome<GmmParams> outcome,
                         RunRestarts(family, std::move(starts), options, controls));
  GmmFitResult result{std::move(outcome.params), std::move(outcome.summary)};
  result.params.means.rowwise() += center;
  FitSummary& sum = result.summary;
  sum.rows_used = data.rows();
  sum.rows_skipped = skipped;
  if (skipped > 0) {
    sum.warnings.push_back(
        {"rows_skipped",
         absl::StrFormat("%d rows with no observed value carry no information and were left out",
                         skipped)});
  }
  sum.elapsed_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

absl::StatusOr<Posteriors> ComputePosteriors(const GmmParams& params,
                                             const Eigen::Ref<const RowMatrix>& block,
                                             Eigen::Index first_row) {
  if (block.cols() != params.dim()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("data: the model has d=%d dimensions, the data have %d columns",
                        params.dim(), block.cols()));
  }
  EMFIT_ASSIGN_OR_RETURN(internal::Components c, internal::Factorize(params, "model.gmm"));
  Posteriors out;
  if (block.hasNaN()) {
    // Rows grouped by pattern, evaluated block by block, put back in their order.
    const internal::PatternLayout layout(block, /*group=*/true);
    internal::PatternCache cache(params, c);
    internal::MissingScratch scratch;
    Eigen::MatrixXd resp;
    Eigen::VectorXd row_ll;
    out.responsibilities.resize(block.rows(), params.k());
    out.log_likelihood.resize(block.rows());
    for (Eigen::Index b = 0; b < block.rows(); b += ::emfit::internal::kBlockRows) {
      const Eigen::Index* order = layout.order() + b;
      EMFIT_RETURN_IF_ERROR(internal::MissingRuns(params, c, block, order, layout.BlockRuns(b),
                                                  nullptr, params.means, &cache, &resp, &row_ll,
                                                  nullptr, &scratch));
      for (Eigen::Index p = 0; p < row_ll.size(); ++p) {
        out.responsibilities.row(order[p]) = resp.row(p);
        out.log_likelihood[order[p]] = row_ll[p];
      }
    }
  } else {
    internal::KernelScratch scratch;
    internal::Responsibilities(c, block, &out.responsibilities, &out.log_likelihood, &scratch);
  }
  out.labels.resize(block.rows());
  for (Eigen::Index i = 0; i < block.rows(); ++i) {
    EMFIT_RETURN_IF_ERROR(internal::CheckRowLogLikelihood(out.log_likelihood[i], first_row + i));
    out.responsibilities.row(i).maxCoeff(&out.labels[i]);
  }
  return out;
}

absl::StatusOr<ScoreResult> Score(const GmmParams& params, const Dataset& data,
                                  const FitControls& controls) {
  EMFIT_RETURN_IF_ERROR(params.Validate());
  EMFIT_RETURN_IF_ERROR(data.ValidateAllowingMissing());
  if (data.cols() != params.dim()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("data: the model has d=%d dimensions, the data have %d columns",
                        params.dim(), data.cols()));
  }
  EMFIT_ASSIGN_OR_RETURN(internal::Components c, internal::Factorize(params, "model.gmm"));
  const ::emfit::internal::Stripes stripes = ::emfit::internal::Stripes::OverRows(data.rows());
  // With missing values, the rows are visited grouped by pattern, so that each block holds a
  // few long runs and each pattern is factored once for all blocks.
  const std::unique_ptr<const internal::PatternLayout> layout =
      data.HasMissing() ? std::make_unique<const internal::PatternLayout>(data.x, /*group=*/true)
                        : nullptr;
  internal::PatternCache cache(params, c);
  struct Partial {
    double log_likelihood = 0, weight = 0;
    int64_t skipped = 0;
    Eigen::MatrixXd a;
    Eigen::VectorXd row_ll;
    internal::KernelScratch scratch;
    internal::MissingScratch missing;
  };
  std::vector<Partial> partial(stripes.count());
  EMFIT_RETURN_IF_ERROR(::emfit::internal::ForEachBlock(
      stripes, controls, [&](int s, int64_t b, int64_t end) -> absl::Status {
        Partial& p = partial[s];
        const int64_t rows = end - b;
        const Eigen::Index* order = layout == nullptr ? nullptr : layout->order() + b;
        auto add = [&](Eigen::Index q) -> absl::Status {
          const Eigen::Index row = order == nullptr ? b + q : order[q];
          EMFIT_RETURN_IF_ERROR(internal::CheckRowLogLikelihood(p.row_ll[q], row));
          const double w = data.weights.size() == 0 ? 1.0 : data.weights[row];
          p.log_likelihood += w * p.row_ll[q];
          p.weight += w;
          return absl::OkStatus();
        };
        if (layout == nullptr) {
          internal::Responsibilities(c, data.x.middleRows(b, rows), &p.a, &p.row_ll, &p.scratch);
          for (int64_t q = 0; q < rows; ++q) EMFIT_RETURN_IF_ERROR(add(q));
          return absl::OkStatus();
        }
        const absl::Span<const internal::PatternRun> runs = layout->BlockRuns(b);
        EMFIT_RETURN_IF_ERROR(internal::MissingRuns(params, c, data.x, order, runs, nullptr,
                                                    params.means, &cache, nullptr, &p.row_ll,
                                                    nullptr, &p.missing));
        for (const internal::PatternRun& run : runs) {
          if (run.pattern != nullptr &&
              std::none_of(run.pattern->begin(), run.pattern->end(), [](uint8_t o) { return o; })) {
            p.skipped += run.end - run.begin;  // nothing observed: no information, as in Fit
            continue;
          }
          for (Eigen::Index q = run.begin; q < run.end; ++q) EMFIT_RETURN_IF_ERROR(add(q));
        }
        return absl::OkStatus();
      }));
  ScoreResult out;
  double w = 0;
  for (const Partial& p : partial) {
    out.log_likelihood += p.log_likelihood;
    w += p.weight;
    out.rows_skipped += p.skipped;
  }
  out.rows_used = data.rows() - out.rows_skipped;
  out.mean_log_likelihood = w > 0 ? out.log_likelihood / w : 0.0;
  out.num_free_parameters = NumFreeParameters(params.covariance_type, params.k(), params.dim());
  out.bic = Bic(out.log_likelihood, out.num_free_parameters, w);
  out.aic = Aic(out.log_likelihood, out.num_free_parameters);
  return out;
}

}  // namespace emfit::gmm
