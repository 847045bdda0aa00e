// Every EmFitService call, from its reactor's construction to its last byte: the record behind
// its log line and metrics, and the set of active calls that a drain waits for and cancels.
#ifndef EMFIT_SERVER_CALL_RECORD_H_
#define EMFIT_SERVER_CALL_RECORD_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "emfit/v1/emfit.pb.h"
#include "metrics.h"
#include "rpc_method.h"
#include "timers.h"

namespace emfit::server {

class CallRecord;
class TokenStore;

// The calls in progress, the server's metrics and what a call needs to describe itself.
// Owned by the Server; outlives every call. Thread-safe.
class CallTracker {
 public:
  // `tokens` (null without --token_file) names the identity of a call's bearer token.
  // `retry_after` is the retry hint of a call refused because the server is busy.
  CallTracker(Metrics* metrics, const TokenStore* tokens, absl::Duration retry_after)
      : metrics_(metrics), tokens_(tokens), retry_after_(retry_after) {}

  // Ends a call with `status` (from any thread; the call's own machinery finishes it).
  using Abort = std::function<void(const grpc::Status&)>;
  // Starts the record of a call; called in its reactor's constructor. The call counts as
  // active until its record's Done().
  std::shared_ptr<CallRecord> Begin(RpcMethod method, std::string job_id,
                                    grpc::CallbackServerContext* context);

  int active() const;
  // Waits until the record of every call that began has been destroyed (its reactor and its
  // job are gone, and with them what they held of the admission), or `deadline` passes; true
  // when none is left. The server waits for this before it destroys what calls use.
  bool WaitRecordsGone(absl::Time deadline);
  // Waits until no call is active, Hurry() was called, or `deadline` passes; true when no
  // call is active.
  bool WaitIdle(absl::Time deadline);
  // Waits until Hurry() was called or `deadline` passes; true when hurried.
  bool WaitHurried(absl::Time deadline);
  // Cuts every wait short (a second stop signal).
  void Hurry();
  // Ends every active call with `status`.
  void AbortAll(const grpc::Status& status);
  // Ends call `id` with `status` if it is still active and has set how (no-op otherwise).
  void AbortOne(uint64_t id, const grpc::Status& status);
  // Runs `fn` on `timers` once no call has been active for `quiet`, once per such quiet spell
  // (e.g. to give the memory of a burst of calls back). Set before any call begins; `timers`
  // must not outlive this tracker.
  void OnQuiet(Timers* timers, absl::Duration quiet, std::function<void()> fn);

  Metrics& metrics() const { return *metrics_; }
  absl::Duration retry_after() const { return retry_after_; }

 private:
  friend class CallRecord;
  void SetAbort(uint64_t id, Abort abort);
  void End(uint64_t id);
  // A CallRecord was made, or destroyed (WaitRecordsGone counts them).
  void RecordBorn();
  void RecordGone();
  // The timer of OnQuiet: runs its function if the spell of quiet has lasted, else waits on.
  void CheckQuiet();
  void ScheduleQuietCheck(absl::Time when) ABSL_LOCKS_EXCLUDED(mu_);

  Metrics* const metrics_;
  const TokenStore* const tokens_;
  const absl::Duration retry_after_;
  mutable absl::Mutex mu_;
  std::map<uint64_t, Abort> active_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool hurry_ ABSL_GUARDED_BY(mu_) = false;
  int64_t records_ ABSL_GUARDED_BY(mu_) = 0;  // CallRecords alive
  // OnQuiet's settings (set before calls begin) and its spell: since when no call has been
  // active, whether a check is scheduled, and whether `on_quiet_` ran for this spell.
  Timers* quiet_timers_ = nullptr;
  absl::Duration quiet_;
  std::function<void()> on_quiet_;
  absl::Time idle_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool quiet_check_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool quiet_done_ ABSL_GUARDED_BY(mu_) = true;
};

// What one call did. Shared by its reactor (which reports the call's progress and end) and its
// job (which reports the job's start and end); the call's log line is written once both have
// ended. Thread-safe.
class CallRecord {
 public:
  CallRecord(CallTracker* tracker, uint64_t id, RpcMethod method, std::string job_id,
             grpc::CallbackServerContext* context, std::string peer, std::string identity);
  CallRecord(const CallRecord&) = delete;
  CallRecord& operator=(const CallRecord&) = delete;
  ~CallRecord() { tracker_->RecordGone(); }

  const std::string& job_id() const { return job_id_; }
  RpcMethod method() const { return method_; }

  // How AbortAll and Abort end this call (set once, right after Begin).
  void SetAbort(CallTracker::Abort abort) { tracker_->SetAbort(id_, std::move(abort)); }
  // Ends the call with `status` (from any thread; e.g. a timer): no-op once it has ended.
  void Abort(const grpc::Status& status) { tracker_->AbortOne(id_, status); }
  // The client the call is admitted for (admission.h, ClientKey).
  const std::string& client() const { return client_; }
  // A request message of `bytes` arrived.
  void Received(uint64_t bytes);
  // The header declared this shape.
  void SetShape(const v1::DataShape& shape);
  // The call is refused before its job ran: counts the reason and adds the retry hint to the
  // call's trailing metadata. Call from the reactor, before the call is finished.
  void Refuse(const absl::Status& status);
  // The job was queued, started on a worker, and ended.
  void Queued();
  void Started();
  void Finished();
  // The call held `bytes` of the in-flight budget (its data and the job's working memory).
  void Reserved(uint64_t bytes);
  // The job ran `n` more EM iterations.
  void AddIterations(uint64_t n);
  // The call ended with `status` (the reactor's OnDone).
  void Done(const grpc::Status& status);
  // Whether the client cancelled the call, or its deadline passed, or its connection broke,
  // as far as gRPC knows yet (a failed read may come before OnCancel). Until Done().
  bool Cancelled() const { return context_->IsCancelled(); }

 private:
  enum class JobState { kNone, kQueued, kRunning, kFinished };
  void EmitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  CallTracker* const tracker_;
  const uint64_t id_;
  const RpcMethod method_;
  const std::string job_id_;
  grpc::CallbackServerContext* const context_;  // valid until Done()
  const std::string peer_;
  const std::string identity_;
  const std::string client_;
  const absl::Time begin_ = absl::Now();

  absl::Mutex mu_;
  uint64_t received_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rows_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t cols_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t iterations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t reserved_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::string refused_ ABSL_GUARDED_BY(mu_);  // the reject reason, if refused
  JobState job_ ABSL_GUARDED_BY(mu_) = JobState::kNone;
  absl::Time queued_at_ ABSL_GUARDED_BY(mu_);
  absl::Time started_at_ ABSL_GUARDED_BY(mu_);
  absl::Time finished_at_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool emitted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time done_at_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// EM iterations an event reports (iteration events after the starting point).
inline uint64_t IterationsIn(const v1::FitEvent& e) {
  return e.has_iteration() && e.iteration().iteration() > 0 ? 1 : 0;
}
inline uint64_t IterationsIn(const v1::SelectModelEvent& e) {
  return e.has_iteration() && e.iteration().iteration().iteration() > 0 ? 1 : 0;
}
inline uint64_t IterationsIn(const v1::PosteriorResponse&) { return 0; }
inline uint64_t IterationsIn(const v1::SampleHistoriesResponse&) { return 0; }

}  // namespace emfit::server

#endif  // EMFIT_SERVER_CALL_RECORD_H_
