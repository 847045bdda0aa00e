#ifndef EMFIT_SERVER_SERVER_H_
#define EMFIT_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "emfit/exec/thread_pool.h"
#include "fit_service.h"
#include "job_queue.h"
#include "service_limits.h"

namespace emfit::server {

// Everything `emfitd` can be told; main.cc binds one flag to each field.
struct ServerOptions {
  std::string host = "0.0.0.0";     // listen address
  int port = 50051;                 // 0 picks a free port (see Server::port())
  int workers = 2;                  // fits running at once
  int queue = 256;                  // fits waiting for a worker before RESOURCE_EXHAUSTED
  int compute_threads = 1;          // threads shared by all fits for row blocks (callers help)
  int max_message_bytes = 4 << 20;  // largest request message accepted
  ServiceLimits limits;
  absl::Duration shutdown_grace = absl::Seconds(10);  // running fits may finish within this
  absl::Duration heartbeat = absl::Seconds(10);       // heartbeat events while a fit waits
};

// emfitd: the EmFitService plus the gRPC health service and server reflection.
class Server {
 public:
  Server() = default;
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  absl::Status Start(const ServerOptions& options);
  // The bound port (useful with port 0).
  int port() const { return port_; }
  // The job queue and the service, for observation (tests, metrics).
  const JobQueue& queue() const { return *queue_; }
  const FitService& service() const { return *service_; }
  // Health goes NOT_SERVING, no new calls are accepted, running calls get the grace period,
  // then are cancelled; workers are joined. Idempotent.
  void Shutdown();

 private:
  ServerOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<JobQueue> queue_;
  std::unique_ptr<FitService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_SERVER_H_
