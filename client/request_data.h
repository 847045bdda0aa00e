// What a request streams after its header, and how it is cut into DataChunk messages.
#ifndef EMFIT_CLIENT_REQUEST_DATA_H_
#define EMFIT_CLIENT_REQUEST_DATA_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "emfit/v1/emfit.pb.h"

namespace emfit::client {

// Views of the streams a request sends after its header (not owned; they must outlive the
// call): the values, row-major (with the weight column last when the shape says so), and where
// a family needs them the lengths of the sequences, the Newick text and the rows' names.
struct RequestData {
  RequestData() = default;
  RequestData(absl::Span<const double> v) : values(v) {}    // NOLINT: a table of values alone
  RequestData(const std::vector<double>& v) : values(v) {}  // NOLINT

  absl::Span<const double> values;
  absl::Span<const uint64_t> sequence_lengths;
  absl::string_view newick;
  absl::Span<const std::string> row_names;

  // Sets the sizes of the streams other than the values in `shape` (num_sequences,
  // newick_bytes, row_names).
  void DescribeIn(v1::DataShape* shape) const;
};

// Cuts RequestData into chunks of about `chunk_values` doubles' worth of bytes, each stream
// continuing where the previous chunk stopped (the streams share chunks).
class ChunkCursor {
 public:
  ChunkCursor(const RequestData& data, size_t chunk_values);
  bool done() const;
  // Fills `chunk` (cleared first) with the next piece of every stream that has data left.
  void Next(v1::DataChunk* chunk);

 private:
  RequestData data_;
  size_t budget_;  // bytes per chunk
  size_t values_ = 0, lengths_ = 0, newick_ = 0, names_ = 0;
};

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_REQUEST_DATA_H_
