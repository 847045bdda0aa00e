#ifndef EMFIT_SERVER_FIT_SERVICE_H_
#define EMFIT_SERVER_FIT_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "admission.h"
#include "call_record.h"
#include "emfit/exec/thread_pool.h"
#include "emfit/v1/emfit.grpc.pb.h"
#include "job_queue.h"
#include "service_limits.h"
#include "timers.h"

namespace emfit::server {

// The EmFitService implementation: one reactor per call; fits run on `queue`'s workers and
// their row blocks on `pool`; every call is recorded in `calls`, admitted by `admission` and
// timed by `timers`. All must outlive the service. Thread-safe.
class FitService final : public v1::EmFitService::CallbackService {
 public:
  FitService(const ServiceLimits& limits, JobQueue* queue, ThreadPool* pool, CallTracker* calls,
             Admission* admission, Timers* timers)
      : limits_(limits),
        queue_(queue),
        pool_(pool),
        calls_(calls),
        admission_(admission),
        timers_(timers) {}

  grpc::ServerBidiReactor<v1::FitRequest, v1::FitEvent>* Fit(
      grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<v1::PosteriorRequest, v1::PosteriorResponse>* Posterior(
      grpc::CallbackServerContext* context) override;
  grpc::ServerReadReactor<v1::ScoreRequest>* Score(grpc::CallbackServerContext* context,
                                                   v1::ScoreResponse* response) override;
  grpc::ServerBidiReactor<v1::SelectModelRequest, v1::SelectModelEvent>* SelectModel(
      grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<v1::SampleHistoriesRequest, v1::SampleHistoriesResponse>* SampleHistories(
      grpc::CallbackServerContext* context) override;

  const ServiceLimits& limits() const { return limits_; }
  JobQueue* queue() const { return queue_; }
  ThreadPool* pool() const { return pool_; }
  CallTracker* calls() const { return calls_; }
  Admission* admission() const { return admission_; }
  Timers* timers() const { return timers_; }

  // The in-flight budget in use (data and working memory of all calls).
  uint64_t inflight_bytes() const { return admission_->used_bytes(); }
  // A new job id named after its RPC: "fit-000001", "select-000002", ...
  std::string NextJobId(RpcMethod method);

 private:
  const ServiceLimits limits_;
  JobQueue* const queue_;
  ThreadPool* const pool_;
  CallTracker* const calls_;
  Admission* const admission_;
  Timers* const timers_;
  std::atomic<uint64_t> next_job_{1};
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_FIT_SERVICE_H_
