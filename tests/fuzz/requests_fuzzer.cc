// libFuzzer target: a request's header as the server plans it (server/jobs.h). The input's
// first byte picks the message (FitHeader, PosteriorHeader, SelectModelHeader,
// SampleHistoriesHeader), the rest is its protobuf encoding. Every header the planner accepts
// also gets its working-memory estimate; a fit or a model of a small table without a tree then
// runs on values made from the input (as the receiver would hand them over: finite or NaN,
// non-negative weights, whole sequences), with few iterations. Nothing may crash.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "jobs.h"
#include "service_limits.h"

namespace {

using namespace emfit;          // NOLINT: a fuzzer's brevity
using namespace emfit::server;  // NOLINT

ServiceLimits Limits() {
  ServiceLimits limits;
  limits.max_rows = 100000;
  limits.max_values = 1000000;
  limits.max_k = 50;
  limits.max_iter = 1000;
  limits.max_n_init = 10;
  limits.max_candidates = 16;
  limits.max_tips = 10000;
  limits.max_newick_bytes = 1 << 20;
  limits.max_histories = 100;
  return limits;
}

// The uploaded data of a small declared shape, from the input's bytes.
bool MakeUpload(const v1::DataShape& shape, const uint8_t* data, size_t size, Upload* upload) {
  if (shape.newick_bytes() > 0 || shape.row_names() || shape.rows() == 0 || shape.cols() == 0 ||
      shape.rows() * shape.cols() > 256) {
    return false;
  }
  const Eigen::Index n = static_cast<Eigen::Index>(shape.rows());
  const Eigen::Index d = static_cast<Eigen::Index>(shape.cols());
  upload->data.x.resize(n, d);
  size_t at = 0;
  auto next = [&]() -> uint8_t { return size == 0 ? 0 : data[at++ % size]; };
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < d; ++j) {
      const uint8_t b = next();
      upload->data.x(i, j) = b == 255 ? std::nan("") : static_cast<double>(b % 16) - 3.0;
    }
  }
  if (shape.weight_column()) {
    upload->data.weights.resize(n);
    for (Eigen::Index i = 0; i < n; ++i) upload->data.weights[i] = next() % 4;
  }
  const uint64_t sequences = shape.num_sequences();
  if (sequences > 0) {
    if (sequences > shape.rows()) return false;
    for (uint64_t s = 0; s <= sequences; ++s) {
      upload->data.sequence_offsets.push_back(static_cast<int64_t>(s * shape.rows() / sequences));
    }
  }
  upload->data.column_names.assign(shape.column_names().begin(), shape.column_names().end());
  if (!upload->data.column_names.empty() &&
      upload->data.column_names.size() != static_cast<size_t>(d)) {
    upload->data.column_names.clear();
  }
  return upload->data.ValidateAllowingMissing().ok();
}

}  // namespace

// Protobuf logs each string field of invalid UTF-8 it refuses: quiet, or the log drowns the
// fuzzer's.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const ServiceLimits limits = Limits();
  const uint8_t* body = data + 1;
  const int length = static_cast<int>(std::min<size_t>(size - 1, 1 << 20));
  FitControls controls;
  switch (data[0] % 4) {
    case 0: {
      v1::FitHeader header;
      if (!header.ParseFromArray(body, length)) return 0;
      absl::StatusOr<FitPlan> plan = PlanFit(header, limits);
      if (!plan.ok()) return 0;
      Upload upload;
      if (!MakeUpload(header.shape(), body, static_cast<size_t>(length), &upload)) return 0;
      plan->options.max_iter = std::min(plan->options.max_iter, 3);
      plan->options.n_init = std::min(plan->options.n_init, 2);
      (void)RunFit(*plan, std::move(upload), controls);
      return 0;
    }
    case 1: {
      v1::PosteriorHeader header;
      if (!header.ParseFromArray(body, length)) return 0;
      absl::StatusOr<ModelVariant> model = PlanModel(header, limits);
      if (!model.ok()) return 0;
      (void)ModelWorkingBytes(*model, header.shape(), 2);
      Upload upload;
      if (!MakeUpload(header.shape(), body, static_cast<size_t>(length), &upload)) return 0;
      (void)RunScore(*model, upload, controls);
      (void)RunPosterior(*model, upload, controls, [](v1::PosteriorResponse) {});
      return 0;
    }
    case 2: {
      v1::SelectModelHeader header;
      if (!header.ParseFromArray(body, length)) return 0;
      (void)PlanSelect(header, limits);
      return 0;
    }
    default: {
      v1::SampleHistoriesHeader header;
      if (!header.ParseFromArray(body, length)) return 0;
      (void)PlanHistories(header, limits);
      return 0;
    }
  }
}
