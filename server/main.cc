// emfitd: the emfit gRPC server.
#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "emfit/base/cpu.h"
#include "logging.h"
#include "server.h"
#include "spdlog/spdlog.h"

namespace {
const emfit::server::ServerOptions kDefaults;
const int kCores = std::max(1u, std::thread::hardware_concurrency());
}  // namespace

ABSL_FLAG(std::string, host, kDefaults.host,
          "Address to listen on; loopback by default. Any other address needs TLS (--tls_cert, "
          "--tls_key) or --allow_insecure; 0.0.0.0 or :: listens on all interfaces.");
ABSL_FLAG(int, port, kDefaults.port, "Port to listen on; 0 picks a free port.");
ABSL_FLAG(std::string, port_file, "", "If set, write the bound port to this file once serving.");
ABSL_FLAG(int, workers, kCores, "Fits that run at once (worker threads).");
ABSL_FLAG(int, queue, kDefaults.queue,
          "Fits that may wait for a worker; more are refused with RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, compute_threads, kCores - 1,
          "Threads shared by all fits for row blocks (the fit's own thread helps too).");
ABSL_FLAG(int, max_message_bytes, kDefaults.max_message_bytes,
          "Largest request message accepted, bytes.");
ABSL_FLAG(uint64_t, max_rows, kDefaults.limits.max_rows, "Most rows per request.");
ABSL_FLAG(uint32_t, max_cols, kDefaults.limits.max_cols, "Most columns per request.");
ABSL_FLAG(uint64_t, max_values, kDefaults.limits.max_values,
          "Most values (rows x cols) per request.");
ABSL_FLAG(int, max_k, kDefaults.limits.max_k, "Most components or states per model.");
ABSL_FLAG(int, max_iter_limit, kDefaults.limits.max_iter, "Largest max_iter accepted.");
ABSL_FLAG(int, max_n_init, kDefaults.limits.max_n_init, "Largest n_init accepted.");
ABSL_FLAG(int64_t, max_model_values, kDefaults.limits.max_model_values,
          "Most free parameters of one model (k, d and covariance type together).");
ABSL_FLAG(int, max_candidates, kDefaults.limits.max_candidates,
          "Most candidate models in one SelectModel call.");
ABSL_FLAG(uint64_t, max_sequences, kDefaults.limits.max_sequences,
          "Most sequences of one hidden Markov model request.");
ABSL_FLAG(uint32_t, max_symbols, kDefaults.limits.max_symbols,
          "Most categorical symbols of one hidden Markov model.");
ABSL_FLAG(uint64_t, max_newick_bytes, kDefaults.limits.max_newick_bytes,
          "Most bytes of Newick text (an Mk model's tree) per request.");
ABSL_FLAG(uint32_t, max_name_bytes, kDefaults.limits.max_name_bytes,
          "Most bytes of one row name (an Mk tip label).");
ABSL_FLAG(uint64_t, max_tips, kDefaults.limits.max_tips, "Most tips of an Mk model's tree.");
ABSL_FLAG(int, max_states, kDefaults.limits.max_states, "Most states of an Mk model.");
ABSL_FLAG(uint32_t, max_histories, kDefaults.limits.max_histories,
          "Most stochastic maps drawn by one SampleHistories call.");
ABSL_FLAG(uint64_t, max_total_iter, kDefaults.limits.max_total_iter,
          "Most EM iterations one request may ask for: n_init x max_iter (x SelectModel "
          "candidates).");
ABSL_FLAG(double, max_work, kDefaults.limits.max_work,
          "Most values one request may ask EM to visit: n_init x max_iter (x candidates) x rows "
          "x cols.");
ABSL_FLAG(uint64_t, max_inflight_bytes, kDefaults.limits.max_inflight_bytes,
          "Bytes of data and working memory held by all calls together (the in-flight budget); "
          "more are refused with RESOURCE_EXHAUSTED. 0: three quarters of the machine's memory "
          "(or of the cgroup's memory limit, when lower).");
ABSL_FLAG(uint64_t, max_inflight_bytes_per_peer, kDefaults.limits.max_inflight_bytes_per_peer,
          "Bytes of the in-flight budget one client may hold (a client: its token's or "
          "certificate's identity, else its address). 0: half of --max_inflight_bytes.");
ABSL_FLAG(int, max_calls_per_peer, kDefaults.limits.max_calls_per_peer,
          "Calls one client may have in progress at once.");
ABSL_FLAG(absl::Duration, upload_timeout, kDefaults.limits.upload_timeout,
          "A request's header must arrive within this, and its data within this plus their "
          "time at --min_upload_rate; else the call ends (DEADLINE_EXCEEDED).");
ABSL_FLAG(double, min_upload_rate, kDefaults.limits.min_upload_rate,
          "Slowest upload rate allowed, bytes per second (see --upload_timeout).");
