#include "exec/stripes.h"

#include <algorithm>
#include <atomic>

#include "emfit/exec/thread_pool.h"

namespace emfit::internal {
namespace {

int StripeCount(int64_t blocks, int64_t partial_values) {
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(
             {blocks, kMaxStripes, kMaxPartialValues / std::max<int64_t>(1, partial_values)})));
}

}  // namespace

Stripes Stripes::OverRows(int64_t rows, int64_t partial_values) {
  Stripes s;
  const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  s.block_start_.resize(blocks + 1);
  for (int64_t b = 0; b <= blocks; ++b) s.block_start_[b] = std::min(rows, b * kBlockRows);
  const int count = StripeCount(blocks, partial_values);
  s.stripe_block_.resize(count + 1);
  for (int i = 0; i <= count; ++i) s.stripe_block_[i] = blocks * i / count;
  return s;
}

Stripes Stripes::OverSequences(absl::Span<const int64_t> offsets, int64_t partial_values) {
  Stripes s;
  if (offsets.size() < 2) return s;
  std::vector<int64_t> block_rows{offsets[0]};  // first row of each block, then the end
  for (size_t q = 1; q < offsets.size(); ++q) {
    if (offsets[q] - block_rows.back() >= kBlockRows || q + 1 == offsets.size()) {
      s.block_start_.push_back(static_cast<int64_t>(q));
      block_rows.push_back(offsets[q]);
    }
  }
  const int64_t blocks = s.blocks();
  const int count = StripeCount(blocks, partial_values);
  const int64_t first = offsets.front(), total = offsets.back() - offsets.front();
  // Stripe i starts at the first block that starts at or after row total * i / count; stripes
  // left empty by a long block are dropped.
  int64_t b = 0;
  for (int i = 1; i < count; ++i) {
    const int64_t target = first + total * i / count;
    while (b < blocks && block_rows[b] < target) ++b;
    if (b > s.stripe_block_.back() && b < blocks) s.stripe_block_.push_back(b);
  }
  s.stripe_block_.push_back(blocks);
  return s;
}

absl::Status ForEachBlock(const Stripes& stripes, const FitControls& controls,
                          absl::FunctionRef<absl::Status(int, int64_t, int64_t)> fn) {
  std::atomic<bool> stop{false};
  std::vector<absl::Status> errors(stripes.count());
  ParallelFor(controls.pool, stripes.count(), [&](int s) {
    for (int64_t b = stripes.FirstBlock(s); b < stripes.EndBlock(s); ++b) {
      if (stop.load(std::memory_order_relaxed)) return;
      errors[s] = CheckCancelled(controls);
      if (errors[s].ok()) errors[s] = fn(s, stripes.BlockBegin(b), stripes.BlockEnd(b));
      if (!errors[s].ok()) {
        stop.store(true, std::memory_order_relaxed);
        return;
      }
    }
  });
  // A cancellation first (it explains the others), then the first stripe's error.
  if (absl::Status cancelled = CheckCancelled(controls); !cancelled.ok()) return cancelled;
  for (absl::Status& e : errors) {
    if (!e.ok()) return std::move(e);
  }
  return absl::OkStatus();
}

}  // namespace emfit::internal
