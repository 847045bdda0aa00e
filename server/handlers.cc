#include "handlers.h"

#include <memory>
#include <vector>

#include "absl/strings/str_format.h"
#include "convert/common.h"
#include "emfit/em/observer.h"
#include "grpc_status.h"
#include "spdlog/spdlog.h"

namespace emfit::server {
namespace {

// Forwards a fit's progress as FitEvents.
class FitEventObserver final : public FitObserver {
 public:
  explicit FitEventObserver(StreamSession<v1::FitRequest, v1::FitEvent>* session)
      : session_(session) {}
  void OnIteration(const IterationEvent& event) override {
    v1::FitEvent e;
    ToProto(event, e.mutable_iteration());
    session_->Post(std::move(e));
  }
  void OnWarning(const FitWarning& warning) override {
    v1::FitEvent e;
    ToProto(warning, e.mutable_warning());
    session_->Post(std::move(e));
  }

 private:
  StreamSession<v1::FitRequest, v1::FitEvent>* session_;
};

// Forwards one candidate's progress as SelectModelEvents tagged with its index.
class CandidateObserver final : public FitObserver {
 public:
  CandidateObserver(StreamSession<v1::SelectModelRequest, v1::SelectModelEvent>* session,
                    int candidate)
      : session_(session), candidate_(candidate) {}
  void OnIteration(const IterationEvent& event) override {
    v1::SelectModelEvent e;
    e.mutable_iteration()->set_candidate(static_cast<uint32_t>(candidate_));
    ToProto(event, e.mutable_iteration()->mutable_iteration());
    session_->Post(std::move(e));
  }
  void OnWarning(const FitWarning& warning) override {
    v1::SelectModelEvent e;
    ToProto(warning, e.mutable_warning());
    e.mutable_warning()->set_message(
        absl::StrFormat("candidate %d: %s", candidate_, warning.message));
    session_->Post(std::move(e));
  }

 private:
  StreamSession<v1::SelectModelRequest, v1::SelectModelEvent>* session_;
  int candidate_;
};

template <class Event>
std::optional<Event> MakeAccepted(const std::string& job_id, int position) {
  Event e;
  e.mutable_accepted()->set_job_id(job_id);
  e.mutable_accepted()->set_queue_position(static_cast<uint32_t>(position));
  return e;
}

}  // namespace

std::optional<v1::FitEvent> FitHandler::Accepted(const std::string& job_id, int position) {
  return MakeAccepted<v1::FitEvent>(job_id, position);
}

std::optional<v1::FitEvent> FitHandler::Heartbeat(int position) {
  v1::FitEvent e;
  e.mutable_heartbeat()->set_queue_position(static_cast<uint32_t>(position));
  return e;
}

absl::StatusOr<Declared> FitHandler::OnHeader(const Request& request, const ServiceLimits& limits) {
  return PlanCall(request.header(), limits, &plan_);
}

grpc::Status FitHandler::Run(Upload upload, StreamSession<Request, Response>& session,
                             const FitControls& controls, const std::string& job_id) {
  FitEventObserver observer(&session);
  FitControls mine = controls;
  mine.observer = &observer;
  absl::StatusOr<v1::FitResult> result = RunFit(*plan_, std::move(upload), mine);
  if (!result.ok()) return ToGrpcStatus(result.status());
  spdlog::info("job {}: {} iterations, log-likelihood {:.6f}, {}", job_id,
               result->summary().iterations(), result->summary().log_likelihood(),
               v1::TerminationReason_Name(result->summary().reason()));
  v1::FitEvent event;
  *event.mutable_result() = *std::move(result);
  session.Post(std::move(event));
  return grpc::Status::OK;
}

absl::StatusOr<Declared> PosteriorHandler::OnHeader(const Request& request,
                                                    const ServiceLimits& limits) {
  max_stall_ = limits.max_stall;
  return PlanCall(request.header(), limits, &model_);
}

grpc::Status PosteriorHandler::Run(Upload upload, StreamSession<Request, Response>& session,
                                   const FitControls& controls, const std::string&) {
  // A few blocks in flight at most; a reader that stops reading ends the call after max_stall.
  return ToGrpcStatus(RunPosterior(*model_, upload, controls, [&](v1::PosteriorResponse r) {
    session.PostWait(std::move(r), /*window=*/4, max_stall_);
  }));
}

std::optional<v1::SelectModelEvent> SelectHandler::Accepted(const std::string& job_id,
                                                            int position) {
  return MakeAccepted<v1::SelectModelEvent>(job_id, position);
}

absl::StatusOr<Declared> SelectHandler::OnHeader(const Request& request,
                                                 const ServiceLimits& limits) {
  return PlanCall(request.header(), limits, &plan_);
}

grpc::Status SelectHandler::Run(Upload upload, StreamSession<Request, Response>& session,
                                const FitControls& controls, const std::string&) {
  std::vector<std::unique_ptr<CandidateObserver>> observers;
  for (size_t i = 0; i < plan_->candidates.size(); ++i) {
    observers.push_back(std::make_unique<CandidateObserver>(&session, static_cast<int>(i)));
  }
  absl::StatusOr<v1::SelectionResult> result = RunSelect(
      *plan_, upload, controls, [&](int i) { return observers[i].get(); },
      [&](const v1::Candidate& c) {
        // Called on pool threads: never block here. At most one per candidate is queued.
        v1::SelectModelEvent e;
        *e.mutable_candidate_done() = c;
        session.Post(std::move(e));
      });
  if (!result.ok()) return ToGrpcStatus(result.status());
  v1::SelectModelEvent event;
  *event.mutable_result() = *std::move(result);
  session.Post(std::move(event));
  return grpc::Status::OK;
}

absl::StatusOr<Declared> HistoriesHandler::OnHeader(const Request& request,
                                                    const ServiceLimits& limits) {
  max_stall_ = limits.max_stall;
  return PlanCall(request.header(), limits, &plan_);
}

grpc::Status HistoriesHandler::Run(Upload upload, StreamSession<Request, Response>& session,
                                   const FitControls& controls, const std::string&) {
  // As Posterior: a few batches in flight; a reader that stops reading ends the call.
  return ToGrpcStatus(RunHistories(*plan_, upload, controls, [&](v1::SampleHistoriesResponse r) {
    session.PostWait(std::move(r), /*window=*/4, max_stall_);
  }));
}

}  // namespace emfit::server
