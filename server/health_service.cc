#include "health_service.h"

#include <utility>

#include "emfit/base/hand_off.h"

namespace emfit::server {

// One Watch call: the session writes the latest status (an outbox of one, every update
// droppable for a newer one) and finishes the call.
class HealthService::Watcher final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit Watcher(HealthService* service)
      : service_(service),
        session_(std::make_shared<Session>(this, /*max_outbox=*/1,
                                           [](const Response&) { return true; })) {}
  const std::shared_ptr<Session>& session() const { return session_; }

  // Hands off to OnCancel and OnDone as JobReactor does (emfit/base/hand_off.h).
  void OnWriteDone(bool ok) override {
    const Reaction reaction(this);
    session_->OnWriteDone(ok);
  }
  void OnCancel() override {
    TakeOver(this);
    const Reaction reaction(this);
    session_->OnCancel();
  }
  void OnDone() override {
    TakeOver(this);
    session_->OnDone();
    service_->Remove(session_);
    delete this;
  }

 private:
  HealthService* const service_;
  const std::shared_ptr<Session> session_;
};

HealthService::HealthService(const std::vector<std::string>& services) {
  absl::MutexLock lock(&mu_);
  for (const std::string& s : services) serving_[s] = false;
}

HealthService::Response::ServingStatus HealthService::StatusLocked(
    const std::string& service) const {
  auto it = serving_.find(service);
  if (it == serving_.end()) return Response::SERVICE_UNKNOWN;
  return it->second ? Response::SERVING : Response::NOT_SERVING;
}

void HealthService::SetServing(bool serving) {
  absl::MutexLock updating(&update_mu_);
  std::vector<std::pair<std::shared_ptr<Session>, Response>> updates;
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    for (auto& [name, status] : serving_) status = serving;
    for (const auto& [session, name] : watchers_) {
      Response r;
      r.set_status(StatusLocked(name));
      updates.emplace_back(session, std::move(r));
    }
  }
  for (auto& [session, response] : updates) session->Post(std::move(response));
}

void HealthService::EndWatches(const grpc::Status& status) {
  absl::MutexLock updating(&update_mu_);
  std::vector<std::shared_ptr<Session>> sessions;
  {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    end_status_ = status;
    for (const auto& [session, name] : watchers_) sessions.push_back(session);
  }
  for (const std::shared_ptr<Session>& session : sessions) session->Finish(status);
}

void HealthService::Remove(const std::shared_ptr<Session>& session) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(session);
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const Request* request, Response* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Response::ServingStatus status;
  {
    absl::MutexLock lock(&mu_);
    status = StatusLocked(request->service());
  }
  if (status == Response::SERVICE_UNKNOWN) {
    // The protocol's answer to Check for a service the server does not know.
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
    return reactor;
  }
  response->set_status(status);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthService::Response>* HealthService::Watch(
    grpc::CallbackServerContext* /*context*/, const Request* request) {
  auto* watcher = new Watcher(this);
  absl::MutexLock updating(&update_mu_);
  Response first;
  grpc::Status ended;
  bool end = false;
  {
    absl::MutexLock lock(&mu_);
    first.set_status(StatusLocked(request->service()));
    end = ended_;
    ended = end_status_;
    if (!end) watchers_.emplace(watcher->session(), request->service());
  }
  // A Watch of an unknown service stays open (SERVICE_UNKNOWN), as the protocol says.
  watcher->session()->Post(std::move(first));
  if (end) watcher->session()->Finish(ended);
  HandOff(watcher);  // for its OnCancel
  return watcher;
}

}  // namespace emfit::server
