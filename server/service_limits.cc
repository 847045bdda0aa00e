#include "service_limits.h"

#include <string>

#include "absl/strings/str_format.h"

namespace emfit::server {

absl::Status CheckShape(const v1::DataShape& shape, const ServiceLimits& limits,
                        absl::string_view field) {
  if (shape.rows() < 1 || shape.cols() < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: rows and cols must be >= 1, got rows=%d cols=%d", field, shape.rows(), shape.cols()));
  }
  if (shape.rows() > limits.max_rows) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s.rows: at most %d rows per request (--max_rows), got %d", field,
                        limits.max_rows, shape.rows()));
  }
  if (shape.cols() > limits.max_cols) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s.cols: at most %d columns per request (--max_cols), got %d", field,
                        limits.max_cols, shape.cols()));
  }
  const uint64_t per_row = shape.cols() + (shape.weight_column() ? 1 : 0);
  if (shape.rows() * per_row > limits.max_values) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: rows x values per row = %d exceeds %d values per request "
                        "(--max_values)",
                        field, shape.rows() * per_row, limits.max_values));
  }
  if (shape.num_sequences() > shape.rows()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.num_sequences: %d sequences cannot share %d rows (each needs at least one)", field,
        shape.num_sequences(), shape.rows()));
  }
  if (shape.num_sequences() > limits.max_sequences) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s.num_sequences: at most %d sequences per request (--max_sequences), "
                        "got %d",
                        field, limits.max_sequences, shape.num_sequences()));
  }
  if (shape.newick_bytes() > limits.max_newick_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s.newick_bytes: at most %d bytes of Newick per request "
                        "(--max_newick_bytes), got %d",
                        field, limits.max_newick_bytes, shape.newick_bytes()));
  }
  if (shape.column_names_size() != 0 &&
      static_cast<uint64_t>(shape.column_names_size()) != shape.cols()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.column_names: expected 0 or cols=%d names, got %d", field, shape.cols(),
                        shape.column_names_size()));
  }
  return absl::OkStatus();
}

absl::Status CheckOptions(const v1::FitOptions& options, const ServiceLimits& limits,
                          absl::string_view field) {
  if (options.has_max_iter() && options.max_iter() > static_cast<uint32_t>(limits.max_iter)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s.max_iter: at most %d (--max_iter_limit), got %d", field,
                        limits.max_iter, options.max_iter()));
  }
  if (options.n_init() > static_cast<uint32_t>(limits.max_n_init)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s.n_init: at most %d (--max_n_init), got %d", field, limits.max_n_init,
                        options.n_init()));
  }
  return absl::OkStatus();
}

absl::Status CheckK(uint32_t k, const ServiceLimits& limits, absl::string_view field) {
  if (k > static_cast<uint32_t>(limits.max_k)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: at most %d components or states (--max_k), got %d", field, limits.max_k, k));
  }
  return absl::OkStatus();
}

absl::Status CheckWork(uint64_t restarts, uint64_t max_iter, uint64_t candidates,
                       const IterationCost& cost, const ServiceLimits& limits,
                       absl::string_view field) {
  // In doubles: the product of large counts must not wrap.
  const double iterations = static_cast<double>(restarts) * static_cast<double>(max_iter) *
                            static_cast<double>(candidates);
  const std::string what = candidates > 1
                               ? absl::StrFormat("%d candidates x %d restarts x max_iter=%d",
                                                 candidates, restarts, max_iter)
                               : absl::StrFormat("n_init=%d x max_iter=%d", restarts, max_iter);
  if (iterations > static_cast<double>(limits.max_total_iter)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: %s = %.0f iterations exceed --max_total_iter=%d", field, what,
                        iterations, limits.max_total_iter));
  }
  const double work = iterations * cost.values;
  if (work > limits.max_work) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: %s on %s = %.3g value-iterations exceed --max_work=%.3g", field, what,
                        cost.what, work, limits.max_work));
  }
  return absl::OkStatus();
}

absl::Status CheckModelSize(int64_t free_parameters, const ServiceLimits& limits,
                            absl::string_view field) {
  if (free_parameters > limits.max_model_values) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: the model would have %d free parameters, at most %d are allowed "
                        "(--max_model_values)",
                        field, free_parameters, limits.max_model_values));
  }
  return absl::OkStatus();
}

}  // namespace emfit::server
