#ifndef EMFIT_SERVER_SERVER_H_
#define EMFIT_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "auth.h"
#include "call_record.h"
#include "emfit/exec/thread_pool.h"
#include "fit_service.h"
#include "health_service.h"
#include "job_queue.h"
#include "metrics.h"
#include "service_limits.h"

namespace emfit::server {

// The name under which the health service reports the EmFitService ("" reports the server).
inline constexpr char kHealthServiceName[] = "emfit.v1.EmFitService";

// Everything `emfitd` can be told; main.cc binds one flag to each field.
struct ServerOptions {
  std::string host = "127.0.0.1";   // listen address (loopback unless told otherwise)
  int port = 50051;                 // 0 picks a free port (see Server::port())
  int workers = 2;                  // fits running at once
  int queue = 256;                  // fits waiting for a worker before RESOURCE_EXHAUSTED
  int compute_threads = 1;          // threads shared by all fits for row blocks (callers help)
  int max_message_bytes = 4 << 20;  // largest request message accepted
  ServiceLimits limits;
  absl::Duration shutdown_grace = absl::Seconds(10);  // running fits may finish within this
  absl::Duration heartbeat = absl::Seconds(10);       // heartbeat events while a fit waits

  // Security (docs/operations.md). TLS when tls_cert and tls_key are set; mTLS with
  // tls_client_ca. Without TLS, `host` must be a loopback address unless allow_insecure.
  bool allow_insecure = false;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // Bearer tokens (TokenStore's format); empty: no tokens. Re-read when the file changes,
  // checked every token_poll.
  std::string token_file;
  absl::Duration token_poll = absl::Seconds(2);

  // Prometheus metrics on host:metrics_port; 0: off; -1: any free port (Server::metrics_port()).
  int metrics_port = 0;
  // Drain (Server::Drain): after health turns NOT_SERVING, calls are still accepted this long
  // so that load balancers notice; then new calls are refused.
  absl::Duration drain_delay = absl::Seconds(5);
  // The retry hint of a call refused because the queue or the in-flight budget is full.
  absl::Duration retry_after = absl::Seconds(1);
};

// emfitd: the EmFitService plus the health service and server reflection, with TLS,
// bearer tokens, metrics, structured call logs and a drain for orderly shutdown.
class Server {
 public:
  Server() = default;
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  absl::Status Start(const ServerOptions& options);
  // The bound port (useful with port 0).
  int port() const { return port_; }
  // The bound metrics port; 0 when metrics are off.
  int metrics_port() const { return metrics_ != nullptr ? metrics_->port() : 0; }
  // The job queue and the service, for observation (tests, metrics).
  const JobQueue& queue() const { return *queue_; }
  const FitService& service() const { return *service_; }
  Metrics& metrics() const { return *metrics_; }
  // The bearer tokens in force; null without a token file.
  const TokenStore* tokens() const { return tokens_.get(); }
  // Whether health reports SERVING.
  bool serving() const { return serving_.load(); }

  // The orderly stop (SIGTERM): health turns NOT_SERVING at once; calls are still accepted for
  // --drain_delay; then Shutdown(). Blocks until the server has stopped.
  void Drain();
  // Health goes NOT_SERVING, no new calls are accepted (the listener closes), running calls
  // get the grace period; calls still running then are ended with UNAVAILABLE ("the server is
  // shutting down"); workers are joined. Idempotent.
  void Shutdown();
  // Cuts the drain delay and the grace period short: running calls are ended at once (a
  // second stop signal). Thread-safe; callable before or during Drain/Shutdown.
  void Hurry();
  // Re-reads the token file (SIGHUP). No-op without one.
  absl::Status ReloadTokens();

 private:
  void SetServing(bool serving);
  void WatchTokenFile();

  ServerOptions options_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<TokenStore> tokens_;
  std::unique_ptr<CallTracker> calls_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<JobQueue> queue_;
  std::unique_ptr<FitService> service_;
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::atomic<bool> serving_{false};
  bool shut_down_ = false;
  absl::Mutex watch_mu_;
  bool stop_watching_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread token_watcher_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_SERVER_H_
