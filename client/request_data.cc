#include "request_data.h"

#include <algorithm>

namespace emfit::client {

void RequestData::DescribeIn(v1::DataShape* shape) const {
  shape->set_num_sequences(sequence_lengths.size());
  shape->set_newick_bytes(newick.size());
  shape->set_row_names(!row_names.empty());
}

ChunkCursor::ChunkCursor(const RequestData& data, size_t chunk_values)
    : data_(data), budget_(std::max<size_t>(1, chunk_values) * sizeof(double)) {}

bool ChunkCursor::done() const {
  return values_ == data_.values.size() && lengths_ == data_.sequence_lengths.size() &&
         newick_ == data_.newick.size() && names_ == data_.row_names.size();
}

void ChunkCursor::Next(v1::DataChunk* chunk) {
  chunk->Clear();
  size_t room = budget_;
  if (values_ < data_.values.size()) {
    const size_t n = std::min(room / sizeof(double), data_.values.size() - values_);
    chunk->mutable_values()->Assign(data_.values.begin() + values_,
                                    data_.values.begin() + values_ + n);
    values_ += n;
    room -= n * sizeof(double);
  }
  if (room > 0 && lengths_ < data_.sequence_lengths.size()) {
    const size_t n = std::min(std::max<size_t>(1, room / sizeof(uint64_t)),
                              data_.sequence_lengths.size() - lengths_);
    chunk->mutable_sequence_lengths()->Assign(data_.sequence_lengths.begin() + lengths_,
                                              data_.sequence_lengths.begin() + lengths_ + n);
    lengths_ += n;
    room -= std::min(room, n * sizeof(uint64_t));
  }
  if (room > 0 && newick_ < data_.newick.size()) {
    const size_t n = std::min(room, data_.newick.size() - newick_);
    chunk->set_newick(std::string(data_.newick.substr(newick_, n)));
    newick_ += n;
    room -= n;
  }
  // At least one name per chunk, however long, so that the stream always advances.
  while (names_ < data_.row_names.size() && (room > 0 || chunk->row_names_size() == 0)) {
    const std::string& name = data_.row_names[names_++];
    *chunk->add_row_names() = name;
    room -= std::min(room, name.size() + 2);
  }
}

}  // namespace emfit::client
