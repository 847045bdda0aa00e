#ifndef EMFIT_SERVER_UPLOAD_H_
#define EMFIT_SERVER_UPLOAD_H_

#include "absl/status/statusor.h"
#include "data_receiver.h"
#include "emfit/v1/emfit.pb.h"

namespace emfit::server {

// What a header declared: the shape of the data that follow, and the working memory of the job
// beyond its data (jobs.h).
struct Declared {
  v1::DataShape shape;
  uint64_t working_bytes = 0;
};

// Handles one message of a header-then-chunks request stream. The first message must carry a
// header: `on_header(request)` checks it and returns what it declared (absl::StatusOr<Declared>),
// which starts `receiver`; every later message must be a chunk.
template <class Request, class OnHeader>
absl::Status ConsumeUpload(const Request& request, DataReceiver* receiver, OnHeader&& on_header) {
  if (!receiver->started()) {
    if (!request.has_header()) {
      return absl::InvalidArgumentError(
          "request stream: the first message must be a header (the request's `header` field)");
    }
    absl::StatusOr<Declared> declared = on_header(request);
    if (!declared.ok()) return declared.status();
    return receiver->Start(declared->shape, declared->working_bytes, "header.shape");
  }
  if (!request.has_chunk()) {
    return absl::InvalidArgumentError(
        "request stream: after the header only data chunks (the `chunk` field) may follow");
  }
  return receiver->Append(request.chunk());
}

// On half-close: the data, or why the stream was incomplete.
inline absl::StatusOr<std::shared_ptr<PendingData>> FinishUpload(DataReceiver* receiver) {
  if (!receiver->started()) {
    return absl::InvalidArgumentError("request stream: closed before a header was sent");
  }
  return receiver->Finish();
}

}  // namespace emfit::server

#endif  // EMFIT_SERVER_UPLOAD_H_
