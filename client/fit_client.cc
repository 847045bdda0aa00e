#include "fit_client.h"

#include <algorithm>
#include <optional>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "connection.h"
#include "request_data.h"

namespace emfit::client {
namespace {

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// Prepares `context` (the caller's or `own`) with the options' deadline.
grpc::ClientContext* Context(const CallOptions& options, grpc::ClientContext* own) {
  grpc::ClientContext* context = options.context != nullptr ? options.context : own;
  if (options.timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  }
  return context;
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
    if (!ok) return;  // the server ended the call; its status comes with OnDone
    if (cursor_.done()) {
      this->StartWritesDone();
      return;
    }
    cursor_.Next(request_.mutable_chunk());
    this->StartWrite(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // no more events
    on_event_(event_);
    this->StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
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

// Runs one Exchange with `options`' context and deadline.
template <class Request, class Event, class StartFn, class OnEvent>
absl::Status RunExchange(StartFn&& start, const Request& header, const RequestData& data,
                         const CallOptions& options, OnEvent&& on_event) {
  grpc::ClientContext own;
  Exchange<Request, Event> exchange(header, data, options.chunk_values, on_event);
  return exchange.Run(start, Context(options, &own));
}

}  // namespace

FitClient::FitClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::EmFitService::NewStub(std::move(channel))) {}

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
  std::optional<v1::FitResult> result;
  absl::Status status = RunExchange<v1::FitRequest, v1::FitEvent>(
      [&](grpc::ClientContext* c, auto* reactor) { stub_->async()->Fit(c, reactor); }, request,
      data, options,
      [&](const v1::FitEvent& e) {
        if (on_event) on_event(e);
        if (e.has_result()) result = e.result();
      });
  if (!status.ok()) return status;
  if (!result.has_value()) return absl::InternalError("the server ended the call without a result");
  return *std::move(result);
}

absl::Status FitClient::Posterior(const v1::PosteriorHeader& header, const RequestData& data,
                                  const std::function<void(const v1::PosteriorResponse&)>& on_block,
                                  const CallOptions& options) {
  v1::PosteriorRequest request;
  *request.mutable_header() = header;
  return RunExchange<v1::PosteriorRequest, v1::PosteriorResponse>(
      [&](grpc::ClientContext* c, auto* reactor) { stub_->async()->Posterior(c, reactor); },
      request, data, options, [&](const v1::PosteriorResponse& r) { on_block(r); });
}

absl::StatusOr<v1::ScoreResponse> FitClient::Score(const v1::PosteriorHeader& header,
                                                   const RequestData& data,
                                                   const CallOptions& options) {
  grpc::ClientContext own;
  v1::ScoreResponse response;
  auto stream = stub_->Score(Context(options, &own), &response);
  v1::ScoreRequest request;
  *request.mutable_header() = header;
  Upload(stream.get(), request, data, options.chunk_values);
  absl::Status status = FromGrpc(stream->Finish());
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::SelectionResult> FitClient::SelectModel(
    const v1::SelectModelHeader& header, const RequestData& data,
    const std::function<void(const v1::SelectModelEvent&)>& on_event, const CallOptions& options) {
  v1::SelectModelRequest request;
  *request.mutable_header() = header;
  std::optional<v1::SelectionResult> result;
  absl::Status status = RunExchange<v1::SelectModelRequest, v1::SelectModelEvent>(
      [&](grpc::ClientContext* c, auto* reactor) { stub_->async()->SelectModel(c, reactor); },
      request, data, options,
      [&](const v1::SelectModelEvent& e) {
        if (on_event) on_event(e);
        if (e.has_result()) result = e.result();
      });
  if (!status.ok()) return status;
  if (!result.has_value()) return absl::InternalError("the server ended the call without a result");
  return *std::move(result);
}

}  // namespace emfit::client