ABSL_FLAG(double, max_job_seconds, absl::ToDoubleSeconds(kDefaults.limits.max_job_time),
          "Longest a job may run once a worker takes it; then its call ends "
          "(DEADLINE_EXCEEDED).");
ABSL_FLAG(absl::Duration, default_deadline, kDefaults.limits.default_deadline,
          "Deadline of a call that sets none, from its start.");
ABSL_FLAG(absl::Duration, shutdown_grace, kDefaults.shutdown_grace,
          "After --drain_delay, running calls may finish within this; then they are cancelled "
          "(UNAVAILABLE). A second SIGTERM/SIGINT cancels them at once.");
ABSL_FLAG(absl::Duration, drain_delay, kDefaults.drain_delay,
          "On SIGTERM/SIGINT, health turns NOT_SERVING at once and new calls are still accepted "
          "for this long (so that load balancers notice), then refused.");
ABSL_FLAG(bool, allow_insecure, kDefaults.allow_insecure,
          "Serve plaintext on a non-loopback --host (e.g. behind a TLS-terminating proxy on a "
          "private network).");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain of the server; enables TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: clients must present a certificate signed by one (mTLS).");
ABSL_FLAG(std::string, token_file, "",
          "Bearer tokens, one per line (or name:token; # comments). Every call but health needs "
          "one. Re-read on SIGHUP and when the file changes.");
ABSL_FLAG(absl::Duration, token_poll, kDefaults.token_poll,
          "How often the token file is checked for changes.");
ABSL_FLAG(int, metrics_port, kDefaults.metrics_port,
          "Serve Prometheus metrics at http://HOST:PORT/metrics on --host; 0: off, -1: any free "
          "port (logged).");
ABSL_FLAG(absl::Duration, retry_after, kDefaults.retry_after,
          "Retry hint (grpc-retry-pushback-ms) sent with RESOURCE_EXHAUSTED when the queue or "
          "the in-flight budget is full.");
ABSL_FLAG(absl::Duration, max_stall, kDefaults.limits.max_stall,
          "A call whose client reads no response for this long is ended.");
ABSL_FLAG(absl::Duration, heartbeat, kDefaults.heartbeat,
          "Interval of heartbeat events to fits waiting in the queue; 'inf' disables them.");
ABSL_FLAG(std::string, log_level, "info", "spdlog level: trace, debug, info, warn, error, off.");
ABSL_FLAG(std::string, log_format, "text",
          "text, or json: one JSON object per line (see docs/operations.md for the fields).");

#ifndef EMFIT_VARIANT
#define EMFIT_VARIANT "portable"
#endif

