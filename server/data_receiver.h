#ifndef EMFIT_SERVER_DATA_RECEIVER_H_
#define EMFIT_SERVER_DATA_RECEIVER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "emfit/data/dataset.h"
#include "emfit/v1/emfit.pb.h"
#include "service_limits.h"

namespace emfit::server {

class FitService;

// Everything a request streamed: the table (values, row weights, sequence offsets, column
// names) and, for Mk models, the tree's Newick text and the rows' names (tip labels).
struct Upload {
  Dataset data;
  std::string newick;
  std::vector<std::string> row_names;
};

// Bytes of the server's in-flight budget (--max_inflight_bytes) held by one request's data;
// released when the last owner lets go. Movable, not copyable.
class BudgetReservation {
 public:
  BudgetReservation() = default;
  BudgetReservation(FitService* service, uint64_t bytes) : service_(service), bytes_(bytes) {}
  BudgetReservation(BudgetReservation&& other) noexcept { *this = std::move(other); }
  BudgetReservation& operator=(BudgetReservation&& other) noexcept;
  ~BudgetReservation() { Release(); }
  // Takes over `other`'s bytes (of the same service), released together.
  void Absorb(BudgetReservation other);
  void Release();

 private:
  FitService* service_ = nullptr;
  uint64_t bytes_ = 0;
};

// A request's data between the end of the upload and the job that uses it, shared by the
// reactor and the queued job. If the call ends first (cancel, deadline, disconnect), Drop()
// frees the data and its budget at once instead of when a worker reaches the dead job.
// Thread-safe.
class PendingData {
 public:
  PendingData(Upload data, BudgetReservation reservation)
      : data_(std::move(data)), reservation_(std::move(reservation)) {}
  // The job takes the data (nullopt if dropped); the budget stays held until this object dies,
  // i.e. until the job has finished with the data.
  std::optional<Upload> Take();
  void Drop();

 private:
  absl::Mutex mu_;
  std::optional<Upload> data_ ABSL_GUARDED_BY(mu_);
  bool taken_ ABSL_GUARDED_BY(mu_) = false;
  BudgetReservation reservation_ ABSL_GUARDED_BY(mu_);
};

// Receives what a header declared, chunk by chunk: checks the shape against the limits,
// reserves its bytes in the server's in-flight budget, and fills an Upload: the values (the
// weight column split off), the sequence lengths (as offsets), the Newick text and the row
// names, each stream continuing over the chunks. Not thread-safe (one call's reactor owns it).
class DataReceiver {
 public:
  explicit DataReceiver(FitService* service) : service_(service) {}
  DataReceiver(const DataReceiver&) = delete;
  DataReceiver& operator=(const DataReceiver&) = delete;

  absl::Status Start(const v1::DataShape& shape, absl::string_view field);
  absl::Status Append(const v1::DataChunk& chunk);
  // Checks that exactly the declared values arrived and hands the data over, with its budget.
  absl::StatusOr<std::shared_ptr<PendingData>> Finish();

  bool started() const { return started_; }

 private:
  FitService* const service_;
  bool started_ = false;
  bool weighted_ = false;
  BudgetReservation reservation_;
  int64_t per_row_ = 0;   // values per streamed row (cols, + 1 with a weight column)
  int64_t expected_ = 0;  // rows * per_row_
  int64_t received_ = 0;
  uint64_t expected_sequences_ = 0;
  uint64_t expected_newick_ = 0;
  bool expect_row_names_ = false;
  // Row names are reserved in the budget as they arrive, in steps of at least 1 MiB.
  uint64_t name_bytes_ = 0;
  uint64_t name_bytes_reserved_ = 0;
  std::vector<BudgetReservation> name_reservations_;
  Upload upload_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_DATA_RECEIVER_H_
