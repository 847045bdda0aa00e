#include "server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <malloc.h>

#include <algorithm>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "emfit/base/status_macros.h"
#include "logging.h"

namespace emfit::server {
namespace {

// gRPC's own shutdown deadline comes this long after our grace period: by then our calls have
// been ended with a status that says why; gRPC's forced cancel is a backstop only.
constexpr absl::Duration kShutdownBackstop = absl::Seconds(5);

// How long the server must have had no call before it gives freed memory back to the system.
constexpr absl::Duration kQuietTrimAfter = absl::Seconds(1);

// The keepalive interval for --max_stall: a quarter of it, between 20 ms and 5 minutes.
int KeepaliveMillis(absl::Duration max_stall) {
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(max_stall / 4), 20, 5 * 60 * 1000));
}

}  // namespace

Server::~Server() {
  Shutdown();
  if (metrics_ != nullptr) {  // no collection may outlive the queue
    metrics_->StopServing();
    metrics_->SetSampler(nullptr);
  }
  {
    absl::MutexLock lock(&watch_mu_);
    stop_watching_ = true;
  }
  if (token_watcher_.joinable()) token_watcher_.join();
}

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
  if (options.metrics_port < -1 || options.metrics_port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--metrics_port: must be between -1 and 65535, got %d", options.metrics_port));
  }
  if (options.drain_delay < absl::ZeroDuration() || options.shutdown_grace < absl::ZeroDuration() ||
      options.retry_after < absl::ZeroDuration() || options.token_poll <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--drain_delay, --shutdown_grace and --retry_after: must be >= 0; --token_poll: > 0");
  }
  if (options.limits.upload_timeout <= absl::ZeroDuration() ||
      options.limits.default_deadline <= absl::ZeroDuration() ||
      options.limits.max_job_time <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--upload_timeout, --default_deadline and --max_job_seconds: must be positive");
  }
  if (options.limits.max_calls_per_peer < 1 || !(options.limits.min_upload_rate >= 0)) {
    return absl::InvalidArgumentError(
        "--max_calls_per_peer: must be >= 1; --min_upload_rate: must be >= 0");
  }
  options_ = options;
  // Defaults derived from the machine (docs/operations.md, "Admission and limits").
  ServiceLimits& limits = options_.limits;
  if (limits.max_inflight_bytes == 0) limits.max_inflight_bytes = DefaultInflightBudget();
  if (limits.max_inflight_bytes_per_peer == 0) {
    limits.max_inflight_bytes_per_peer = limits.max_inflight_bytes / 2;
  }
  limits.job_threads = options.compute_threads + 1;
  metrics_ = std::make_unique<Metrics>();
  tokens_.reset();  // a Start that failed before may have loaded some
  if (!options.token_file.empty()) {
    absl::StatusOr<std::unique_ptr<TokenStore>> tokens = TokenStore::Load(options.token_file);
    if (!tokens.ok()) return tokens.status();
    tokens_ = *std::move(tokens);
    if (tokens_->size() == 0) {
      Log(spdlog::level::warn, "the token file holds no token: every call but health is refused",
          {{"token_file", options.token_file}});
    }
  }
  std::shared_ptr<grpc::AuthMetadataProcessor> processor;
  if (tokens_ != nullptr) {
    processor = std::make_shared<TokenAuthProcessor>(tokens_.get(), metrics_.get());
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(TransportOptions{options.host, options.allow_insecure, options.tls_cert,
                                             options.tls_key, options.tls_client_ca},
                            std::move(processor));
  if (!credentials.ok()) return credentials.status();

  timers_.reset();  // a pending callback of an earlier Start may refer to its tracker
  calls_ = std::make_unique<CallTracker>(metrics_.get(), tokens_.get(), options.retry_after);
  admission_ = std::make_unique<Admission>(Admission::Limits{
      limits.max_inflight_bytes, limits.max_inflight_bytes_per_peer, limits.max_calls_per_peer});
  timers_ = std::make_unique<Timers>();
  pool_ = std::make_unique<ThreadPool>(options.compute_threads);
  queue_ = std::make_unique<JobQueue>(options.workers, options.queue, options.heartbeat);
  service_ = std::make_unique<FitService>(limits, queue_.get(), pool_.get(), calls_.get(),
                                          admission_.get(), timers_.get());
  // Calls free their memory on many threads, into heaps that glibc does not shrink by itself:
  // after a burst of calls the freed memory would stay resident. Once the server has been
  // quiet for a moment, give it back (malloc_trim also releases the free pages inside the
  // heaps). Not while calls run: see kTrimAfterBytes (job_reactor.h).
  calls_->OnQuiet(timers_.get(), kQuietTrimAfter, [] {
    malloc_trim(0);
    Log(spdlog::level::debug, "memory trimmed: no call for a while",
        {{"quiet_s", absl::ToDoubleSeconds(kQuietTrimAfter)}});
  });

  metrics_->SetSampler([this] {
    Metrics::Sample s;
    s.queued = queue_->queued();
    s.busy = queue_->running();
    s.workers = queue_->workers();
    s.inflight_bytes = service_->inflight_bytes();
    s.inflight_budget = options_.limits.max_inflight_bytes;
    s.active_calls = calls_->active();
    s.serving = serving_.load();
    return s;
  });
  if (options.metrics_port != 0) {
    EMFIT_RETURN_IF_ERROR(metrics_->Serve(options.host, std::max(0, options.metrics_port)));
  }

  health_ = std::make_unique<HealthService>(std::vector<std::string>{"", kHealthServiceName});
  grpc::EnableDefaultHealthCheckService(false);  // ours instead (health_service.h says why)
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrFormat("%s:%d", options.host, options.port);
  builder.AddListeningPort(address, *credentials, &port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  // Keepalive pings on connections with calls, four per --max_stall. Besides finding dead
  // peers, a ping makes the client's transport send the flow-control window updates it holds
  // back until it writes something; those updates are how a reader's progress reaches the
  // server, so with them a slow but steady reader is seen as such (fit_session.h, PostWait).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, KeepaliveMillis(limits.max_stall));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // while uploads run too
  builder.RegisterService(service_.get());
  builder.RegisterService(health_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrFormat("cannot listen on %s", address));
  }
  SetServing(true);
  if (tokens_ != nullptr) token_watcher_ = std::thread([this] { WatchTokenFile(); });
  const char* transport =
      !options.tls_cert.empty() ? (!options.tls_client_ca.empty() ? "mtls" : "tls") : "plaintext";
  Log(spdlog::level::info, "emfitd listening",
      {{"host", options.host},
       {"port", port_},
       {"transport", transport},
       {"tokens", tokens_ != nullptr},
       {"metrics_port", metrics_->port()},
       {"workers", options.workers},
       {"queue", options.queue},
       {"compute_threads", options.compute_threads},
       {"max_inflight_bytes", limits.max_inflight_bytes},
       {"max_inflight_bytes_per_peer", limits.max_inflight_bytes_per_peer},
       {"max_calls_per_peer", limits.max_calls_per_peer}});
  return absl::OkStatus();
}

