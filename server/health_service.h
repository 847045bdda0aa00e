// grpc.health.v1.Health for emfitd: Check and Watch per service name, NOT_SERVING while
// draining, and Watch streams that end when the server stops listening. gRPC's default health
// service keeps Watch streams open until its shutdown deadline, which would hold every
// shutdown for the whole grace period while a balancer watches.
#ifndef EMFIT_SERVER_HEALTH_SERVICE_H_
#define EMFIT_SERVER_HEALTH_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "fit_session.h"
#include "health_check/health.grpc.pb.h"

namespace emfit::server {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  using Request = grpc::health::v1::HealthCheckRequest;
  using Response = grpc::health::v1::HealthCheckResponse;

  // Answers for `services` (e.g. "" for the server and "emfit.v1.EmFitService"), all
  // NOT_SERVING until SetServing(true); other names are SERVICE_UNKNOWN.
  explicit HealthService(const std::vector<std::string>& services);

  // Sets every service's status; Watch streams receive the change.
  void SetServing(bool serving);
  // Ends every Watch stream with `status` once its last status is written; later Watch calls
  // end at once. Status changes after this are not sent.
  void EndWatches(const grpc::Status& status);

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context, const Request* request,
                                  Response* response) override;
  grpc::ServerWriteReactor<Response>* Watch(grpc::CallbackServerContext* context,
                                            const Request* request) override;

 private:
  class Watcher;
  using Session = StreamSession<Request, Response, grpc::ServerWriteReactor<Response>>;
  Response::ServingStatus StatusLocked(const std::string& service) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Remove(const std::shared_ptr<Session>& session);

  // Serialises the status updates sent to watchers (so that they arrive in order); never held
  // by reactor callbacks.
  absl::Mutex update_mu_;
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(update_mu_);
  std::map<std::string, bool> serving_ ABSL_GUARDED_BY(mu_);
  std::map<std::shared_ptr<Session>, std::string> watchers_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_HEALTH_SERVICE_H_
