#ifndef EMFIT_SERVER_DATA_RECEIVER_H_
#define EMFIT_SERVER_DATA_RECEIVER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "emfit/data/dataset.h"
#include "emfit/v1/emfit.pb.h"
#include "service_limits.h"

namespace emfit::server {

class FitService;

// Receives the table a header declared, chunk by chunk: checks the shape against the limits,
// reserves its bytes in the server's in-flight budget (released on destruction), and fills a
// Dataset, splitting off the weight column. Not thread-safe (one call's reactor owns it).
class DataReceiver {
 public:
  explicit DataReceiver(FitService* service) : service_(service) {}
  ~DataReceiver();
  DataReceiver(const DataReceiver&) = delete;
  DataReceiver& operator=(const DataReceiver&) = delete;

  absl::Status Start(const v1::DataShape& shape, absl::string_view field);
  absl::Status Append(const v1::DataChunk& chunk);
  // Checks that exactly the declared values arrived and hands the data over.
  absl::StatusOr<Dataset> Finish();

  bool started() const { return started_; }

 private:
  FitService* const service_;
  bool started_ = false;
  bool weighted_ = false;
  uint64_t reserved_ = 0;
  int64_t per_row_ = 0;   // values per streamed row (cols, + 1 with a weight column)
  int64_t expected_ = 0;  // rows * per_row_
  int64_t received_ = 0;
  Dataset data_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_DATA_RECEIVER_H_
