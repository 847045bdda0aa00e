#include "fit_job.h"

#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"
#include "emfit/gmm/gmm.h"

namespace emfit::server {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

absl::StatusOr<FitPlan> PlanFit(const v1::FitHeader& header, const ServiceLimits& limits) {
  FitPlan plan;
  const v1::DataShape& shape = header.shape();
  if (shape.rows() < 1 || shape.cols() < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("header.shape: rows and cols must be >= 1, got rows=%d cols=%d",
                        shape.rows(), shape.cols()));
  }
  if (shape.rows() > limits.max_rows) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("header.shape.rows: at most %d rows per request (--max_rows), got %d",
                        limits.max_rows, shape.rows()));
  }
  if (shape.cols() > limits.max_cols) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("header.shape.cols: at most %d columns per request (--max_cols), got %d",
                        limits.max_cols, shape.cols()));
  }
  if (shape.rows() * shape.cols() > limits.max_values) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "header.shape: rows x cols = %d exceeds %d values per request (--max_values)",
        shape.rows() * shape.cols(), limits.max_values));
  }
  if (shape.column_names_size() != 0 &&
      static_cast<uint64_t>(shape.column_names_size()) != shape.cols()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("header.shape.column_names: expected 0 or cols=%d names, got %d",
                        shape.cols(), shape.column_names_size()));
  }
  plan.rows = static_cast<int64_t>(shape.rows());
  plan.cols = static_cast<int64_t>(shape.cols());

  if (header.options().has_max_iter() &&
      header.options().max_iter() > static_cast<uint32_t>(limits.max_iter)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("header.options.max_iter: at most %d (--max_iter_limit), got %d",
                        limits.max_iter, header.options().max_iter()));
  }
  if (header.options().n_init() > static_cast<uint32_t>(limits.max_n_init)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("header.options.n_init: at most %d (--max_n_init), got %d",
                        limits.max_n_init, header.options().n_init()));
  }
  plan.options = FromProto(header.options());
  EMFIT_RETURN_IF_ERROR(plan.options.Validate());

  EMFIT_ASSIGN_OR_RETURN(plan.spec, FromProto(header.spec()));
  EMFIT_RETURN_IF_ERROR(
      std::visit(Overloaded{[&](const gmm::GmmSpec& s) -> absl::Status {
                   if (s.k > limits.max_k) {
                     return absl::ResourceExhaustedError(absl::StrFormat(
                         "spec.gmm.k: at most %d components (--max_k), got %d", limits.max_k, s.k));
                   }
                   return s.Validate(plan.rows, plan.cols);
                 }},
                 plan.spec));
  return plan;
}

absl::StatusOr<v1::FitResult> RunFit(const FitPlan& plan, Dataset data,
                                     const FitControls& controls) {
  return std::visit(Overloaded{[&](const gmm::GmmSpec& spec) -> absl::StatusOr<v1::FitResult> {
                      EMFIT_ASSIGN_OR_RETURN(
                          gmm::GmmFitResult fit,
                          gmm::Fit(std::move(data), spec, plan.options, controls));
                      v1::FitResult out;
                      ToProto(fit.params, out.mutable_model()->mutable_gmm());
                      ToProto(fit.summary, out.mutable_summary());
                      return out;
                    }},
                    plan.spec);
}

}  // namespace emfit::server
