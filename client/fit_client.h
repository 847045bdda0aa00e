#ifndef EMFIT_CLIENT_FIT_CLIENT_H_
#define EMFIT_CLIENT_FIT_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "emfit/v1/emfit.grpc.pb.h"
#include "request_data.h"

namespace emfit::client {

struct CallOptions {
  // Values per DataChunk message (256 KiB of doubles by default).
  size_t chunk_values = 32768;
  // Deadline of the call; infinite by default.
  absl::Duration timeout = absl::InfiniteDuration();
  // If set, the call uses this context (not owned), so the caller can TryCancel() it from any
  // thread, e.g. from the event callback. A context serves one call only.
  grpc::ClientContext* context = nullptr;
};

// A client of emfit.v1.EmFitService: streams data in chunks, reports events, returns the
// result. One FitClient may serve many calls, from many threads. Each call blocks its caller
// until the call ends; the event callbacks run meanwhile on one of gRPC's threads, one event at
// a time and in order (the next event is read when the callback returns, so a slow callback
// slows the server down rather than piling events up). A callback should not block for long.
class FitClient {
 public:
  explicit FitClient(std::shared_ptr<grpc::Channel> channel);
  // A plaintext channel to `target` ("host:port") with connection.h's defaults (messages up
  // to 64 MiB, the retry policy). For TLS or a token, use Connect(ConnectionOptions).
  static std::shared_ptr<grpc::Channel> Connect(const std::string& target);

  using EventCallback = std::function<void(const v1::FitEvent&)>;

  // Sends `header` (its shape must match `data`: rows * cols values, row-major, and the other
  // streams as the shape declares them), then the data, and returns the result event. `on_event`
  // sees every event, the result included. Errors are the server's status (code and message) or the
  // transport's.
  absl::StatusOr<v1::FitResult> Fit(const v1::FitHeader& header, const RequestData& data,
                                    const EventCallback& on_event = nullptr,
                                    const CallOptions& options = {});

  // Posteriors of every row under `header.model`, delivered block by block in row order.
  absl::Status Posterior(const v1::PosteriorHeader& header, const RequestData& data,
                         const std::function<void(const v1::PosteriorResponse&)>& on_block,
                         const CallOptions& options = {});

  // Total log-likelihood, BIC and AIC of the data under `header.model`.
  absl::StatusOr<v1::ScoreResponse> Score(const v1::PosteriorHeader& header,
                                          const RequestData& data, const CallOptions& options = {});

  // Fits the grid the header describes; `on_event` sees every event.
  absl::StatusOr<v1::SelectionResult> SelectModel(
      const v1::SelectModelHeader& header, const RequestData& data,
      const std::function<void(const v1::SelectModelEvent&)>& on_event = nullptr,
      const CallOptions& options = {});

 private:
  std::unique_ptr<v1::EmFitService::Stub> stub_;
};

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_FIT_CLIENT_H_
