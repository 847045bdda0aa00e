#include "data_receiver.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"

namespace emfit::server {

std::optional<Upload> PendingData::Take() {
  absl::MutexLock lock(&mu_);
  if (!data_.has_value()) return std::nullopt;
  taken_ = true;
  std::optional<Upload> out = std::move(data_);
  data_.reset();
  return out;
}

void PendingData::Drop() {
  absl::MutexLock lock(&mu_);
  if (taken_) return;  // the job is using the data; the budget goes when it is done
  data_.reset();
  reservation_.Release();
}

void PendingSlot::Set(std::shared_ptr<PendingData> pending) {
  bool dropped;
  {
    absl::MutexLock lock(&mu_);
    pending_ = pending;
    dropped = dropped_;
  }
  if (dropped && pending != nullptr) pending->Drop();
}

void PendingSlot::Drop() {
  std::shared_ptr<PendingData> pending;
  {
    absl::MutexLock lock(&mu_);
    dropped_ = true;
    pending = pending_;
  }
  if (pending != nullptr) pending->Drop();
}

namespace {

// How far ahead of the data received the budget is reserved: fewer, larger reservations.
constexpr uint64_t kReserveAhead = uint64_t{1} << 20;

}  // namespace

absl::Status DataReceiver::Start(const v1::DataShape& shape, uint64_t working_bytes,
                                 absl::string_view field) {
  if (absl::Status s = CheckShape(shape, *limits_, field); !s.ok()) return s;
  weighted_ = shape.weight_column();
  per_row_ = static_cast<int64_t>(shape.cols()) + (weighted_ ? 1 : 0);
  expected_ = static_cast<int64_t>(shape.rows()) * per_row_;
  expected_sequences_ = shape.num_sequences();
  expected_newick_ = shape.newick_bytes();
  expect_row_names_ = shape.row_names();
  // The names' texts (each at most --max_name_bytes) are counted as they arrive.
  declared_ = static_cast<uint64_t>(expected_) * sizeof(double) +
              (expected_sequences_ > 0 ? (expected_sequences_ + 1) * sizeof(int64_t) : 0) +
              expected_newick_ + (expect_row_names_ ? shape.rows() * sizeof(std::string) : 0);
  working_bytes_ = working_bytes;
  // A job that could not run even on an idle server is refused now (a limit, not busy).
  EMFIT_RETURN_IF_ERROR(slot_->CheckFits(
      declared_ + working_bytes_,
      absl::StrFormat("%d of data and %d of working memory", declared_, working_bytes_),
      std::string(field)));
  Dataset& data = upload_.data;
  try {
    data.x.resize(static_cast<Eigen::Index>(shape.rows()), shape.cols());
    if (weighted_) data.weights.resize(static_cast<Eigen::Index>(shape.rows()));
    data.column_names.assign(shape.column_names().begin(), shape.column_names().end());
    if (expected_sequences_ > 0) {
      data.sequence_offsets.reserve(expected_sequences_ + 1);
      data.sequence_offsets.push_back(0);
    }
    upload_.newick.reserve(expected_newick_);
    if (expect_row_names_) upload_.row_names.reserve(shape.rows());
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrFormat("%s: the server is out of memory", field));
  }
  started_ = true;
  return absl::OkStatus();
}

absl::Status DataReceiver::Account(uint64_t bytes, absl::string_view what) {
  used_ += bytes;
  if (used_ <= reservation_.bytes()) return absl::OkStatus();
  const uint64_t ahead = declared_ > used_ ? std::min(kReserveAhead, declared_ - used_) : 0;
  absl::StatusOr<Reservation> more =
      slot_->Reserve(used_ - reservation_.bytes() + ahead, std::string(what));
  if (!more.ok()) return more.status();
  reservation_.Absorb(*std::move(more));
  return absl::OkStatus();
}

