#ifndef EMFIT_SERVER_FIT_SESSION_H_
#define EMFIT_SERVER_FIT_SESSION_H_

#include <grpcpp/support/server_callback.h>

#include <cstddef>
#include <deque>
#include <functional>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "emfit/base/hand_off.h"
#include "emfit/exec/cancellation.h"

namespace emfit::server {

// State shared by a streaming reactor and the job that serves it; held by shared_ptr so that
// either may outlive the other. The job posts events and finishes the call from its own
// thread; the session keeps at most one write in flight, queues the rest in a bounded outbox
// (dropping the oldest droppable event, e.g. an intermediate iteration, for slow readers) and
// calls Finish only when no write is outstanding. After the reactor is done, everything posted
// is dropped. Thread-safe.
//
// gRPC runs the reactor's OnDone after the call's Finish on another thread, where ThreadSanitizer
// cannot see the order: the session hands off under the reactor's address before each Finish
// (emfit/base/hand_off.h), and the reactor's OnDone takes that over first.
//
// `ReactorT` is the reactor writing the events: a bidirectional one by default, or a
// grpc::ServerWriteReactor<Response> for a server-streaming call (the health service's Watch).
template <class Request, class Response,
          class ReactorT = grpc::ServerBidiReactor<Request, Response>>
class StreamSession {
 public:
  using Reactor = ReactorT;
  // `droppable(event)` says whether an event may be dropped when the outbox is full;
  // `on_post(event)`, if set, sees every event posted (e.g. to count iterations).
  StreamSession(Reactor* reactor, size_t max_outbox, std::function<bool(const Response&)> droppable,
                std::function<void(const Response&)> on_post = nullptr)
      : key_(reactor),
        reactor_(reactor),
        max_outbox_(max_outbox),
        droppable_(std::move(droppable)),
        on_post_(std::move(on_post)) {}

  const CancellationToken& token() const { return token_; }

  // True once Finish was requested (by the job, a cancel, or a failed write).
  bool finish_requested() {
    absl::MutexLock lock(&mu_);
    return finish_requested_ || reactor_ == nullptr;
  }

  // Queues `event` for the client.
  void Post(Response event) {
    if (on_post_) on_post_(event);
    Reactor* start = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (finish_requested_ || reactor_ == nullptr) return;
      if (writing_) {
        if (outbox_.size() >= max_outbox_) DropOneLocked();
        outbox_.push_back(std::move(event));
        return;
      }
      writing_ = true;
      last_progress_ = absl::Now();  // nothing was waiting for the client until now
      current_ = std::move(event);
      start = reactor_;
    }
    start->StartWrite(&current_);
  }

