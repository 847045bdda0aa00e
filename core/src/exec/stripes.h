#ifndef EMFIT_CORE_EXEC_STRIPES_H_
#define EMFIT_CORE_EXEC_STRIPES_H_

#include <algorithm>
#include <cstdint>

namespace emfit::internal {

// Rows are processed in blocks of kBlockRows; consecutive blocks are grouped into at most
// kMaxStripes stripes. Each stripe is one parallel task that accumulates its own partial sums
// in block order, and partials are reduced in stripe order. The grouping depends only on the
// number of rows and the size of a partial, so results do not depend on the number of threads.
inline constexpr int64_t kBlockRows = 512;
inline constexpr int kMaxStripes = 64;
// Bound on the memory of all partials together: large models get fewer stripes.
inline constexpr int64_t kMaxPartialValues = int64_t{1} << 25;  // 256 MiB of doubles

struct RowStripes {
  int64_t rows = 0;
  int64_t blocks = 0;
  int count = 0;

  // `partial_values`: doubles in one stripe's partial sums.
  explicit RowStripes(int64_t n_rows, int64_t partial_values = 0)
      : rows(n_rows),
        blocks((n_rows + kBlockRows - 1) / kBlockRows),
        count(static_cast<int>(std::max<int64_t>(
            1, std::min<int64_t>({blocks, kMaxStripes,
                                  kMaxPartialValues / std::max<int64_t>(1, partial_values)})))) {}

  int64_t Begin(int stripe) const { return std::min(rows, (blocks * stripe / count) * kBlockRows); }
  int64_t End(int stripe) const {
    return std::min(rows, (blocks * (stripe + 1) / count) * kBlockRows);
  }
};

}  // namespace emfit::internal

#endif  // EMFIT_CORE_EXEC_STRIPES_H_
