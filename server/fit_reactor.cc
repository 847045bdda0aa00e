#include "fit_reactor.h"

#include <chrono>
#include <cstring>
#include <new>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "emfit/em/observer.h"
#include "fit_service.h"
#include "grpc_status.h"
#include "spdlog/spdlog.h"

namespace emfit::server {
namespace {

// Forwards core progress to the session as events.
class SessionObserver final : public FitObserver {
 public:
  explicit SessionObserver(FitSession* session) : session_(session) {}
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
  FitSession* session_;
};

absl::Time DeadlineOf(const grpc::CallbackServerContext* context) {
  const auto deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

}  // namespace

FitReactor::FitReactor(grpc::CallbackServerContext* context, FitService* service)
    : context_(context),
      service_(service),
      session_(std::make_shared<FitSession>(
          this, service->limits().max_outbox,
          [](const v1::FitEvent& e) { return e.has_iteration() || e.has_heartbeat(); })),
      job_id_(service->NextJobId()) {
  StartRead(&request_);
}

void FitReactor::Fail(const absl::Status& status) {
  spdlog::info("job {}: rejected: {}", job_id_, status.ToString());
  session_->Finish(ToGrpcStatus(status));
}

void FitReactor::OnReadDone(bool ok) {
  if (session_->finish_requested()) return;  // cancelled meanwhile
  absl::Status status = ok ? Consume(request_) : OnHalfClose();
  if (!status.ok()) {
    Fail(status);
    return;
  }
  if (ok) StartRead(&request_);
}

absl::Status FitReactor::Consume(v1::FitRequest& request) {
  if (!plan_.has_value()) {
    if (!request.has_header()) {
      return absl::InvalidArgumentError(
          "request stream: the first message must be a header (FitRequest.header)");
    }
    absl::StatusOr<FitPlan> plan = PlanFit(request.header(), service_->limits());
    if (!plan.ok()) return plan.status();
    const uint64_t bytes = static_cast<uint64_t>(plan->rows) * plan->cols * sizeof(double);
    if (!service_->ReserveBytes(bytes)) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "header.shape: %d bytes of data do not fit in the server's in-flight budget "
          "(--max_inflight_bytes=%d, %d in use); retry later",
          bytes, service_->limits().max_inflight_bytes, service_->inflight_bytes()));
    }
    reserved_bytes_ = bytes;
    try {
      data_.x.resize(plan->rows, plan->cols);
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError("header.shape: the server is out of memory");
    }
    plan_ = *std::move(plan);
    return absl::OkStatus();
  }
  if (!request.has_chunk()) {
    return absl::InvalidArgumentError(
        "request stream: after the header only data chunks (FitRequest.chunk) may follow");
  }
  const auto& values = request.chunk().values();
  const int64_t total = data_.x.size();
  if (values.size() > total - received_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "chunk: more values than header.shape declares (rows x cols = %d x %d = %d)", plan_->rows,
        plan_->cols, total));
  }
  std::memcpy(data_.x.data() + received_, values.data(), values.size() * sizeof(double));
  received_ += values.size();
  return absl::OkStatus();
}

absl::Status FitReactor::OnHalfClose() {
  if (!plan_.has_value()) {
    return absl::InvalidArgumentError(
        "request stream: closed before a header (FitRequest.header) was sent");
  }
  if (received_ != data_.x.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "chunk: header.shape declares rows x cols = %d x %d = %d values, received %d", plan_->rows,
        plan_->cols, data_.x.size(), received_));
  }
  // The job owns everything it needs; the reactor may be gone before it runs.
  auto job = [session = session_, plan = *plan_, data = std::move(data_), pool = service_->pool(),
              deadline = DeadlineOf(context_), job_id = job_id_]() mutable {
    if (session->token().IsCancelled()) return;
    SessionObserver observer(session.get());
    FitControls controls;
    controls.cancel = &session->token();
    controls.observer = &observer;
    controls.pool = pool;
    controls.deadline = deadline;
    const absl::Time start = absl::Now();
    absl::StatusOr<v1::FitResult> result;
    try {
      result = RunFit(plan, std::move(data), controls);
    } catch (const std::bad_alloc&) {
      result = absl::ResourceExhaustedError("the server ran out of memory during the fit");
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    if (!result.ok()) {
      spdlog::info("job {}: failed after {:.3f} s: {}", job_id, seconds,
                   result.status().ToString());
      session->Finish(ToGrpcStatus(result.status()));
      return;
    }
    spdlog::info("job {}: {} iterations, log-likelihood {:.6f}, {} in {:.3f} s", job_id,
                 result->summary().iterations(), result->summary().log_likelihood(),
                 v1::TerminationReason_Name(result->summary().reason()), seconds);
    v1::FitEvent event;
    *event.mutable_result() = *std::move(result);
    session->Post(std::move(event));
    session->Finish(grpc::Status::OK);
  };
  absl::StatusOr<int> position = service_->queue()->TrySubmit(std::move(job), [&](int ahead) {
    v1::FitEvent accepted;
    accepted.mutable_accepted()->set_job_id(job_id_);
    accepted.mutable_accepted()->set_queue_position(static_cast<uint32_t>(ahead));
    session_->Post(std::move(accepted));
  });
  if (!position.ok()) return position.status();
  spdlog::info("job {}: queued at position {} ({} x {})", job_id_, *position, plan_->rows,
               plan_->cols);
  return absl::OkStatus();
}

void FitReactor::OnDone() {
  session_->OnDone();
  // The job keeps its copy of the data until it ends; the budget counts the request's life.
  service_->ReleaseBytes(reserved_bytes_);
  delete this;
}

}  // namespace emfit::server
