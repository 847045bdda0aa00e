// The ordered parallel reduction shared by every family: items (rows, or whole sequences) are
// cut into blocks, consecutive blocks are grouped into at most kMaxStripes stripes, each stripe
// is one parallel task that accumulates its own partial sums block by block, and the caller
// reduces the partials in stripe order. The cuts depend only on the data's shape and on the size
// of a partial, never on the number of threads, so results do not either.
#ifndef EMFIT_CORE_EXEC_STRIPES_H_
#define EMFIT_CORE_EXEC_STRIPES_H_

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "emfit/em/options.h"

namespace emfit::internal {

// Rows per block when the items are rows; steps per block (at least) when they are sequences.
inline constexpr int64_t kBlockRows = 512;
inline constexpr int kMaxStripes = 64;
// Bound on the memory of all partials together: large models get fewer stripes.
inline constexpr int64_t kMaxPartialValues = int64_t{1} << 25;  // 256 MiB of doubles

class Stripes {
 public:
  // Blocks of kBlockRows rows. `partial_values`: doubles in one stripe's partial sums.
  static Stripes OverRows(int64_t rows, int64_t partial_values = 0);
  // Blocks of whole sequences (`offsets`: S+1 increasing row offsets, sequence s is rows
  // [offsets[s], offsets[s+1])): consecutive sequences are grouped until a block holds at least
  // kBlockRows rows, and a sequence is never split. Stripes are balanced by rows.
  static Stripes OverSequences(absl::Span<const int64_t> offsets, int64_t partial_values = 0);

  int count() const { return static_cast<int>(stripe_block_.size()) - 1; }
  int64_t blocks() const { return static_cast<int64_t>(block_start_.size()) - 1; }
  // Items [BlockBegin(b), BlockEnd(b)) form block b (rows, or sequence indices).
  int64_t BlockBegin(int64_t b) const { return block_start_[b]; }
  int64_t BlockEnd(int64_t b) const { return block_start_[b + 1]; }
  // Blocks [FirstBlock(s), EndBlock(s)) form stripe s.
  int64_t FirstBlock(int s) const { return stripe_block_[s]; }
  int64_t EndBlock(int s) const { return stripe_block_[s + 1]; }
  // Items of stripe s.
  int64_t Begin(int s) const { return BlockBegin(FirstBlock(s)); }
  int64_t End(int s) const { return BlockBegin(EndBlock(s)); }

 private:
  std::vector<int64_t> block_start_{0};   // blocks + 1 item offsets
  std::vector<int64_t> stripe_block_{0};  // count + 1 block offsets
};

// Calls fn(stripe, begin, end) for the items [begin, end) of every block, the stripes in
// parallel on controls.pool (inline without one), the blocks of a stripe in order. Stops every
// stripe at the first error, which it returns; returns CANCELLED when controls.cancel fired
// (polled before each block). The caller then reduces its per-stripe partials in stripe order.
absl::Status ForEachBlock(
    const Stripes& stripes, const FitControls& controls,
    absl::FunctionRef<absl::Status(int stripe, int64_t begin, int64_t end)> fn);

}  // namespace emfit::internal

#endif  // EMFIT_CORE_EXEC_STRIPES_H_
