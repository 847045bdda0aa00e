#include "call_record.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "admission.h"
#include "auth.h"
#include "logging.h"
#include "rejection.h"

namespace emfit::server {
namespace {

// The identity behind a call: its bearer token's name, else the verified client certificate's
// identity (mTLS), else empty.
std::string IdentityOf(const grpc::CallbackServerContext& context, const TokenStore* tokens) {
  if (tokens != nullptr) {
    const auto& metadata = context.client_metadata();
    if (auto it = metadata.find("authorization"); it != metadata.end()) {
      std::optional<std::string> name =
          tokens->Identify(BearerToken(absl::string_view(it->second.data(), it->second.size())));
      if (name.has_value()) return *name;
    }
  }
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    std::vector<grpc::string_ref> identity = auth->GetPeerIdentity();
    if (!identity.empty()) return std::string(identity.front().data(), identity.front().size());
  }
  return "";
}

}  // namespace

std::shared_ptr<CallRecord> CallTracker::Begin(RpcMethod method, std::string job_id,
                                               grpc::CallbackServerContext* context) {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    id = next_id_++;
    active_.emplace(id, nullptr);
  }
  return std::make_shared<CallRecord>(this, id, method, std::move(job_id), context, context->peer(),
                                      IdentityOf(*context, tokens_));
}

void CallTracker::SetAbort(uint64_t id, Abort abort) {
  absl::MutexLock lock(&mu_);
  if (auto it = active_.find(id); it != active_.end()) it->second = std::move(abort);
}

void CallTracker::End(uint64_t id) {
  absl::Time check = absl::InfiniteFuture();
  // Destroyed after the lock: the abort closure may own what holds a CallRecord, whose
  // destructor takes mu_.
  Abort dropped;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = active_.find(id); it != active_.end()) {
      dropped = std::move(it->second);
      active_.erase(it);
    }
    if (!active_.empty() || quiet_timers_ == nullptr) return;
    idle_since_ = absl::Now();
    quiet_done_ = false;
    if (quiet_check_pending_) return;
    quiet_check_pending_ = true;
    check = idle_since_ + quiet_;
  }
  ScheduleQuietCheck(check);
}

void CallTracker::OnQuiet(Timers* timers, absl::Duration quiet, std::function<void()> fn) {
  quiet_timers_ = timers;
  quiet_ = quiet;
  on_quiet_ = std::move(fn);
}

// Outside mu_: the timers' lock is taken while callbacks that own call records are destroyed,
// and a record's destructor takes mu_.
void CallTracker::ScheduleQuietCheck(absl::Time when) {
  // Pending callbacks die with the timers, which this tracker outlives.
  quiet_timers_->Schedule(when, [this] { CheckQuiet(); });
}

void CallTracker::CheckQuiet() {
  bool run = false;
  absl::Time again = absl::InfiniteFuture();
  {
    absl::MutexLock lock(&mu_);
    quiet_check_pending_ = false;
    // Calls are active (the last to end schedules the next check), or done for this spell.
    if (!active_.empty() || quiet_done_) return;
    if (absl::Now() >= idle_since_ + quiet_) {
      quiet_done_ = true;
      run = true;
    } else {  // calls came and went since the check was set
      quiet_check_pending_ = true;
      again = idle_since_ + quiet_;
    }
  }
  if (run) {
    on_quiet_();
  } else {
    ScheduleQuietCheck(again);
  }
}

void CallTracker::RecordBorn() {
  absl::MutexLock lock(&mu_);
  ++records_;
}

void CallTracker::RecordGone() {
  absl::MutexLock lock(&mu_);
  --records_;
}

bool CallTracker::WaitRecordsGone(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return records_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&gone), deadline);
}

int CallTracker::active() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(active_.size());
}

bool CallTracker::WaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle_or_hurried = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return active_.empty() || hurry_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&idle_or_hurried), deadline);
  return active_.empty();
}

bool CallTracker::WaitHurried(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&hurry_), deadline);
}

void CallTracker::Hurry() {
  absl::MutexLock lock(&mu_);
  hurry_ = true;
}

void CallTracker::AbortAll(const grpc::Status& status) {
  std::vector<Abort> aborts;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, abort] : active_) {
      if (abort) aborts.push_back(abort);
    }
  }
  // Outside the lock: an abort finishes its call, whose OnDone ends the record.
  for (const Abort& abort : aborts) abort(status);
}

