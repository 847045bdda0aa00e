#include "fit_client.h"

#include <algorithm>
#include <cstdint>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/functional/function_ref.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "connection.h"
#include "emfit/base/hand_off.h"
#include "request_data.h"

ABSL_FLAG(int, retries, emfit::client::kDefaultResends,
          "Re-sends of a call refused as busy (RESOURCE_EXHAUSTED with the server's retry hint: "
          "after the hint plus a jittered backoff) or lost in transit (UNAVAILABLE, a stream "
          "reset: after a jittered exponential backoff from 0.2 s); 0 to 10.");

namespace emfit::client {

int ResendsFromFlags() { return absl::GetFlag(FLAGS_retries); }

absl::Status CheckResends(int resends) {
  if (resends < 0 || resends > kMaxResends) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--retries: must be between 0 and %d, got %d", kMaxResends, resends));
  }
  return absl::OkStatus();
}

void CallCancel::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (attempt_ != nullptr) attempt_->TryCancel();
}

bool CallCancel::Attach(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  attempt_ = context;
  return true;
}

void CallCancel::Detach() {
  absl::MutexLock lock(&mu_);
  attempt_ = nullptr;
}

bool CallCancel::WaitUntilCancelled(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&cancelled_), deadline);
}

namespace {

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <class T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// How long to wait before sending again a call whose attempt `n` ended with `status` on
// `context` (FitClient, "Re-sends"), or nothing if it should not be sent again: a call lost in
// transit waits a jittered exponential backoff, a random time in [0, min(0.2 s x 2^(n-1), 5 s)];
// a call refused as busy (RESOURCE_EXHAUSTED with the server's retry hint, its
// grpc-retry-pushback-ms trailer, >= 0) waits the hint plus that backoff, so that clients
// refused together do not all come back together. A negative hint (a limit), a refusal without
// one, and any other answer are final.
std::optional<absl::Duration> ResendAfter(const absl::Status& status,
                                          const grpc::ClientContext& context, int n,
                                          absl::BitGen& jitter) {
  absl::Duration hint;
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    const auto& trailers = context.GetServerTrailingMetadata();
    const auto it = trailers.find("grpc-retry-pushback-ms");
    int64_t ms = -1;
    if (it == trailers.end() ||
        !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) || ms < 0) {
      return std::nullopt;
    }
    hint = absl::Milliseconds(ms);
  } else if (!LostInTransit(status)) {
    return std::nullopt;
  }
  const absl::Duration cap =
      std::min(absl::Milliseconds(200) * (int64_t{1} << std::min(n - 1, 10)), absl::Seconds(5));
  return hint + absl::Seconds(absl::Uniform(jitter, 0.0, absl::ToDoubleSeconds(cap)));
}

// Runs `attempt(context)` with a context (the caller's, or a new one per attempt) that carries
// the call's deadline, and runs it again while ResendAfter says so, `may_resend()` allows it,
// re-sends remain and the wait ends before the deadline.
template <class Result, class Attempt, class MayResend>
Result Resending(int resends, const CallOptions& options, Attempt&& attempt,
                 MayResend&& may_resend) {
  const absl::Time deadline = options.timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + options.timeout;
  absl::BitGen jitter;
  for (int n = 1;; ++n) {
    grpc::ClientContext own;
    grpc::ClientContext* context = options.context != nullptr ? options.context : &own;
    if (deadline != absl::InfiniteFuture()) context->set_deadline(absl::ToChronoTime(deadline));
    if (options.cancel != nullptr && !options.cancel->Attach(context)) {
      return Result(absl::CancelledError("the call was cancelled"));
    }
    Result result = attempt(context);
    if (options.cancel != nullptr) options.cancel->Detach();
    const absl::Status& status = StatusOf(result);
    if (status.ok() || n > resends || options.context != nullptr) return result;
    const std::optional<absl::Duration> wait = ResendAfter(status, *context, n, jitter);
    if (!wait.has_value() || !may_resend()) return result;
    const absl::Time wake = absl::Now() + *wait;
    if (wake >= deadline) return result;
    if (options.cancel != nullptr) {
      if (options.cancel->WaitUntilCancelled(wake)) return result;
    } else {
      absl::SleepFor(wake - absl::Now());
    }
    if (options.on_resend) options.on_resend(status, n + 1);
  }
}

