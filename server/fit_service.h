#ifndef EMFIT_SERVER_FIT_SERVICE_H_
#define EMFIT_SERVER_FIT_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "call_record.h"
#include "emfit/exec/thread_pool.h"
#include "emfit/v1/emfit.grpc.pb.h"
#include "job_queue.h"
#include "service_limits.h"

namespace emfit::server {

// The EmFitService implementation: one reactor per call; fits run on `queue`'s workers and
// their row blocks on `pool`; every call is recorded in `calls`. All three must outlive the
// service. Thread-safe.
class FitService final : public v1::EmFitService::CallbackService {
 public:
  FitService(const ServiceLimits& limits, JobQueue* queue, ThreadPool* pool, CallTracker* calls)
      : limits_(limits), queue_(queue), pool_(pool), calls_(calls) {}

  grpc::ServerBidiReactor<v1::FitRequest, v1::FitEvent>* Fit(
      grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<v1::PosteriorRequest, v1::PosteriorResponse>* Posterior(
      grpc::CallbackServerContext* context) override;
  grpc::ServerReadReactor<v1::ScoreRequest>* Score(grpc::CallbackServerContext* context,
                                                   v1::ScoreResponse* response) override;
  grpc::ServerBidiReactor<v1::SelectModelRequest, v1::SelectModelEvent>* SelectModel(
      grpc::CallbackServerContext* context) override;

  const ServiceLimits& limits() const { return limits_; }
  JobQueue* queue() const { return queue_; }
  ThreadPool* pool() const { return pool_; }
  CallTracker* calls() const { return calls_; }

  // Reserves `bytes` of the in-flight data budget (--max_inflight_bytes); false when full.
  bool ReserveBytes(uint64_t bytes);
  void ReleaseBytes(uint64_t bytes);
  uint64_t inflight_bytes() const { return inflight_bytes_.load(); }
  // A new job id named after its RPC: "fit-000001", "select-000002", ...
  std::string NextJobId(RpcMethod method);

 private:
  const ServiceLimits limits_;
  JobQueue* const queue_;
  ThreadPool* const pool_;
  CallTracker* const calls_;
  std::atomic<uint64_t> inflight_bytes_{0};
  std::atomic<uint64_t> next_job_{1};
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_FIT_SERVICE_H_