  // Like Post, for a stream of events that must not be dropped (e.g. posterior blocks): blocks
  // the calling job thread while `window` events are queued, so a slow reader slows the
  // producer down and memory stays bounded. The reader is stalled when no write has completed
  // for `stall` (the time without progress from the client, whatever the job did meanwhile):
  // then the call is aborted with DEADLINE_EXCEEDED (the job sees its token cancelled) and
  // false is returned. A reader's progress reaches the server as flow-control window updates,
  // which clients may hold back until they have read a few messages; the server's keepalive
  // pings (Server::Start) make them send those updates promptly. Never call it from a reactor
  // callback or a shared pool thread.
  bool PostWait(Response event, size_t window, absl::Duration stall) {
    {
      absl::MutexLock lock(&mu_);
      auto room = [this, window]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return outbox_.size() < window || finish_requested_ || reactor_ == nullptr;
      };
      // Each completed write moves the deadline on.
      while (!mu_.AwaitWithDeadline(absl::Condition(&room), last_progress_ + stall)) {
        if (absl::Now() < last_progress_ + stall) continue;
        AbortLocked(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                 absl::StrFormat("the client read no response for %s "
                                                 "(--max_stall); the call was ended",
                                                 absl::FormatDuration(stall))));
        return false;
      }
      if (finish_requested_ || reactor_ == nullptr) return false;
    }
    Post(std::move(event));
    return true;
  }

  // Ends the call with `status` once the queued events are written. The first call wins.
  void Finish(grpc::Status status) {
    Reactor* finish = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (finish_requested_ || reactor_ == nullptr) return;
      finish_requested_ = true;
      final_status_ = std::move(status);
      if (writing_ || !outbox_.empty()) return;  // OnWriteDone finishes
      finish = reactor_;
    }
    HandOff(key_);  // for OnDone
    finish->Finish(final_status_);
  }

  // Ends the call with `status` as soon as no write is in flight, discarding the queued events,
  // and cancels the job (e.g. at the end of a shutdown's grace period). The first end wins.
  void Abort(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    AbortLocked(std::move(status));
  }

  // The status the call ended (or is ending) with; OK before any end was requested.
  grpc::Status status() {
    absl::MutexLock lock(&mu_);
    return finish_requested_ ? final_status_ : grpc::Status::OK;
  }

  // Reactor callbacks.
  void OnWriteDone(bool ok) {
    Reactor* start = nullptr;
    Reactor* finish = nullptr;
    bool more = false;  // events queued behind the next write
    bool last = false;  // the next write is the last: write and finish in one step
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (reactor_ == nullptr) return;
      if (ok) last_progress_ = absl::Now();
      if (!ok) {
        // The client is gone: stop the job, drop what is queued.
        token_.Cancel();
        outbox_.clear();
        if (!finish_requested_) {
          finish_requested_ = true;
          final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
        }
      }
      if (!outbox_.empty()) {
        writing_ = true;
        current_ = std::move(outbox_.front());
        outbox_.pop_front();
        start = reactor_;
        more = !outbox_.empty();
        last = !more && finish_requested_;
      } else if (finish_requested_) {
        finish = reactor_;
      }
    }
    // Events that queued up while a write was in flight (a fast fit's iterations) go out
    // together: gRPC may hold a write with the buffer hint (up to its per-stream write buffer;
    // the write completes once held) until the next one without it, so a burst costs a few
    // sends instead of one per event, and nothing waits: the last event of the burst carries
    // no hint. The final event carries the status along.
    if (last || finish != nullptr) HandOff(key_);  // for OnDone
    if (last) {
      start->StartWriteAndFinish(&current_, grpc::WriteOptions(), final_status_);
    } else if (start != nullptr) {
      start->StartWrite(&current_,
                        more ? grpc::WriteOptions().set_buffer_hint() : grpc::WriteOptions());
    }
    if (finish != nullptr) finish->Finish(final_status_);
  }

  void OnCancel() {
    token_.Cancel();
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled"));
  }

  void OnDone() {
    token_.Cancel();
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
    outbox_.clear();
  }

 private:
  // Ends the call with `status` as soon as no write is in flight, discarding queued events,
  // and cancels the job.
  void AbortLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    token_.Cancel();
    outbox_.clear();
    if (finish_requested_ || reactor_ == nullptr) return;
    finish_requested_ = true;
    final_status_ = std::move(status);
    if (writing_) return;
    HandOff(key_);                    // for OnDone
    reactor_->Finish(final_status_);  // non-blocking; no callback runs inline
  }

  void DropOneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = outbox_.begin(); it != outbox_.end(); ++it) {
      if (droppable_(*it)) {
        outbox_.erase(it);
        return;
      }
    }
  }

  const void* const key_;  // the reactor's address, for HandOff
  CancellationToken token_;
  absl::Mutex mu_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_);
  const size_t max_outbox_;
  const std::function<bool(const Response&)> droppable_;
  const std::function<void(const Response&)> on_post_;
  std::deque<Response> outbox_ ABSL_GUARDED_BY(mu_);
  Response current_;  // the write in flight; touched only by the thread that starts it
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // Since when the client has had nothing to show for: the last completed write, or the start
  // of a write when none was in flight.
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_) = absl::Now();
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_;  // written once under mu_ before Finish
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_FIT_SESSION_H_
