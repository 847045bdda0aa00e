#ifndef EMFIT_SERVER_SCORE_REACTOR_H_
#define EMFIT_SERVER_SCORE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "call_limits.h"
#include "call_record.h"
#include "data_receiver.h"
#include "emfit/exec/cancellation.h"
#include "emfit/v1/emfit.pb.h"
#include "jobs.h"

namespace emfit::server {

class FitService;

// Score: a client stream (header, chunks) answered by one ScoreResponse, computed on a worker;
// admitted and timed like the other calls (CallLimits). Deletes itself in OnDone. Hands off
// to OnCancel and OnDone as JobReactor does (emfit/base/hand_off.h).
class ScoreReactor final : public grpc::ServerReadReactor<v1::ScoreRequest> {
 public:
  ScoreReactor(grpc::CallbackServerContext* context, v1::ScoreResponse* response,
               FitService* service);
  void OnReadDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Shared with the job: the job may finish after the reactor is gone.
  struct State {
    absl::Mutex mu;
    ScoreReactor* reactor ABSL_GUARDED_BY(mu);
    v1::ScoreResponse* response ABSL_GUARDED_BY(mu);
    bool finished ABSL_GUARDED_BY(mu) = false;
    grpc::Status status ABSL_GUARDED_BY(mu);  // what the call was finished with
    CancellationToken token;
    // Finishes the call once; `result` is written to the response if OK.
    void Finish(const absl::StatusOr<v1::ScoreResponse>& result);
    grpc::Status final_status() {
      absl::MutexLock lock(&mu);
      return status;
    }
  };
  absl::Status Submit();

  FitService* const service_;
  std::shared_ptr<CallRecord> record_;
  std::shared_ptr<State> state_;
  std::optional<CallLimits> limits_;      // set in the constructor, after the abort
  std::optional<DataReceiver> receiver_;  // once admitted; uses limits_'s slot
  PendingSlot pending_;
  std::optional<ModelVariant> model_;
  v1::ScoreRequest request_;
  const std::string job_id_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_SCORE_REACTOR_H_