namespace {

// The portable build hands over to the best build next to it that the CPU can run (see
// server/CMakeLists.txt): x86-64-v4 with AVX-512 (F, BW, CD, DQ, VL), else x86-64-v3 with AVX2
// and FMA. EMFIT_PORTABLE=1 in the environment keeps the portable one.
void MaybeDispatch(char** argv) {
#if defined(EMFIT_DISPATCH) && (defined(__x86_64__) || defined(_M_X64))
  const char* keep = std::getenv("EMFIT_PORTABLE");
  if (keep != nullptr && std::string(keep) == "1") return;
  const int level = emfit::X86Level();
  if (level < 3) return;
  const bool v4 = level >= 4;
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return;
  self[n] = '\0';
  std::string path(self);
  const std::string dir = path.substr(0, path.find_last_of('/') + 1);
  for (const char* variant : {"emfitd-x86-64-v4", "emfitd-x86-64-v3"}) {
    if (std::string(variant) == "emfitd-x86-64-v4" && !v4) continue;
    path = dir + variant;
    if (access(path.c_str(), X_OK) != 0) continue;
    execv(path.c_str(), argv);  // returns only on failure: then try the next one
  }
#else
  (void)argv;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  MaybeDispatch(argv);
  // Request chunks (hundreds of KiB) are allocated and freed on gRPC's many threads; with one
  // glibc heap per thread they fragmented and the server's peak crept up call after call. One
  // shared heap reuses the freed chunks, and malloc_trim (after large jobs, and once the server
  // is quiet: server.cc) can give all of its free memory back: glibc trims the top of the main
  // heap only, so with a second heap whatever lay at its top stayed resident (docs/benchmarks.md,
  // "emfitd's memory over repeated calls"). A fixed mmap threshold would also keep the heaps
  // small, but it sends Eigen's matrix-product buffers through mmap and slows fits down.
  mallopt(M_ARENA_MAX, 1);
  // Debian's Abseil is built without NDEBUG, so by default every absl::Mutex acquisition also
  // updates a process-wide lock-order graph (deadlock detection, a debugging aid) under a global
  // lock. The tests keep it; the server does not pay for it on every call.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage("emfitd: fit statistical models by EM over gRPC.");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<emfit::server::LogFormat> log_format =
      emfit::server::ParseLogFormat(absl::GetFlag(FLAGS_log_format));
  if (!log_format.ok()) {
    std::fprintf(stderr, "emfitd: %s\n", std::string(log_format.status().message()).c_str());
    return 2;
  }
  emfit::server::InitLogging(*log_format, spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  // "emfitd portable build": the first line says which build runs (README, Development).
  emfit::server::Log(spdlog::level::info, "emfitd " EMFIT_VARIANT " build",
                     {{"build", EMFIT_VARIANT}});

  // Block the signals in every thread (those started later inherit the mask); one thread
  // waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  emfit::server::ServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.workers = absl::GetFlag(FLAGS_workers);
  options.queue = absl::GetFlag(FLAGS_queue);
  options.compute_threads = absl::GetFlag(FLAGS_compute_threads);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.limits.max_rows = absl::GetFlag(FLAGS_max_rows);
  options.limits.max_cols = absl::GetFlag(FLAGS_max_cols);
  options.limits.max_values = absl::GetFlag(FLAGS_max_values);
  options.limits.max_k = absl::GetFlag(FLAGS_max_k);
  options.limits.max_iter = absl::GetFlag(FLAGS_max_iter_limit);
  options.limits.max_n_init = absl::GetFlag(FLAGS_max_n_init);
  options.limits.max_candidates = absl::GetFlag(FLAGS_max_candidates);
  options.limits.max_model_values = absl::GetFlag(FLAGS_max_model_values);
  options.limits.max_sequences = absl::GetFlag(FLAGS_max_sequences);
  options.limits.max_symbols = absl::GetFlag(FLAGS_max_symbols);
  options.limits.max_newick_bytes = absl::GetFlag(FLAGS_max_newick_bytes);
  options.limits.max_name_bytes = absl::GetFlag(FLAGS_max_name_bytes);
  options.limits.max_tips = absl::GetFlag(FLAGS_max_tips);
  options.limits.max_states = absl::GetFlag(FLAGS_max_states);
  options.limits.max_histories = absl::GetFlag(FLAGS_max_histories);
  options.limits.max_total_iter = absl::GetFlag(FLAGS_max_total_iter);
  options.limits.max_work = absl::GetFlag(FLAGS_max_work);
  options.limits.max_inflight_bytes = absl::GetFlag(FLAGS_max_inflight_bytes);
  options.limits.max_inflight_bytes_per_peer = absl::GetFlag(FLAGS_max_inflight_bytes_per_peer);
  options.limits.max_calls_per_peer = absl::GetFlag(FLAGS_max_calls_per_peer);
  options.limits.upload_timeout = absl::GetFlag(FLAGS_upload_timeout);
  options.limits.min_upload_rate = absl::GetFlag(FLAGS_min_upload_rate);
  options.limits.max_job_time = absl::Seconds(absl::GetFlag(FLAGS_max_job_seconds));
  options.limits.default_deadline = absl::GetFlag(FLAGS_default_deadline);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.heartbeat = absl::GetFlag(FLAGS_heartbeat);
  options.limits.max_stall = absl::GetFlag(FLAGS_max_stall);
  options.drain_delay = absl::GetFlag(FLAGS_drain_delay);
  options.allow_insecure = absl::GetFlag(FLAGS_allow_insecure);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  options.token_file = absl::GetFlag(FLAGS_token_file);
  options.token_poll = absl::GetFlag(FLAGS_token_poll);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.retry_after = absl::GetFlag(FLAGS_retry_after);

  emfit::server::Server server;
  if (absl::Status status = server.Start(options); !status.ok()) {
    emfit::server::Log(
        spdlog::level::err, "cannot start",
        {{"error", status.message()}, {"code", absl::StatusCodeToString(status.code())}});
    return 1;
  }
  if (const std::string path = absl::GetFlag(FLAGS_port_file); !path.empty()) {
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << server.port() << "\n";
    std::rename(tmp.c_str(), path.c_str());  // readers never see a partial file
  }
  // The first SIGTERM or SIGINT drains the server (here, on the main thread); a second one
  // cuts the drain short; SIGHUP re-reads the token file; SIGUSR1, sent by main once the
  // server has stopped, ends the signal thread.
  absl::Notification stop;
  std::thread waiter([&server, &stop, signals] {
    for (;;) {
      int signal = 0;
      if (sigwait(&signals, &signal) != 0) continue;
      if (signal == SIGUSR1) return;
      emfit::server::Log(spdlog::level::info, "received signal", {{"signal", strsignal(signal)}});
      if (signal == SIGHUP) {
        (void)server.ReloadTokens();  // logs the outcome
      } else if (!stop.HasBeenNotified()) {
        stop.Notify();
      } else {
        server.Hurry();
      }
    }
  });
  stop.WaitForNotification();
  server.Drain();
  pthread_kill(waiter.native_handle(), SIGUSR1);
  waiter.join();
  return 0;
}
