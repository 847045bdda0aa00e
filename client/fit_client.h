#ifndef EMFIT_CLIENT_FIT_CLIENT_H_
#define EMFIT_CLIENT_FIT_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "emfit/v1/emfit.grpc.pb.h"
#include "request_data.h"

// The CLI's --retries: FitClient's `resends` unless told otherwise (ResendsFromFlags).
ABSL_DECLARE_FLAG(int, retries);

namespace emfit::client {

inline constexpr int kDefaultResends = 4;
inline constexpr int kMaxResends = 10;

// The --retries flag, and its check (INVALID_ARGUMENT naming it unless 0 to kMaxResends).
int ResendsFromFlags();
absl::Status CheckResends(int resends);

// Cancels a call, every attempt of it, from any thread (e.g. from its event callback): the
// attempt in progress is cancelled (its status is CANCELLED) and no other starts. One per call.
class CallCancel {
 public:
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);

  // Used by FitClient around each attempt: Attach returns false if the call was cancelled.
  bool Attach(grpc::ClientContext* context) ABSL_LOCKS_EXCLUDED(mu_);
  void Detach() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until `deadline` or a cancel, whichever comes first; true if cancelled.
  bool WaitUntilCancelled(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  grpc::ClientContext* attempt_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

struct CallOptions {
  // Values per DataChunk message (256 KiB of doubles by default).
  size_t chunk_values = 32768;
  // Deadline of the call, re-sends included; infinite by default.
  absl::Duration timeout = absl::InfiniteDuration();
  // If set, the call uses this context (not owned), e.g. to read its metadata afterwards or to
  // TryCancel() it. A context serves one call only, so a call with one is never re-sent.
  grpc::ClientContext* context = nullptr;
  // If set (not owned), cancels the call, re-sends included, when cancelled.
  CallCancel* cancel = nullptr;
  // Called before a call is sent again (FitClient, "Re-sends") with the status that ended the
  // previous attempt and the number of this attempt (2, 3, ...).
  std::function<void(const absl::Status&, int)> on_resend;
};

// A client of emfit.v1.EmFitService: streams data in chunks, reports events, returns the
// result. One FitClient may serve many calls, from many threads. Each call blocks its caller
// until the call ends; the event callbacks run meanwhile on one of gRPC's threads, one event at
// a time and in order (the next event is read when the callback returns, so a slow callback
// slows the server down rather than piling events up). A callback should not block for long.
//
// Re-sends. A call is sent again, whole, up to `resends` times, within the call's timeout, when
//  - the server refused it as busy: RESOURCE_EXHAUSTED with a retry hint >= 0 (the
//    grpc-retry-pushback-ms trailer of a full queue, a full in-flight budget, the client's
//    share of calls or bytes), after the hint plus a jittered backoff (below); a hint of -1 (a
//    limit that retrying cannot cure) is final;
//  - the connection lost it before its result arrived (UNAVAILABLE: the server died or shut
//    down, the connection broke; or INTERNAL for an HTTP/2 stream reset, which is how a proxy
//    such as nginx reports a replica that died mid-call), after a jittered exponential backoff:
//    a random wait in [0, min(0.2 s x 2^(n-1), 5 s)] before the n-th re-send.
// Any other answer is final. gRPC's own retries are off (connection.h): its retry policy repeats
// a call only until the first response message (a fit's accepted event comes at once), and
// gRPC 1.51 can drop, repeat or stall the messages of a client-streaming call it retries
// (docs/reliability.md, "Retried uploads"). Calls are stateless, so sending one again is safe:
// the events start over (from accepted), and the result is that of the last attempt. A
// Posterior call is sent again only if no block had arrived, a SampleHistories call only if no
// maps had; a call with the caller's own context (CallOptions::context) or a cancelled
// CallCancel is never re-sent (a cancel during the wait before a re-send ends the call at once).
class FitClient {
 public:
  // `resends` defaults to the --retries flag (ResendsFromFlags: kDefaultResends unless set).
  explicit FitClient(std::shared_ptr<grpc::Channel> channel);
  FitClient(std::shared_ptr<grpc::Channel> channel, int resends);
  // A plaintext channel to `target` ("host:port") with connection.h's defaults (messages up
  // to 64 MiB, gRPC's retries off). For TLS or a token, use Connect(ConnectionOptions).
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

  // Stochastic character maps of an Mk model (header.model): `on_batch` sees each message of
  // SIMMAP lines in order; the summary that ends the stream is returned.
  absl::StatusOr<v1::HistoriesSummary> SampleHistories(
      const v1::SampleHistoriesHeader& header, const RequestData& data,
      const std::function<void(const v1::SampleHistoriesResponse&)>& on_batch,
      const CallOptions& options = {});

 private:
  std::unique_ptr<v1::EmFitService::Stub> stub_;
  const int resends_;
};

// Whether a call that ended with `status` was lost in transit rather than answered: UNAVAILABLE,
// or INTERNAL for an HTTP/2 stream reset (RST_STREAM).
bool LostInTransit(const absl::Status& status);

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_FIT_CLIENT_H_