void Server::SetServing(bool serving) {
  serving_.store(serving);
  health_->SetServing(serving);
}

void Server::Drain() {
  if (shut_down_ || server_ == nullptr) return;
  SetServing(false);
  Log(spdlog::level::info, "draining: health is NOT_SERVING, calls are still accepted",
      {{"drain_delay_s", absl::ToDoubleSeconds(options_.drain_delay)}});
  calls_->WaitHurried(absl::Now() + options_.drain_delay);
  Shutdown();
}

void Server::Shutdown() {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  SetServing(false);
  Log(spdlog::level::info, "stopping: new calls are refused",
      {{"running", queue_->running()},
       {"queued", queue_->queued()},
       {"active_calls", calls_->active()},
       {"shutdown_grace_s", absl::ToDoubleSeconds(options_.shutdown_grace)}});
  const absl::Time grace_end = absl::Now() + options_.shutdown_grace;
  // gRPC closes the listener and refuses new calls at once, then waits for the running ones.
  std::thread stop(
      [this, grace_end] { server_->Shutdown(absl::ToChronoTime(grace_end + kShutdownBackstop)); });
  // Watch streams end with the listener (after the NOT_SERVING they were sent), so that
  // gRPC's shutdown does not wait for them.
  health_->EndWatches(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
  if (!calls_->WaitIdle(grace_end)) {
    Log(spdlog::level::info, "grace period over: cancelling the calls still running",
        {{"active_calls", calls_->active()}});
    calls_->AbortAll(grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrFormat("the server is shutting down: the call was cancelled after the grace "
                        "period (--shutdown_grace=%s)",
                        absl::FormatDuration(options_.shutdown_grace))));
  }
  stop.join();
  // Cancelled jobs stop within one row block. First: the workers are joined here, so every job
  // (and what its closure holds: the call's record, and its reservation in the admission, which
  // a closure may destroy after the record) is gone before WaitRecordsGone below.
  queue_->Shutdown();
  server_->Wait();
  // gRPC has run every reactor's OnDone; wait, too, until each call's reactor and job are gone
  // with what they hold (admission slots and reservations, timers), before they are destroyed.
  if (!calls_->WaitRecordsGone(absl::Now() + kShutdownBackstop)) {
    Log(spdlog::level::warn, "calls still alive after the shutdown", {});
  }
  Log(spdlog::level::info, "emfitd stopped", {});
}

void Server::Hurry() {
  if (calls_ != nullptr) calls_->Hurry();
}

absl::Status Server::ReloadTokens() {
  if (tokens_ == nullptr) return absl::OkStatus();
  absl::Status status = tokens_->Reload();
  if (status.ok()) {
    Log(spdlog::level::info, "tokens reloaded",
        {{"token_file", tokens_->path()}, {"tokens", tokens_->size()}});
  } else {
    Log(spdlog::level::err, "token file not reloaded; the previous tokens stay in force",
        {{"error", status.message()}});
  }
  return status;
}

void Server::WatchTokenFile() {
  std::string last_error;  // logged once, not at every poll
  for (;;) {
    {
      absl::MutexLock lock(&watch_mu_);
      if (watch_mu_.AwaitWithTimeout(absl::Condition(&stop_watching_), options_.token_poll)) {
        return;
      }
    }
    const uint64_t before = tokens_->generation();
    absl::Status status = tokens_->ReloadIfChanged();
    if (!status.ok()) {
      if (status.message() != last_error) {
        Log(spdlog::level::err, "token file not reloaded; the previous tokens stay in force",
            {{"error", status.message()}});
      }
      last_error = std::string(status.message());
      continue;
    }
    last_error.clear();
    if (tokens_->generation() != before) {
      Log(spdlog::level::info, "tokens reloaded (the file changed)",
          {{"token_file", tokens_->path()}, {"tokens", tokens_->size()}});
    }
  }
}

}  // namespace emfit::server