void CallTracker::AbortOne(uint64_t id, const grpc::Status& status) {
  Abort abort;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end() || !it->second) return;
    abort = it->second;
  }
  abort(status);  // outside the lock, as in AbortAll
}

CallRecord::CallRecord(CallTracker* tracker, uint64_t id, RpcMethod method, std::string job_id,
                       grpc::CallbackServerContext* context, std::string peer, std::string identity)
    : tracker_(tracker),
      id_(id),
      method_(method),
      job_id_(std::move(job_id)),
      context_(context),
      peer_(std::move(peer)),
      identity_(std::move(identity)),
      client_(ClientKey(peer_, identity_)) {
  tracker_->RecordBorn();
}

void CallRecord::Received(uint64_t bytes) {
  tracker_->metrics().CountReceivedBytes(method_, bytes);
  absl::MutexLock lock(&mu_);
  received_bytes_ += bytes;
}

void CallRecord::SetShape(const v1::DataShape& shape) {
  absl::MutexLock lock(&mu_);
  rows_ = shape.rows();
  cols_ = shape.cols();
}

void CallRecord::Refuse(const absl::Status& status) {
  const RejectReason reason = ReasonOf(status);
  tracker_->metrics().CountRejected(reason);
  AddRetryHint(context_, status, tracker_->retry_after());
  absl::MutexLock lock(&mu_);
  refused_ = std::string(RejectReasonName(reason));
}

void CallRecord::Queued() {
  absl::MutexLock lock(&mu_);
  job_ = JobState::kQueued;
  queued_at_ = absl::Now();
}

void CallRecord::Started() {
  absl::MutexLock lock(&mu_);
  if (job_ != JobState::kQueued) return;
  job_ = JobState::kRunning;
  started_at_ = absl::Now();
  tracker_->metrics().ObserveQueueWait(method_, started_at_ - queued_at_);
}

void CallRecord::Finished() {
  absl::MutexLock lock(&mu_);
  if (job_ != JobState::kRunning) return;
  job_ = JobState::kFinished;
  finished_at_ = absl::Now();
  tracker_->metrics().ObserveRun(method_, finished_at_ - started_at_);
  if (done_) EmitLocked();
}

void CallRecord::Reserved(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  reserved_bytes_ = bytes;
}

void CallRecord::AddIterations(uint64_t n) {
  if (n == 0) return;
  tracker_->metrics().CountIterations(method_, n);
  absl::MutexLock lock(&mu_);
  iterations_ += n;
}

void CallRecord::Done(const grpc::Status& status) {
  tracker_->metrics().CountCall(RpcMethodName(method_), status.error_code());
  tracker_->End(id_);
  absl::MutexLock lock(&mu_);
  if (done_) return;
  done_ = true;
  done_at_ = absl::Now();
  status_ = status;
  // A running job stops within a row block once its call has ended; its line waits for it,
  // so that the run time is known.
  if (job_ != JobState::kRunning) EmitLocked();
}

void CallRecord::EmitLocked() {
  if (emitted_) return;
  emitted_ = true;
  const std::string outcome =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status_.error_code()));
  const bool ran = job_ == JobState::kFinished;
  const absl::Time end = ran ? std::max(finished_at_, done_at_) : done_at_;
  const spdlog::level::level_enum level = status_.error_code() == grpc::StatusCode::INTERNAL ||
                                                  status_.error_code() == grpc::StatusCode::UNKNOWN
                                              ? spdlog::level::warn
                                              : spdlog::level::info;
  Log(level, "call",
      {{"method", RpcMethodName(method_)},
       {"job_id", job_id_},
       {"peer", peer_},
       {"identity", identity_},
       {"rows", rows_},
       {"cols", cols_},
       {"received_bytes", received_bytes_},
       {"reserved_bytes", reserved_bytes_},
       {"outcome", outcome},
       {"message", status_.error_message()},
       {"rejected", refused_},
       {"iterations", iterations_},
       {"queue_wait_s", ran ? absl::ToDoubleSeconds(started_at_ - queued_at_) : 0.0},
       {"run_s", ran ? absl::ToDoubleSeconds(finished_at_ - started_at_) : 0.0},
       {"duration_s", absl::ToDoubleSeconds(end - begin_)}});
}

}  // namespace emfit::server
