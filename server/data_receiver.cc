#include "data_receiver.h"

#include <cmath>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/str_format.h"
#include "fit_service.h"
#include "rejection.h"

namespace emfit::server {

BudgetReservation& BudgetReservation::operator=(BudgetReservation&& other) noexcept {
  if (this != &other) {
    Release();
    service_ = std::exchange(other.service_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void BudgetReservation::Release() {
  if (service_ != nullptr && bytes_ != 0) service_->ReleaseBytes(bytes_);
  service_ = nullptr;
  bytes_ = 0;
}

std::optional<Dataset> PendingData::Take() {
  absl::MutexLock lock(&mu_);
  if (!data_.has_value()) return std::nullopt;
  taken_ = true;
  std::optional<Dataset> out = std::move(data_);
  data_.reset();
  return out;
}

void PendingData::Drop() {
  absl::MutexLock lock(&mu_);
  if (taken_) return;  // the job is using the data; the budget goes when it is done
  data_.reset();
  reservation_.Release();
}

absl::Status DataReceiver::Start(const v1::DataShape& shape, absl::string_view field) {
  if (absl::Status s = CheckShape(shape, service_->limits(), field); !s.ok()) return s;
  weighted_ = shape.weight_column();
  per_row_ = static_cast<int64_t>(shape.cols()) + (weighted_ ? 1 : 0);
  expected_ = static_cast<int64_t>(shape.rows()) * per_row_;
  const uint64_t bytes = static_cast<uint64_t>(expected_) * sizeof(double);
  if (!service_->ReserveBytes(bytes)) {
    absl::Status refused = absl::ResourceExhaustedError(absl::StrFormat(
        "%s: %d bytes of data do not fit in the server's in-flight budget "
        "(--max_inflight_bytes=%d, %d in use)%s",
        field, bytes, service_->limits().max_inflight_bytes, service_->inflight_bytes(),
        bytes <= service_->limits().max_inflight_bytes ? "; retry later" : ""));
    // Busy only if the data would fit once other calls are done; else it is a limit.
    return bytes <= service_->limits().max_inflight_bytes
               ? MarkBusy(std::move(refused), RejectReason::kInflightBudget)
               : refused;
  }
  reservation_ = BudgetReservation(service_, bytes);
  try {
    data_.x.resize(static_cast<Eigen::Index>(shape.rows()), shape.cols());
    if (weighted_) data_.weights.resize(static_cast<Eigen::Index>(shape.rows()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrFormat("%s: the server is out of memory", field));
  }
  started_ = true;
  return absl::OkStatus();
}

absl::Status DataReceiver::Append(const v1::DataChunk& chunk) {
  const auto& values = chunk.values();
  if (values.size() > expected_ - received_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "chunk: more values than the header's shape declares (%d rows x %d values = %d)",
        data_.x.rows(), per_row_, expected_));
  }
  if (!weighted_) {
    std::memcpy(data_.x.data() + received_, values.data(), values.size() * sizeof(double));
    received_ += values.size();
    return absl::OkStatus();
  }
  const int64_t cols = per_row_ - 1;
  for (double v : values) {
    const int64_t row = received_ / per_row_;
    const int64_t col = received_ % per_row_;
    if (col == cols) {
      data_.weights[row] = v;
    } else {
      data_.x(row, col) = v;
    }
    ++received_;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<PendingData>> DataReceiver::Finish() {
  if (received_ != expected_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "chunk: the header's shape declares %d rows x %d values = %d values, received %d",
        data_.x.rows(), per_row_, expected_, received_));
  }
  return std::make_shared<PendingData>(std::move(data_), std::move(reservation_));
}

}  // namespace emfit::server
