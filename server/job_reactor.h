#ifndef EMFIT_SERVER_JOB_REACTOR_H_
#define EMFIT_SERVER_JOB_REACTOR_H_

#include <grpcpp/grpcpp.h>
#include <malloc.h>

#include <chrono>
#include <memory>
#include <new>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "call_limits.h"
#include "call_record.h"
#include "data_receiver.h"
#include "emfit/base/hand_off.h"
#include "fit_service.h"
#include "fit_session.h"
#include "grpc_status.h"
#include "logging.h"
#include "upload.h"

namespace emfit::server {

// Jobs whose data take at least this much memory end with malloc_trim (see the job below).
inline constexpr size_t kTrimAfterBytes = size_t{16} << 20;

// One streaming call of the form "header, chunks, half-close -> events": admits the call
// (CallLimits), reads and checks the upload, submits a job on half-close, relays the job's
// events through a StreamSession.
// Callbacks never block; the job runs on a worker of the JobQueue. Deletes itself in OnDone.
// ThreadSanitizer cannot see how gRPC orders OnCancel after the reactor's creation and OnDone
// after every other reaction and the Finish: the reactor hands off under its address when
// created and as each reaction returns (a Reaction, emfit/base/hand_off.h; the session before
// each Finish), and OnCancel and OnDone take that over first.
//
// Handler (one per RPC; shared with the job, which may outlive the reactor):
//   using Request, Response;
//   static constexpr RpcMethod kMethod;           // names the call in logs, metrics, job ids
//   static bool Droppable(const Response&);       // may be dropped for a slow reader
//   static std::optional<Response> Accepted(const std::string& job_id, int queue_position);
//   static std::optional<Response> Heartbeat(int queue_position);  // while the job waits
//   absl::StatusOr<Declared> OnHeader(const Request&, const ServiceLimits&);  // upload.h
//   grpc::Status Run(Upload, StreamSession<Request, Response>&, const FitControls&,
//                    const std::string& job_id);   // on a worker; posts events
template <class Handler>
class JobReactor final
    : public grpc::ServerBidiReactor<typename Handler::Request, typename Handler::Response> {
 public:
  using Request = typename Handler::Request;
  using Response = typename Handler::Response;
  using Session = StreamSession<Request, Response>;

  JobReactor(grpc::CallbackServerContext* context, FitService* service)
      : service_(service),
        record_(service->calls()->Begin(Handler::kMethod, service->NextJobId(Handler::kMethod),
                                        context)),
        session_(std::make_shared<Session>(
            this, service->limits().max_outbox, &Handler::Droppable,
            [record = record_](const Response& e) { record->AddIterations(IterationsIn(e)); })),
        handler_(std::make_shared<Handler>()),
        job_id_(record_->job_id()) {
    // A shutdown's grace period and the call's timers end it through its session.
    record_->SetAbort([session = session_](const grpc::Status& s) { session->Abort(s); });
    limits_.emplace(service->limits(), service->admission(), service->timers(), context, record_);
    if (!limits_->admitted().ok()) {
      record_->Refuse(limits_->admitted());
      session_->Finish(ToGrpcStatus(limits_->admitted()));
      return;
    }
    receiver_.emplace(&service->limits(), limits_->slot());
    HandOff(this);  // for OnCancel
    this->StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    const Reaction reaction(this);
    if (session_->finish_requested()) return;  // cancelled meanwhile
    if (!ok && record_->Cancelled()) return;   // not a half-close: OnCancel ends the call
    if (ok) record_->Received(request_.ByteSizeLong());
    const bool header = ok && !receiver_->started();
    absl::Status status = ok ? ConsumeUpload(request_, &*receiver_,
                                             [this](const Request& r) {
                                               absl::StatusOr<Declared> declared =
                                                   handler_->OnHeader(r, service_->limits());
                                               if (declared.ok())
                                                 record_->SetShape(declared->shape);
                                               return declared;
                                             })
                             : Submit();
    if (status.ok() && header) limits_->UploadDeclared(receiver_->declared_bytes());
    if (!status.ok()) {
      limits_->UploadEnded();
      record_->Refuse(status);
      session_->Finish(ToGrpcStatus(status));
      return;
    }
    if (ok) this->StartRead(&request_);
  }
  void OnWriteDone(bool ok) override {
    const Reaction reaction(this);
    session_->OnWriteDone(ok);
  }
  void OnCancel() override {
    TakeOver(this);  // gRPC runs it after the reactor's creation
    const Reaction reaction(this);
    session_->OnCancel();
    pending_.Drop();  // frees the data if no worker has started
  }
  void OnDone() override {
    TakeOver(this);
    session_->OnDone();
    pending_.Drop();
    record_->Done(session_->status());
    delete this;
  }

 private:
  absl::Status Submit() {
    absl::StatusOr<std::shared_ptr<PendingData>> pending = FinishUpload(&*receiver_);
    if (!pending.ok()) return pending.status();
    limits_->UploadEnded();
    pending_.Set(*pending);
    record_->Reserved((*pending)->reserved_bytes());
    auto job = [session = session_, handler = handler_, pending = *std::move(pending),
                record = record_, pool = service_->pool(), deadline = limits_->client_deadline(),
                limits = &service_->limits(), timers = service_->timers(),
                job_id = job_id_]() mutable {
      if (session->token().IsCancelled()) return;
      std::optional<Upload> data = pending->Take();
      if (!data.has_value()) return;  // the call ended while the job waited
      record->Started();
      const Timer time_limit = CallLimits::JobTimer(*limits, timers, record);
      FitControls controls;
      controls.cancel = &session->token();
      controls.pool = pool;
      controls.deadline = deadline;
      const size_t data_bytes = static_cast<size_t>(data->data.x.size()) * sizeof(double);
      grpc::Status status;
      try {
        status = handler->Run(*std::move(data), *session, controls, job_id);
      } catch (const std::bad_alloc&) {
        status = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "the server ran out of memory during the job");
      }
      data.reset();
      // Request chunks were allocated and freed on gRPC's threads, in heaps that glibc does
      // not shrink by itself; after a large upload, give the memory back so that a server's
      // footprint does not creep up call after call. Not after small ones: the trim unmaps
      // pages (a TLB shootdown on every core) that the next calls fault in again, which cost
      // small fits a tenth of the pool's throughput (docs/benchmarks.md).
      if (data_bytes >= kTrimAfterBytes) malloc_trim(0);
      // A call ended under its job (a stalled reader, --max_job_seconds, a cancel) is said so
      // now: its "call" record waits for the call to be done, which for a reader that stopped
      // reading is when it reads again, or disconnects.
      if (const grpc::Status ended = session->status(); !ended.ok()) {
        Log(spdlog::level::info, "job stopped",
            {{"job_id", job_id},
             {"outcome",
              absl::StatusCodeToString(static_cast<absl::StatusCode>(ended.error_code()))},
             {"message", ended.error_message()}});
      }
      record->Finished();
      session->Finish(status);
    };
    absl::StatusOr<int> position = service_->queue()->TrySubmit(
        std::move(job),
        [&](int position) {
          record_->Queued();
          if (auto accepted = Handler::Accepted(job_id_, position)) session_->Post(*accepted);
        },
        JobQueue::Hooks{[session = session_](int position) {
                          if (auto beat = Handler::Heartbeat(position)) {
                            session->Post(*std::move(beat));
                          }
                        },
                        [session = session_] { return session->finish_requested(); }});
    if (!position.ok()) return position.status();
    Log(spdlog::level::debug, "queued", {{"job_id", job_id_}, {"position", *position}});
    return absl::OkStatus();
  }

  FitService* const service_;
  std::shared_ptr<CallRecord> record_;
  std::shared_ptr<Session> session_;
  std::shared_ptr<Handler> handler_;
  std::optional<CallLimits> limits_;      // set in the constructor, after the abort
  std::optional<DataReceiver> receiver_;  // once admitted; uses limits_'s slot
  PendingSlot pending_;                   // after the upload, until a worker takes it
  Request request_;
  const std::string job_id_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_JOB_REACTOR_H_