// Writes the header request, then the data in chunks, then half-closes. A failed write
// means the server already ended the call; its status comes with Finish().
template <class Request, class Stream>
void Upload(Stream* stream, const Request& header, const RequestData& data, size_t chunk_values) {
  bool open = stream->Write(header);
  ChunkCursor cursor(data, chunk_values);
  Request request;
  while (open && !cursor.done()) {
    cursor.Next(request.mutable_chunk());
    open = stream->Write(request);
  }
  if (open) stream->WritesDone();
}

// A bidirectional call on gRPC's callback API: the upload (header, chunks, half-close) and the
// reading of events run as reactions on gRPC's threads, each starting the next operation, and
// the caller waits once, for the end of the call. The blocking API would wake the caller for
// every event: two context switches per message, most of a small fit's client-side cost.
// Each reaction hands off to OnDone as it returns (emfit/base/hand_off.h): gRPC may run OnDone
// on another thread after them, where ThreadSanitizer cannot see the order.
template <class Request, class Event>
class Exchange final : public grpc::ClientBidiReactor<Request, Event> {
 public:
  Exchange(const Request& header, const RequestData& data, size_t chunk_values,
           absl::FunctionRef<void(const Event&)> on_event)
      : request_(header), cursor_(data, chunk_values), on_event_(on_event) {}

  // `start(context, reactor)` binds this reactor to a new call (stub->async()->Method).
  template <class StartFn>
  absl::Status Run(StartFn&& start, grpc::ClientContext* context) {
    start(context, this);
    this->StartWrite(&request_);  // the header
    this->StartRead(&event_);
    this->StartCall();
    done_.WaitForNotification();
    return FromGrpc(status_);
  }

  void OnWriteDone(bool ok) override {
    const Reaction reaction(this);
    if (!ok) return;  // the server ended the call; its status comes with OnDone
    if (cursor_.done()) {
      this->StartWritesDone();
      return;
    }
    cursor_.Next(request_.mutable_chunk());
    this->StartWrite(&request_);
  }

  void OnReadDone(bool ok) override {
    const Reaction reaction(this);
    if (!ok) return;  // no more events
    on_event_(event_);
    this->StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    TakeOver(this);
    status_ = status;
    done_.Notify();  // last: the waiting caller may destroy this reactor at once
  }

 private:
  Request request_;  // the header, then each chunk in turn
  ChunkCursor cursor_;
  Event event_;
  const absl::FunctionRef<void(const Event&)> on_event_;
  grpc::Status status_;
  absl::Notification done_;
};

// Runs one Exchange on `context`.
template <class Request, class Event, class StartFn, class OnEvent>
absl::Status RunExchange(StartFn&& start, const Request& header, const RequestData& data,
                         const CallOptions& options, grpc::ClientContext* context,
                         OnEvent&& on_event) {
  Exchange<Request, Event> exchange(header, data, options.chunk_values, on_event);
  return exchange.Run(start, context);
}

// Runs one Exchange whose events end with the call's result: `result_of(event)` points to it
// in the event that carries it (null in the others). Every event also goes to `on_event`.
template <class Request, class Event, class Result, class StartFn, class OnEvent, class ResultOf>
absl::StatusOr<Result> RunForResult(StartFn&& start, const Request& request,
                                    const RequestData& data, const CallOptions& options,
                                    grpc::ClientContext* context, OnEvent&& on_event,
                                    ResultOf&& result_of, absl::string_view what) {
  std::optional<Result> result;
  absl::Status status =
      RunExchange<Request, Event>(start, request, data, options, context, [&](const Event& e) {
        on_event(e);
        if (const Result* r = result_of(e)) {
          result = *r;
        }
      });
  if (!status.ok()) return status;
  if (!result.has_value()) {
    return absl::InternalError(absl::StrCat("the server ended the call without ", what));
  }
  return *std::move(result);
}

}  // namespace

bool LostInTransit(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         (status.code() == absl::StatusCode::kInternal &&
          absl::StrContains(status.message(), "RST_STREAM"));
}

FitClient::FitClient(std::shared_ptr<grpc::Channel> channel)
    : FitClient(std::move(channel), ResendsFromFlags()) {}

FitClient::FitClient(std::shared_ptr<grpc::Channel> channel, int resends)
    : stub_(v1::EmFitService::NewStub(std::move(channel))), resends_(std::max(0, resends)) {}

std::shared_ptr<grpc::Channel> FitClient::Connect(const std::string& target) {
  ConnectionOptions options;
  options.target = target;
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   ChannelArgumentsFor(options));
}

