#ifndef EMFIT_SERVER_FIT_REACTOR_H_
#define EMFIT_SERVER_FIT_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "emfit/data/dataset.h"
#include "emfit/v1/emfit.pb.h"
#include "fit_job.h"
#include "fit_session.h"

namespace emfit::server {

class FitService;
using FitSession = StreamSession<v1::FitRequest, v1::FitEvent>;

// One Fit call: reads the header and the data chunks, checks them against the plan, submits
// the job on half-close, and relays the job's events through a FitSession. Callbacks never
// block. Deletes itself in OnDone.
class FitReactor final : public grpc::ServerBidiReactor<v1::FitRequest, v1::FitEvent> {
 public:
  FitReactor(grpc::CallbackServerContext* context, FitService* service);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override { session_->OnWriteDone(ok); }
  void OnCancel() override { session_->OnCancel(); }
  void OnDone() override;

 private:
  // Handles one request of the stream; an error ends the call.
  absl::Status Consume(v1::FitRequest& request);
  absl::Status OnHalfClose();
  void Fail(const absl::Status& status);

  grpc::CallbackServerContext* const context_;
  FitService* const service_;
  std::shared_ptr<FitSession> session_;
  v1::FitRequest request_;
  std::optional<FitPlan> plan_;
  Dataset data_;
  int64_t received_ = 0;  // values received so far
  uint64_t reserved_bytes_ = 0;
  std::string job_id_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_FIT_REACTOR_H_
