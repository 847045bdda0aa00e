#include "convert/common.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"

namespace emfit::server {

void ToProto(const Eigen::Ref<const Eigen::MatrixXd>& m, v1::Matrix* out) {
  out->set_rows(static_cast<uint32_t>(m.rows()));
  out->set_cols(static_cast<uint32_t>(m.cols()));
  auto* values = out->mutable_values();
  values->Clear();
  values->Reserve(static_cast<int>(m.size()));
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    for (Eigen::Index j = 0; j < m.cols(); ++j) values->AddAlreadyReserved(m(i, j));
  }
}

absl::StatusOr<Eigen::MatrixXd> FromProto(const v1::Matrix& m, absl::string_view field) {
  const uint64_t want = static_cast<uint64_t>(m.rows()) * m.cols();
  if (static_cast<uint64_t>(m.values_size()) != want) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: rows x cols = %d x %d needs %d values, got %d", field, m.rows(),
                        m.cols(), want, m.values_size()));
  }
  Eigen::MatrixXd out(m.rows(), m.cols());
  // Not row by row when there is no value: 4 billion rows of no column would each be visited
  // (found by the request_headers fuzz target, tests/fuzz/regressions/request_headers).
  if (want == 0) return out;
  for (uint32_t i = 0; i < m.rows(); ++i) {
    for (uint32_t j = 0; j < m.cols(); ++j) out(i, j) = m.values(i * m.cols() + j);
  }
  return out;
}

v1::CovarianceType ToProto(gmm::CovarianceType type) {
  switch (type) {
    case gmm::CovarianceType::kFull:
      return v1::COVARIANCE_TYPE_FULL;
    case gmm::CovarianceType::kDiag:
      return v1::COVARIANCE_TYPE_DIAG;
    case gmm::CovarianceType::kTied:
      return v1::COVARIANCE_TYPE_TIED;
    case gmm::CovarianceType::kSpherical:
      return v1::COVARIANCE_TYPE_SPHERICAL;
  }
  return v1::COVARIANCE_TYPE_UNSPECIFIED;
}

absl::StatusOr<gmm::CovarianceType> FromProto(v1::CovarianceType type, absl::string_view field) {
  switch (type) {
    case v1::COVARIANCE_TYPE_UNSPECIFIED:
    case v1::COVARIANCE_TYPE_FULL:
      return gmm::CovarianceType::kFull;
    case v1::COVARIANCE_TYPE_DIAG:
      return gmm::CovarianceType::kDiag;
    case v1::COVARIANCE_TYPE_TIED:
      return gmm::CovarianceType::kTied;
    case v1::COVARIANCE_TYPE_SPHERICAL:
      return gmm::CovarianceType::kSpherical;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: unknown covariance type %d", field, static_cast<int>(type)));
  }
}

absl::StatusOr<FitOptions> FromProto(const v1::FitOptions& options) {
  FitOptions out;
  switch (options.acceleration()) {
    case v1::ACCELERATION_UNSPECIFIED:
    case v1::ACCELERATION_NONE:
      out.acceleration = Acceleration::kNone;
      break;
    case v1::ACCELERATION_SQUAREM:
      out.acceleration = Acceleration::kSquarem;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrFormat("options.acceleration: unknown value %d",
                                                        static_cast<int>(options.acceleration())));
  }
  if (options.has_max_iter()) {
    out.max_iter = static_cast<int>(std::min<uint32_t>(options.max_iter(), 1u << 30));
  }
  if (options.has_tol()) out.tol = options.tol();
  out.n_init =
      options.n_init() == 0 ? 1 : static_cast<int>(std::min<uint32_t>(options.n_init(), 1u << 30));
  out.seed = options.seed();
  return out;
}

v1::TerminationReason ToProto(TerminationReason reason) {
  switch (reason) {
    case TerminationReason::kConverged:
      return v1::TERMINATION_REASON_CONVERGED;
    case TerminationReason::kMaxIter:
      return v1::TERMINATION_REASON_MAX_ITER;
    case TerminationReason::kCancelled:
      return v1::TERMINATION_REASON_CANCELLED;
    case TerminationReason::kDeadline:
      return v1::TERMINATION_REASON_DEADLINE;
    case TerminationReason::kNumericalFailure:
      return v1::TERMINATION_REASON_NUMERICAL_FAILURE;
  }
  return v1::TERMINATION_REASON_UNSPECIFIED;
}

void ToProto(const FitSummary& s, v1::FitSummary* out) {
  out->set_reason(ToProto(s.reason));
  out->set_message(s.message);
  out->set_converged(s.converged());
  out->set_iterations(static_cast<uint32_t>(s.iterations));
  out->set_log_likelihood(s.log_likelihood);
  out->set_mean_log_likelihood(s.mean_log_likelihood);
  out->mutable_history()->Assign(s.history.begin(), s.history.end());
  out->set_bic(s.bic);
  out->set_aic(s.aic);
  out->set_num_free_parameters(static_cast<uint64_t>(s.num_free_parameters));
  out->set_rows_used(static_cast<uint64_t>(s.rows_used));
  out->set_rows_skipped(static_cast<uint64_t>(s.rows_skipped));
  out->set_best_restart(static_cast<uint32_t>(s.best_restart));
  for (const RestartSummary& r : s.restarts) {
    v1::RestartSummary* o = out->add_restarts();
    o->set_restart(static_cast<uint32_t>(r.restart));
    o->set_seed(r.seed);
    o->set_iterations(static_cast<uint32_t>(r.iterations));
    o->set_log_likelihood(r.log_likelihood);
    o->set_converged(r.converged());
    o->set_reason(ToProto(r.reason));
    o->set_message(r.message);
    for (const FitWarning& w : r.warnings) ToProto(w, o->add_warnings());
  }
  out->set_elapsed_seconds(s.elapsed_seconds);
  for (const FitWarning& w : s.warnings) ToProto(w, out->add_warnings());
}

void ToProto(const IterationEvent& e, v1::Iteration* out) {
  out->set_restart(static_cast<uint32_t>(e.restart));
  out->set_iteration(static_cast<uint32_t>(e.iteration));
  out->set_log_likelihood(e.log_likelihood);
  out->set_elbo(e.elbo);
  out->set_change(e.change);
  out->set_elapsed_seconds(e.elapsed_seconds);
  out->set_accelerated(e.accelerated);
  out->set_kl(e.kl);
  if (e.sample_size > 0) {
    out->set_sample_size(static_cast<uint64_t>(e.sample_size));
    out->set_improvement(e.improvement);
    out->set_improvement_se(e.improvement_se);
    out->set_update_rejected(!e.update_accepted);
  }
}

void ToProto(const FitWarning& w, v1::Warning* out) {
  out->set_code(w.code);
  out->set_message(w.message);
  out->set_restart(static_cast<uint32_t>(w.restart));
  if (w.component >= 0) out->set_component(static_cast<uint32_t>(w.component));
}

}  // namespace emfit::server
