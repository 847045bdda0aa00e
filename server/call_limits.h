// What every EmFitService call is held to besides the request limits: its client's place in the
// admission (--max_calls_per_peer), the deadline of its upload (--upload_timeout,
// --min_upload_rate), the server's deadline for a call without one (--default_deadline), and
// the time its job may run (--max_job_seconds). docs/operations.md, "Admission and limits".
#ifndef EMFIT_SERVER_CALL_LIMITS_H_
#define EMFIT_SERVER_CALL_LIMITS_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "admission.h"
#include "call_record.h"
#include "service_limits.h"
#include "timers.h"

namespace emfit::server {

// Owned by one call's reactor, used from its callbacks (not thread-safe); its timers end the
// call through `record` (CallRecord::Abort) from the timers' thread.
class CallLimits {
 public:
  // Admits the call: a place among its client's calls, the upload deadline, and the default
  // deadline when the client set none. When the client has no place left, admitted() says why
  // and the reactor ends the call with it at once.
  CallLimits(const ServiceLimits& limits, Admission* admission, Timers* timers,
             grpc::CallbackServerContext* context, std::shared_ptr<CallRecord> record);

  const absl::Status& admitted() const { return admitted_; }
  // The call's place in the admission (null when refused).
  Admission::Slot* slot() const { return slot_.get(); }
  // The header declared `bytes` of data: the upload must now end within --upload_timeout plus
  // their time at --min_upload_rate, from the call's start.
  void UploadDeclared(uint64_t bytes);
  // The upload ended (the job was submitted, or the call refused): its deadline no longer
  // applies.
  void UploadEnded();
  // The client's deadline (infinite without one): the jobs' FitControls::deadline.
  absl::Time client_deadline() const { return client_deadline_; }

  // Started by the job when a worker takes it: ends the call with DEADLINE_EXCEEDED when the
  // job has run for `limits.max_job_time`; cancelled when the returned Timer dies.
  static Timer JobTimer(const ServiceLimits& limits, Timers* timers,
                        std::shared_ptr<CallRecord> record);

 private:
  void ArmUpload(absl::Time deadline, uint64_t bytes);

  const ServiceLimits& limits_;
  Timers* const timers_;
  const std::shared_ptr<CallRecord> record_;
  const absl::Time start_;
  absl::Time client_deadline_;
  absl::Status admitted_;
  std::unique_ptr<Admission::Slot> slot_;
  // Read by the upload timer's callback: whether the upload still runs.
  const std::shared_ptr<std::atomic<bool>> uploading_ = std::make_shared<std::atomic<bool>>(true);
  Timer upload_timer_;
  Timer default_deadline_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_CALL_LIMITS_H_
