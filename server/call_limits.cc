#include "call_limits.h"

#include <chrono>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace emfit::server {

CallLimits::CallLimits(const ServiceLimits& limits, Admission* admission, Timers* timers,
                       grpc::CallbackServerContext* context, std::shared_ptr<CallRecord> record)
    : limits_(limits), timers_(timers), record_(std::move(record)), start_(absl::Now()) {
  const auto deadline = context->deadline();
  client_deadline_ = deadline == std::chrono::system_clock::time_point::max()
                         ? absl::InfiniteFuture()
                         : absl::FromChrono(deadline);
  absl::StatusOr<std::unique_ptr<Admission::Slot>> slot = admission->Enter(record_->client());
  if (!slot.ok()) {
    admitted_ = slot.status();
    return;
  }
  slot_ = *std::move(slot);
  ArmUpload(start_ + limits_.upload_timeout, 0);
  if (client_deadline_ == absl::InfiniteFuture()) {
    default_deadline_ = Timer(
        timers_, start_ + limits_.default_deadline,
        [record = record_,
         message = absl::StrFormat("the call passed the server's deadline for calls that set none "
                                   "(--default_deadline=%s)",
                                   absl::FormatDuration(limits_.default_deadline))] {
          record->Abort(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, message));
        });
  }
}

void CallLimits::UploadDeclared(uint64_t bytes) {
  const double seconds =
      limits_.min_upload_rate > 0 ? static_cast<double>(bytes) / limits_.min_upload_rate : 0.0;
  ArmUpload(start_ + limits_.upload_timeout + absl::Seconds(seconds), bytes);
}

void CallLimits::UploadEnded() {
  uploading_->store(false);
  upload_timer_.Reset();
}

void CallLimits::ArmUpload(absl::Time deadline, uint64_t bytes) {
  const std::string message =
      bytes == 0
          ? absl::StrFormat("the request's header did not arrive within --upload_timeout=%s",
                            absl::FormatDuration(limits_.upload_timeout))
          : absl::StrFormat(
                "the upload of %d declared bytes did not end within --upload_timeout=%s plus "
                "their time at --min_upload_rate=%.0f bytes/s",
                bytes, absl::FormatDuration(limits_.upload_timeout), limits_.min_upload_rate);
  upload_timer_ = Timer(timers_, deadline, [record = record_, uploading = uploading_, message] {
    if (!uploading->load()) return;
    record->Refuse(absl::DeadlineExceededError(message));  // adds no trailing metadata
    record->Abort(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, message));
  });
}

Timer CallLimits::JobTimer(const ServiceLimits& limits, Timers* timers,
                           std::shared_ptr<CallRecord> record) {
  const std::string message = absl::StrFormat(
      "the job ran for the server's longest job time (--max_job_seconds=%g) and was stopped",
      absl::ToDoubleSeconds(limits.max_job_time));
  return Timer(timers, absl::Now() + limits.max_job_time, [record = std::move(record), message] {
    record->Abort(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, message));
  });
}

}  // namespace emfit::server
