#include "server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace emfit::server {

Server::~Server() { Shutdown(); }

absl::Status Server::Start(const ServerOptions& options) {
  if (options.workers < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--workers: must be >= 1, got %d", options.workers));
  }
  if (options.queue < 0 || options.compute_threads < 0) {
    return absl::InvalidArgumentError("--queue and --compute_threads: must be >= 0");
  }
  if (options.heartbeat <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--heartbeat: must be positive (or inf for none)");
  }
  if (options.limits.max_stall <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--max_stall: must be positive");
  }
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--port: must be between 0 and 65535, got %d", options.port));
  }
  options_ = options;
  pool_ = std::make_unique<ThreadPool>(options.compute_threads);
  queue_ = std::make_unique<JobQueue>(options.workers, options.queue, options.heartbeat);
  service_ = std::make_unique<FitService>(options.limits, queue_.get(), pool_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrFormat("%s:%d", options.host, options.port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrFormat("cannot listen on %s", address));
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  spdlog::info("emfitd listening on {}:{} ({} workers, queue {}, {} compute threads)", options.host,
               port_, options.workers, options.queue, options.compute_threads);
  return absl::OkStatus();
}

void Server::Shutdown() {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  spdlog::info("shutting down: {} running, {} queued; grace {}", queue_->running(),
               queue_->queued(), absl::FormatDuration(options_.shutdown_grace));
  server_->GetHealthCheckService()->SetServingStatus(false);
  // Waits for running calls up to the deadline, then cancels them; cancelled fits stop within
  // one row block and finish their calls.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.shutdown_grace));
  queue_->Shutdown();
  server_->Wait();
  spdlog::info("emfitd stopped");
}

}  // namespace emfit::server