absl::StatusOr<v1::FitResult> FitClient::Fit(const v1::FitHeader& header, const RequestData& data,
                                             const EventCallback& on_event,
                                             const CallOptions& options) {
  v1::FitRequest request;
  *request.mutable_header() = header;
  return Resending<absl::StatusOr<v1::FitResult>>(
      resends_, options,
      [&](grpc::ClientContext* context) {
        return RunForResult<v1::FitRequest, v1::FitEvent, v1::FitResult>(
            [&](grpc::ClientContext* c, auto* reactor) { stub_->async()->Fit(c, reactor); },
            request, data, options, context,
            [&](const v1::FitEvent& e) {
              if (on_event) on_event(e);
            },
            [](const v1::FitEvent& e) { return e.has_result() ? &e.result() : nullptr; },
            "a result");
      },
      [] { return true; });
}

absl::Status FitClient::Posterior(const v1::PosteriorHeader& header, const RequestData& data,
                                  const std::function<void(const v1::PosteriorResponse&)>& on_block,
                                  const CallOptions& options) {
  v1::PosteriorRequest request;
  *request.mutable_header() = header;
  bool delivered = false;  // blocks cannot be taken back: no re-send after the first
  return Resending<absl::Status>(
      resends_, options,
      [&](grpc::ClientContext* context) {
        return RunExchange<v1::PosteriorRequest, v1::PosteriorResponse>(
            [&](grpc::ClientContext* c, auto* reactor) { stub_->async()->Posterior(c, reactor); },
            request, data, options, context,
            [&](const v1::PosteriorResponse& r) {
              delivered = true;
              on_block(r);
            });
      },
      [&] { return !delivered; });
}

absl::StatusOr<v1::ScoreResponse> FitClient::Score(const v1::PosteriorHeader& header,
                                                   const RequestData& data,
                                                   const CallOptions& options) {
  v1::ScoreRequest request;
  *request.mutable_header() = header;
  return Resending<absl::StatusOr<v1::ScoreResponse>>(
      resends_, options,
      [&](grpc::ClientContext* context) -> absl::StatusOr<v1::ScoreResponse> {
        v1::ScoreResponse response;
        auto stream = stub_->Score(context, &response);
        Upload(stream.get(), request, data, options.chunk_values);
        absl::Status status = FromGrpc(stream->Finish());
        if (!status.ok()) return status;
        return response;
      },
      [] { return true; });
}

absl::StatusOr<v1::SelectionResult> FitClient::SelectModel(
    const v1::SelectModelHeader& header, const RequestData& data,
    const std::function<void(const v1::SelectModelEvent&)>& on_event, const CallOptions& options) {
  v1::SelectModelRequest request;
  *request.mutable_header() = header;
  return Resending<absl::StatusOr<v1::SelectionResult>>(
      resends_, options,
      [&](grpc::ClientContext* context) {
        return RunForResult<v1::SelectModelRequest, v1::SelectModelEvent, v1::SelectionResult>(
            [&](grpc::ClientContext* c, auto* reactor) { stub_->async()->SelectModel(c, reactor); },
            request, data, options, context,
            [&](const v1::SelectModelEvent& e) {
              if (on_event) on_event(e);
            },
            [](const v1::SelectModelEvent& e) { return e.has_result() ? &e.result() : nullptr; },
            "a result");
      },
      [] { return true; });
}

absl::StatusOr<v1::HistoriesSummary> FitClient::SampleHistories(
    const v1::SampleHistoriesHeader& header, const RequestData& data,
    const std::function<void(const v1::SampleHistoriesResponse&)>& on_batch,
    const CallOptions& options) {
  v1::SampleHistoriesRequest request;
  *request.mutable_header() = header;
  bool delivered = false;  // maps cannot be taken back: no re-send after the first batch
  return Resending<absl::StatusOr<v1::HistoriesSummary>>(
      resends_, options,
      [&](grpc::ClientContext* context) {
        return RunForResult<v1::SampleHistoriesRequest, v1::SampleHistoriesResponse,
                            v1::HistoriesSummary>(
            [&](grpc::ClientContext* c, auto* reactor) {
              stub_->async()->SampleHistories(c, reactor);
            },
            request, data, options, context,
            [&](const v1::SampleHistoriesResponse& r) {
              if (r.simmap_size() > 0) {
                delivered = true;
                if (on_batch) on_batch(r);
              }
            },
            [](const v1::SampleHistoriesResponse& r) {
              return r.has_summary() ? &r.summary() : nullptr;
            },
            "a summary");
      },
      [&] { return !delivered; });
}

}  // namespace emfit::client
