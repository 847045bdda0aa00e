#include "gmm/family.h"

#include <atomic>
#include <cmath>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "emfit/base/status_macros.h"
#include "emfit/exec/cancellation.h"
#include "emfit/exec/thread_pool.h"
#include "exec/stripes.h"
#include "gmm/components.h"

namespace emfit::gmm::internal {

using ::emfit::internal::kBlockRows;
using ::emfit::internal::RowStripes;

GmmFamily::Stats GmmFamily::NewStats() const {
  Stats s;
  const RowStripes stripes(data_.rows());
  s.stripes.resize(stripes.count);
  return s;
}

namespace {

// Checks cancellation and the deadline between row blocks.
absl::Status CheckControls(const FitControls& controls) {
  if (controls.cancel != nullptr && controls.cancel->IsCancelled()) {
    return absl::CancelledError("the fit was cancelled");
  }
  if (controls.deadline != absl::InfiniteFuture() && absl::Now() >= controls.deadline) {
    return absl::DeadlineExceededError("the deadline passed");
  }
  return absl::OkStatus();
}

// Runs `block_fn(begin, rows, stats, scratch)` over every block of every stripe on the pool,
// each stripe into its own partial, then reduces the partials in stripe order into `total`.
template <class BlockFn>
absl::Status ForEachBlock(const Dataset& data, CovarianceType type, int k,
                          const FitControls& controls, std::vector<GmmStats>* partials,
                          GmmStats* total, BlockFn&& block_fn) {
  const RowStripes stripes(data.rows());
  partials->resize(stripes.count);
  std::atomic<bool> stop{false};
  const int d = static_cast<int>(data.cols());
  ParallelFor(controls.pool, stripes.count, [&](int s) {
    GmmStats& part = (*partials)[s];
    part.Reset(type, k, d);
    RowMatrix scratch;
    for (int64_t b = stripes.Begin(s); b < stripes.End(s); b += kBlockRows) {
      if (stop.load(std::memory_order_relaxed)) return;
      if (!CheckControls(controls).ok()) {
        stop.store(true, std::memory_order_relaxed);
        return;
      }
      const int64_t rows = std::min<int64_t>(kBlockRows, stripes.End(s) - b);
      block_fn(b, rows, &part, &scratch);
    }
  });
  if (stop.load()) {
    EMFIT_RETURN_IF_ERROR(CheckControls(controls));
  }
  total->Reset(type, k, d);
  for (const GmmStats& part : *partials) total->Add(part);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> GmmFamily::EStep(const Params& params, const FitControls& controls,
                                        Stats* stats) const {
  absl::StatusOr<Components> comps = Factorize(params, "model");
  if (!comps.ok()) return comps.status();
  const Components& c = *comps;
  stats->shift = params.means;
  const bool weighted = data_.weights.size() != 0;
  absl::Status st = ForEachBlock(
      data_, spec_.covariance_type, c.k, controls, &stats->stripes, &stats->total,
      [&](int64_t begin, int64_t rows, GmmStats* part, RowMatrix* scratch) {
        const auto block = data_.x.middleRows(begin, rows);
        Eigen::MatrixXd resp;
        Eigen::VectorXd row_ll;
        LogJoint(c, block, &resp, scratch);
        NormalizeRows(&resp, &row_ll);
        if (weighted) {
          const auto w = data_.weights.segment(begin, rows);
          part->log_likelihood += w.dot(row_ll);
          AccumulateBlock(spec_.covariance_type, block, w, resp, stats->shift, part, scratch);
        } else {
          part->log_likelihood += row_ll.sum();
          AccumulateBlock(spec_.covariance_type, block, Eigen::VectorXd(), resp, stats->shift, part,
                          scratch);
        }
      });
  if (!st.ok()) return st;
  return stats->total.log_likelihood;
}

absl::Status GmmFamily::MStep(const Stats& stats, Params* params) const {
  internal::MStep(spec_.covariance_type, spec_.reg_covar, stats.total, stats.shift, params);
  // Factorising here reports a lost positive definiteness as a failed M-step, naming the
  // component, instead of letting the next E-step fail.
  absl::StatusOr<Components> c = Factorize(*params, "M-step");
  return c.ok() ? absl::OkStatus() : c.status();
}

absl::StatusOr<GmmParams> GmmFamily::ParamsFromResponsibilities(const Eigen::MatrixXd& shift,
                                                                const FitControls& controls,
                                                                RespFn resp_fn) const {
  Stats stats = NewStats();
  stats.shift = shift;
  const int k = static_cast<int>(shift.rows());
  const bool weighted = data_.weights.size() != 0;
  EMFIT_RETURN_IF_ERROR(
      ForEachBlock(data_, spec_.covariance_type, k, controls, &stats.stripes, &stats.total,
                   [&](int64_t begin, int64_t rows, GmmStats* part, RowMatrix* scratch) {
                     Eigen::MatrixXd resp(rows, k);
                     resp_fn(begin, rows, &resp);
                     const auto block = data_.x.middleRows(begin, rows);
                     AccumulateBlock(spec_.covariance_type, block,
                                     weighted ? Eigen::VectorXd(data_.weights.segment(begin, rows))
                                              : Eigen::VectorXd(),
                                     resp, stats.shift, part, scratch);
                   }));
  GmmParams params;
  EMFIT_RETURN_IF_ERROR(MStep(stats, &params));
  return params;
}

}  // namespace emfit::gmm::internal
