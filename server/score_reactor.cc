#include "score_reactor.h"

#include "emfit/base/hand_off.h"
#include "fit_service.h"
#include "grpc_status.h"
#include "job_reactor.h"
#include "upload.h"

namespace emfit::server {

void ScoreReactor::State::Finish(const absl::StatusOr<v1::ScoreResponse>& result) {
  ScoreReactor* r = nullptr;
  {
    absl::MutexLock lock(&mu);
    if (finished || reactor == nullptr) return;
    finished = true;
    if (result.ok()) *response = *result;
    status = ToGrpcStatus(result.status());
    r = reactor;
  }
  HandOff(r);  // for OnDone
  r->Finish(status);
}

ScoreReactor::ScoreReactor(grpc::CallbackServerContext* context, v1::ScoreResponse* response,
                           FitService* service)
    : service_(service),
      record_(service->calls()->Begin(RpcMethod::kScore, service->NextJobId(RpcMethod::kScore),
                                      context)),
      state_(std::make_shared<State>()),
      job_id_(record_->job_id()) {
  {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
    state_->response = response;
  }
  record_->SetAbort([state = state_](const grpc::Status& s) {
    state->token.Cancel();
    state->Finish(absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message()));
  });
  limits_.emplace(service->limits(), service->admission(), service->timers(), context, record_);
  if (!limits_->admitted().ok()) {
    record_->Refuse(limits_->admitted());
    state_->Finish(limits_->admitted());
    return;
  }
  receiver_.emplace(&service->limits(), limits_->slot());
  HandOff(this);  // for OnCancel
  StartRead(&request_);
}

void ScoreReactor::OnReadDone(bool ok) {
  const Reaction reaction(this);
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->finished) return;
  }
  if (!ok && record_->Cancelled()) return;  // not a half-close: OnCancel ends the call
  if (ok) record_->Received(request_.ByteSizeLong());
  const bool header = ok && !receiver_->started();
  absl::Status status =
      ok ? ConsumeUpload(request_, &*receiver_,
                         [this](const v1::ScoreRequest& r) -> absl::StatusOr<Declared> {
                           absl::StatusOr<Declared> declared =
                               PlanCall(r.header(), service_->limits(), &model_);
                           if (declared.ok()) record_->SetShape(r.header().shape());
                           return declared;
                         })
         : Submit();
  if (status.ok() && header) limits_->UploadDeclared(receiver_->declared_bytes());
  if (!status.ok()) {
    limits_->UploadEnded();
    record_->Refuse(status);
    state_->Finish(status);
    return;
  }
  if (ok) StartRead(&request_);
}

absl::Status ScoreReactor::Submit() {
  absl::StatusOr<std::shared_ptr<PendingData>> pending = FinishUpload(&*receiver_);
  if (!pending.ok()) return pending.status();
  limits_->UploadEnded();
  pending_.Set(*pending);
  record_->Reserved((*pending)->reserved_bytes());
  auto job = [state = state_, model = std::make_shared<const ModelVariant>(std::move(*model_)),
              pending = *std::move(pending), record = record_, pool = service_->pool(),
              deadline = limits_->client_deadline(), limits = &service_->limits(),
              timers = service_->timers()]() {
    if (state->token.IsCancelled()) return;
    std::optional<Upload> data = pending->Take();
    if (!data.has_value()) return;
    record->Started();
    const Timer time_limit = CallLimits::JobTimer(*limits, timers, record);
    FitControls controls;
    controls.cancel = &state->token;
    controls.pool = pool;
    controls.deadline = deadline;
    absl::StatusOr<v1::ScoreResponse> result;
    try {
      result = RunScore(*model, *data, controls);
    } catch (const std::bad_alloc&) {
      result = absl::ResourceExhaustedError("the server ran out of memory");
    }
    record->Finished();
    state->Finish(result);
  };
  absl::StatusOr<int> position = service_->queue()->TrySubmit(
      std::move(job), [this](int) { record_->Queued(); },
      JobQueue::Hooks{nullptr, [state = state_] {
                        absl::MutexLock lock(&state->mu);
                        return state->finished || state->reactor == nullptr;
                      }});
  return position.ok() ? absl::OkStatus() : position.status();
}

void ScoreReactor::OnCancel() {
  TakeOver(this);
  const Reaction reaction(this);
  state_->token.Cancel();
  pending_.Drop();
  state_->Finish(absl::CancelledError("the call was cancelled"));
}

void ScoreReactor::OnDone() {
  TakeOver(this);
  state_->token.Cancel();
  pending_.Drop();
  {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = nullptr;
    state_->response = nullptr;
  }
  record_->Done(state_->final_status());
  delete this;
}

}  // namespace emfit::server