absl::Status DataReceiver::Append(const v1::DataChunk& chunk) {
  Dataset& data = upload_.data;
  const auto& values = chunk.values();
  if (values.size() > expected_ - received_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "chunk: more values than the header's shape declares (%d rows x %d values = %d)",
        data.x.rows(), per_row_, expected_));
  }
  EMFIT_RETURN_IF_ERROR(Account(static_cast<uint64_t>(values.size()) * sizeof(double) +
                                    chunk.sequence_lengths_size() * sizeof(int64_t) +
                                    chunk.newick().size(),
                                "chunk"));
  if (chunk.sequence_lengths_size() > 0) {
    std::vector<int64_t>& offsets = data.sequence_offsets;
    // offsets holds 0 and then one end per sequence received (nothing when none is declared).
    const uint64_t received = offsets.empty() ? 0 : offsets.size() - 1;
    if (expected_sequences_ == 0 ||
        received + static_cast<uint64_t>(chunk.sequence_lengths_size()) > expected_sequences_) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "chunk.sequence_lengths: more lengths than the header's shape.num_sequences (%d)",
          expected_sequences_));
    }
    for (uint64_t length : chunk.sequence_lengths()) {
      if (length < 1 || length > static_cast<uint64_t>(data.x.rows() - offsets.back())) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "chunk.sequence_lengths: sequence %d has length %d; lengths must be >= 1 and add up "
            "to the %d rows",
            offsets.size(), length, data.x.rows()));
      }
      offsets.push_back(offsets.back() + static_cast<int64_t>(length));
    }
  }
  if (!chunk.newick().empty()) {
    if (upload_.newick.size() + chunk.newick().size() > expected_newick_) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "chunk.newick: more bytes than the header's shape.newick_bytes (%d)", expected_newick_));
    }
    upload_.newick += chunk.newick();
  }
  if (chunk.row_names_size() > 0) {
    if (!expect_row_names_ ||
        upload_.row_names.size() + chunk.row_names_size() > static_cast<size_t>(data.x.rows())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "chunk.row_names: more names than rows (%d), or the header's shape.row_names is not "
          "set",
          data.x.rows()));
    }
    for (const std::string& name : chunk.row_names()) {
      if (name.size() > limits_->max_name_bytes) {
        return absl::ResourceExhaustedError(absl::StrFormat(
            "chunk.row_names: the name of row %d has %d bytes, at most %d are allowed "
            "(--max_name_bytes)",
            upload_.row_names.size() + 1, name.size(), limits_->max_name_bytes));
      }
      EMFIT_RETURN_IF_ERROR(Account(name.size(), "chunk.row_names"));
      upload_.row_names.push_back(name);
    }
  }
  if (!weighted_) {
    // (memcpy from an empty chunk's null pointer is undefined, even for 0 bytes: UBSan)
    if (values.empty()) return absl::OkStatus();
    std::memcpy(data.x.data() + received_, values.data(), values.size() * sizeof(double));
    received_ += values.size();
    return absl::OkStatus();
  }
  const int64_t cols = per_row_ - 1;
  for (double v : values) {
    const int64_t row = received_ / per_row_;
    const int64_t col = received_ % per_row_;
    if (col == cols) {
      data.weights[row] = v;
    } else {
      data.x(row, col) = v;
    }
    ++received_;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<PendingData>> DataReceiver::Finish() {
  const Dataset& data = upload_.data;
  if (received_ != expected_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "chunk: the header's shape declares %d rows x %d values = %d values, received %d",
        data.x.rows(), per_row_, expected_, received_));
  }
  if (expected_sequences_ > 0 && (data.sequence_offsets.size() - 1 != expected_sequences_ ||
                                  data.sequence_offsets.back() != data.x.rows())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "chunk.sequence_lengths: the header declares %d sequences over %d rows; received %d "
        "lengths adding up to %d rows",
        expected_sequences_, data.x.rows(), data.sequence_offsets.size() - 1,
        data.sequence_offsets.back()));
  }
  if (upload_.newick.size() != expected_newick_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("chunk.newick: the header declares %d bytes of Newick, received %d",
                        expected_newick_, upload_.newick.size()));
  }
  if (expect_row_names_ && upload_.row_names.size() != static_cast<size_t>(data.x.rows())) {
    return absl::InvalidArgumentError(
        absl::StrFormat("chunk.row_names: the header declares a name for each of the %d rows, "
                        "received %d",
                        data.x.rows(), upload_.row_names.size()));
  }
  // The job's working memory joins the data's budget: released together when the job is done.
  absl::StatusOr<Reservation> working =
      slot_->Reserve(working_bytes_, "header: the job's working memory");
  if (!working.ok()) return working.status();
  reservation_.Absorb(*std::move(working));
  return std::make_shared<PendingData>(std::move(upload_), std::move(reservation_));
}

}  // namespace emfit::server
