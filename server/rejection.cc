#include "rejection.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace emfit::server {
namespace {

constexpr char kReasonPayload[] = "emfit/reject_reason";

}  // namespace

absl::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kQueueFull:
      return "queue_full";
    case RejectReason::kInflightBudget:
      return "inflight_budget";
    case RejectReason::kLimit:
      return "limit";
    case RejectReason::kInvalidArgument:
      return "invalid_argument";
    case RejectReason::kFailedPrecondition:
      return "failed_precondition";
    case RejectReason::kUnauthenticated:
      return "unauthenticated";
    case RejectReason::kShuttingDown:
      return "shutting_down";
    case RejectReason::kOther:
      return "other";
  }
  return "other";
}

absl::Status MarkBusy(absl::Status status, RejectReason reason) {
  status.SetPayload(kReasonPayload, absl::Cord(RejectReasonName(reason)));
  return status;
}

RejectReason ReasonOf(const absl::Status& status) {
  if (auto mark = status.GetPayload(kReasonPayload); mark.has_value()) {
    if (*mark == RejectReasonName(RejectReason::kQueueFull)) return RejectReason::kQueueFull;
    if (*mark == RejectReasonName(RejectReason::kInflightBudget)) {
      return RejectReason::kInflightBudget;
    }
  }
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
      return RejectReason::kLimit;
    case absl::StatusCode::kInvalidArgument:
      return RejectReason::kInvalidArgument;
    case absl::StatusCode::kFailedPrecondition:
      return RejectReason::kFailedPrecondition;
    case absl::StatusCode::kUnauthenticated:
      return RejectReason::kUnauthenticated;
    case absl::StatusCode::kUnavailable:
      return RejectReason::kShuttingDown;
    default:
      return RejectReason::kOther;
  }
}

void AddRetryHint(grpc::ServerContextBase* context, const absl::Status& status,
                  absl::Duration retry_after) {
  if (status.code() != absl::StatusCode::kResourceExhausted) return;
  const RejectReason reason = ReasonOf(status);
  const bool busy = reason == RejectReason::kQueueFull || reason == RejectReason::kInflightBudget;
  context->AddTrailingMetadata(
      kRetryPushbackKey,
      busy ? absl::StrCat(absl::ToInt64Milliseconds(retry_after)) : std::string("-1"));
}

}  // namespace emfit::server
