// Why a call was refused before its job ran, and the retry hint the client gets with it.
#ifndef EMFIT_SERVER_REJECTION_H_
#define EMFIT_SERVER_REJECTION_H_

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace emfit::server {

// The `reason` label of emfit_rejected_calls_total and the `rejected` field of a call's log line.
enum class RejectReason {
  kQueueFull,           // every worker busy and --queue jobs waiting (transient)
  kInflightBudget,      // --max_inflight_bytes in use by other calls (transient)
  kClientLimit,         // the client's calls or share of the budget in use (transient)
  kLimit,               // the request exceeds a limit (--max_rows, ...): retrying cannot help
  kInvalidArgument,     // malformed request
  kFailedPrecondition,  // valid, but cannot run
  kUnauthenticated,     // no or a wrong bearer token
  kShuttingDown,        // the server is stopping
  kDeadline,            // the upload did not end in time (--upload_timeout), or the deadline passed
  kOther,
};
absl::string_view RejectReasonName(RejectReason reason);

// Marks `status` as a refusal because the server is busy (kQueueFull, kInflightBudget or
// kClientLimit): the
// same call may succeed later, so the client is told when to retry.
absl::Status MarkBusy(absl::Status status, RejectReason reason);
// The reason of a refusal with `status`: the mark set by MarkBusy, else derived from the code
// (RESOURCE_EXHAUSTED without a mark is a limit).
RejectReason ReasonOf(const absl::Status& status);

// The trailing metadata key of gRPC's retry pushback (gRFC A6): a retrying client (a gRPC retry
// policy, emfit's FitClient) waits this many milliseconds before its next attempt, and does not
// retry when it is negative.
inline constexpr char kRetryPushbackKey[] = "grpc-retry-pushback-ms";

// Adds the retry pushback for a call refused with `status` to `context`: `retry_after` when the
// server is busy; -1 (do not retry) for a RESOURCE_EXHAUSTED that retrying cannot cure (a
// limit); nothing otherwise. Call before the call's Finish, from the thread that finishes it.
void AddRetryHint(grpc::ServerContextBase* context, const absl::Status& status,
                  absl::Duration retry_after);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_REJECTION_H_
