#include "fit_client.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace emfit::client {

FitClient::FitClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::EmFitService::NewStub(std::move(channel))) {}

std::shared_ptr<grpc::Channel> FitClient::Connect(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

absl::StatusOr<v1::FitResult> FitClient::Fit(const v1::FitHeader& header,
                                             absl::Span<const double> values,
                                             const EventCallback& on_event,
                                             const CallOptions& options) {
  grpc::ClientContext own_context;
  grpc::ClientContext* context = options.context != nullptr ? options.context : &own_context;
  if (options.timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  }
  auto stream = stub_->Fit(context);
  v1::FitRequest request;
  *request.mutable_header() = header;
  bool open = stream->Write(request);
  const size_t chunk = std::max<size_t>(1, options.chunk_values);
  for (size_t begin = 0; open && begin < values.size(); begin += chunk) {
    const size_t n = std::min(chunk, values.size() - begin);
    request.Clear();
    request.mutable_chunk()->mutable_values()->Assign(values.begin() + begin,
                                                      values.begin() + begin + n);
    open = stream->Write(request);
  }
  if (open) stream->WritesDone();  // a failed write means the server already ended the call
  v1::FitEvent event;
  std::optional<v1::FitResult> result;
  while (stream->Read(&event)) {
    if (on_event) on_event(event);
    if (event.has_result()) result = event.result();
  }
  const grpc::Status status = stream->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  if (!result.has_value()) {
    return absl::InternalError("the server ended the call without a result");
  }
  return *std::move(result);
}

}  // namespace emfit::client
