#include "score_reactor.h"

#include "fit_service.h"
#include "grpc_status.h"
#include "job_reactor.h"
#include "spdlog/spdlog.h"
#include "upload.h"

namespace emfit::server {

void ScoreReactor::State::Finish(const absl::StatusOr<v1::ScoreResponse>& result) {
  ScoreReactor* r = nullptr;
  {
    absl::MutexLock lock(&mu);
    if (finished || reactor == nullptr) return;
    finished = true;
    if (result.ok()) *response = *result;
    r = reactor;
  }
  r->Finish(ToGrpcStatus(result.status()));
}

ScoreReactor::ScoreReactor(grpc::CallbackServerContext* context, v1::ScoreResponse* response,
                           FitService* service)
    : context_(context),
      service_(service),
      state_(std::make_shared<State>()),
      receiver_(service),
      job_id_(service->NextJobId()) {
  {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
    state_->response = response;
  }
  StartRead(&request_);
}

void ScoreReactor::OnReadDone(bool ok) {
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->finished) return;
  }
  absl::Status status =
      ok ? ConsumeUpload(request_, &receiver_,
                         [this](const v1::ScoreRequest& r) -> absl::StatusOr<v1::DataShape> {
                           absl::StatusOr<ModelVariant> m =
                               PlanModel(r.header(), service_->limits());
                           if (!m.ok()) return m.status();
                           model_ = *std::move(m);
                           return r.header().shape();
                         })
         : Submit();
  if (!status.ok()) {
    spdlog::info("job {}: rejected: {}", job_id_, status.ToString());
    state_->Finish(status);
    return;
  }
  if (ok) StartRead(&request_);
}

absl::Status ScoreReactor::Submit() {
  absl::StatusOr<std::shared_ptr<PendingData>> pending = FinishUpload(&receiver_);
  if (!pending.ok()) return pending.status();
  pending_ = *std::move(pending);
  auto job = [state = state_, model = *model_, pending = pending_, pool = service_->pool(),
              deadline = DeadlineOf(context_)]() {
    if (state->token.IsCancelled()) return;
    std::optional<Dataset> data = pending->Take();
    if (!data.has_value()) return;
    FitControls controls;
    controls.cancel = &state->token;
    controls.pool = pool;
    controls.deadline = deadline;
    try {
      state->Finish(RunScore(model, *data, controls));
    } catch (const std::bad_alloc&) {
      state->Finish(absl::ResourceExhaustedError("the server ran out of memory"));
    }
  };
  absl::StatusOr<int> position = service_->queue()->TrySubmit(
      std::move(job), [](int) {}, JobQueue::Hooks{nullptr, [state = state_] {
                                                    absl::MutexLock lock(&state->mu);
                                                    return state->finished ||
                                                           state->reactor == nullptr;
                                                  }});
  return position.ok() ? absl::OkStatus() : position.status();
}

void ScoreReactor::OnCancel() {
  state_->token.Cancel();
  if (pending_ != nullptr) pending_->Drop();
  state_->Finish(absl::CancelledError("the call was cancelled"));
}

void ScoreReactor::OnDone() {
  state_->token.Cancel();
  if (pending_ != nullptr) pending_->Drop();
  {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = nullptr;
    state_->response = nullptr;
  }
  delete this;
}

}  // namespace emfit::server
