#ifndef EMFIT_SERVER_DATA_RECEIVER_H_
#define EMFIT_SERVER_DATA_RECEIVER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "admission.h"
#include "emfit/data/dataset.h"
#include "emfit/v1/emfit.pb.h"
#include "service_limits.h"

namespace emfit::server {

// Everything a request streamed: the table (values, row weights, sequence offsets, column
// names) and, for Mk models, the tree's Newick text and the rows' names (tip labels).
struct Upload {
  Dataset data;
  std::string newick;
  std::vector<std::string> row_names;
};

// A request's data between the end of the upload and the job that uses it, shared by the
// reactor and the queued job, with the budget it holds (its data and the job's working
// memory). If the call ends first (cancel, deadline, disconnect), Drop() frees the data and its
// budget at once instead of when a worker reaches the dead job. Thread-safe.
class PendingData {
 public:
  PendingData(Upload data, Reservation reservation)
      : reserved_bytes_(reservation.bytes()),
        data_(std::move(data)),
        reservation_(std::move(reservation)) {}
  // The job takes the data (nullopt if dropped); the budget stays held until this object dies,
  // i.e. until the job has finished with the data.
  std::optional<Upload> Take();
  void Drop();
  // The budget held: the data's and the job's working memory.
  uint64_t reserved_bytes() const { return reserved_bytes_; }

 private:
  const uint64_t reserved_bytes_;
  absl::Mutex mu_;
  std::optional<Upload> data_ ABSL_GUARDED_BY(mu_);
  bool taken_ ABSL_GUARDED_BY(mu_) = false;
  Reservation reservation_ ABSL_GUARDED_BY(mu_);
};

// A call's pending data as its reactor holds them: set by the callback that ends the upload
// (OnReadDone), dropped by OnCancel, which gRPC may run at the same time, and by OnDone. Data
// set after a Drop() are dropped at once. Thread-safe.
class PendingSlot {
 public:
  void Set(std::shared_ptr<PendingData> pending);
  // Frees the data and their budget unless a worker has taken them (PendingData::Drop).
  void Drop();

 private:
  absl::Mutex mu_;
  std::shared_ptr<PendingData> pending_ ABSL_GUARDED_BY(mu_);
  bool dropped_ ABSL_GUARDED_BY(mu_) = false;
};

// Receives what a header declared, chunk by chunk: checks the shape against the limits and
// that the data and the job's working memory could fit in the in-flight budget, then reserves
// the budget as the data arrive (a little ahead, at most 1 MiB), so that data declared but not
// sent hold nothing; fills an Upload: the values (the weight column split off), the sequence
// lengths (as offsets), the Newick text and the row names, each stream continuing over the
// chunks. The table is allocated when the header arrives, but its pages are committed only as
// values are written into them. Not thread-safe (one call's reactor owns it).
class DataReceiver {
 public:
  // `slot`: the call's place in the admission, through which it reserves; outlives this.
  DataReceiver(const ServiceLimits* limits, Admission::Slot* slot) : limits_(limits), slot_(slot) {}
  DataReceiver(const DataReceiver&) = delete;
  DataReceiver& operator=(const DataReceiver&) = delete;

  // `working_bytes`: the job's working memory beyond the data (jobs.h), reserved by Finish.
  absl::Status Start(const v1::DataShape& shape, uint64_t working_bytes, absl::string_view field);
  absl::Status Append(const v1::DataChunk& chunk);
  // Checks that exactly the declared values arrived, reserves the job's working memory
  // (RESOURCE_EXHAUSTED, retry later, when the budget is full) and hands the data over with
  // their budget.
  absl::StatusOr<std::shared_ptr<PendingData>> Finish();

  bool started() const { return started_; }
  // Bytes the header declared (values, lengths, Newick text, row name slots).
  uint64_t declared_bytes() const { return declared_; }

 private:
  // Counts `bytes` more received, reserving budget for them (and a little ahead).
  absl::Status Account(uint64_t bytes, absl::string_view what);

  const ServiceLimits* const limits_;
  Admission::Slot* const slot_;
  bool started_ = false;
  bool weighted_ = false;
  Reservation reservation_;
  uint64_t declared_ = 0;  // bytes the header declared
  uint64_t used_ = 0;      // bytes received so far
  uint64_t working_bytes_ = 0;
  int64_t per_row_ = 0;   // values per streamed row (cols, + 1 with a weight column)
  int64_t expected_ = 0;  // rows * per_row_
  int64_t received_ = 0;
  uint64_t expected_sequences_ = 0;
  uint64_t expected_newick_ = 0;
  bool expect_row_names_ = false;
  Upload upload_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_DATA_RECEIVER_H_
