// emfitd: the emfit gRPC server.
#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {
const emfit::server::ServerOptions kDefaults;
const int kCores = std::max(1u, std::thread::hardware_concurrency());
}  // namespace

ABSL_FLAG(std::string, host, kDefaults.host, "Address to listen on.");
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
ABSL_FLAG(uint64_t, max_inflight_bytes, kDefaults.limits.max_inflight_bytes,
          "Data bytes held by all calls together; more are refused with RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, shutdown_grace, kDefaults.shutdown_grace,
          "On SIGINT/SIGTERM, running fits may finish within this; then they are cancelled.");
ABSL_FLAG(absl::Duration, max_stall, kDefaults.limits.max_stall,
          "A call whose client reads no response for this long is ended.");
ABSL_FLAG(absl::Duration, heartbeat, kDefaults.heartbeat,
          "Interval of heartbeat events to fits waiting in the queue; 'inf' disables them.");
ABSL_FLAG(std::string, log_level, "info", "spdlog level: trace, debug, info, warn, error, off.");

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
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  const bool v4 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
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
  // glibc heap per thread they fragmented and the server's peak crept up call after call. Two
  // shared heaps reuse the freed chunks (docs/benchmarks.md). A fixed mmap threshold would also
  // do, but it sends Eigen's matrix-product buffers through mmap and slows fits down.
  mallopt(M_ARENA_MAX, 2);
  // Debian's Abseil is built without NDEBUG, so by default every absl::Mutex acquisition also
  // updates a process-wide lock-order graph (deadlock detection, a debugging aid) under a global
  // lock. The tests keep it; the server does not pay for it on every call.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage("emfitd: fit statistical models by EM over gRPC.");
  absl::ParseCommandLine(argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("emfitd"));
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  spdlog::info("emfitd {} build", EMFIT_VARIANT);

  // Block the stop signals in every thread; the main thread waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
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
  options.limits.max_inflight_bytes = absl::GetFlag(FLAGS_max_inflight_bytes);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.heartbeat = absl::GetFlag(FLAGS_heartbeat);
  options.limits.max_stall = absl::GetFlag(FLAGS_max_stall);

  emfit::server::Server server;
  if (absl::Status status = server.Start(options); !status.ok()) {
    spdlog::error("cannot start: {}", status.ToString());
    return 1;
  }
  if (const std::string path = absl::GetFlag(FLAGS_port_file); !path.empty()) {
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << server.port() << "\n";
    std::rename(tmp.c_str(), path.c_str());  // readers never see a partial file
  }
  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("received signal {}", signal);
  server.Shutdown();
  return 0;
}
