// emfit_bench_many_clients: many concurrent small fits against one emfitd (issue 4, "many
// clients"). Starts emfitd (the real binary, given by --emfitd) on a free loopback port and
// connects --clients channels; then, --cycles times: times one small fit alone (--alone
// repeats, median), and runs --clients concurrent clients (threads started before the clock
// starts) that each run the same fit --rounds times in a row. Per cycle it reports the
// throughput against the pool's capacity, and the median over the cycles:
//   capacity   = workers / t_alone           (fits per second if the workers never idle)
//   throughput = clients * rounds / t_all
//   efficiency = throughput / capacity       (issue 4 asks for >= 0.9) and the failures (0).
//   fitting_share = throughput * t_fit / workers: the part of the workers' time spent fitting,
//                with t_fit the server's own fit time (FitSummary.elapsed_seconds) alone.
//   busy_share = the server's fit times under load, summed, / (workers * t_all): the part of
//                the workers' time inside a fit while the clients ran (fits that ran slower
//                under load count in full).
// The clients share the machine with the server; client_cpu_share is the part of all cores
// they used while the clock ran. --client_nice runs them at a lower priority (e.g. 19), so
// that they use only what the server leaves, as clients on other machines would.
//
//   emfit_bench_many_clients --emfitd=build/server/emfitd [--clients=64] [--workers=2]
//       [--rows=2000] [--k=3] [--iters=50] [--rounds=1] [--cycles=3] [--alone=15]
//       [--client_nice=0]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bench_common.h"
#include "fit_client.h"

namespace emfit::bench {
namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// CPU seconds (user + system) of this process so far: every client thread.
double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + 1e-6 * t.tv_usec; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  const std::string emfitd = flags.Str("emfitd");
  const int clients = static_cast<int>(flags.Int("clients", 64));
  const int workers = static_cast<int>(flags.Int("workers", 2));
  const int64_t rows = flags.Int("rows", 2000);
  const int k = static_cast<int>(flags.Int("k", 3));
  const int iters = static_cast<int>(flags.Int("iters", 50));
  const int alone_repeats = static_cast<int>(flags.Int("alone", 15));
  const int rounds = static_cast<int>(flags.Int("rounds", 1));
  const int client_nice = static_cast<int>(flags.Int("client_nice", 0));
  const int cycles = static_cast<int>(flags.Int("cycles", 3));
  flags.Check();

  char dir_template[] = "/tmp/emfit-many-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string port_file = dir + "/port";
  const pid_t server = fork();
  if (server == 0) {
    const std::string port_flag = "--port_file=" + port_file;
    const std::string workers_flag = "--workers=" + std::to_string(workers);
    const std::string queue_flag = "--queue=" + std::to_string(clients);
    execl(emfitd.c_str(), emfitd.c_str(), "--host=127.0.0.1", "--port=0", port_flag.c_str(),
          workers_flag.c_str(), queue_flag.c_str(), "--compute_threads=0", "--log_level=warn",
          "--drain_delay=0s", static_cast<char*>(nullptr));
    std::perror("execl");
    _exit(127);
  }
  // As the emfit CLI does (client/main.cc): no lock-order graph on every absl::Mutex.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Before any gRPC thread exists, so that every thread of the clients inherits it.
  if (client_nice != 0 && setpriority(PRIO_PROCESS, 0, client_nice) != 0) {
    std::perror("setpriority");
  }
  int port = 0;
  for (int i = 0; i < 300 && port == 0; ++i) {
    std::ifstream in(port_file);
    if (!(in >> port)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (port == 0) Die("emfitd did not start");

  // Data: k well-separated 2-D clusters, seeded.
  std::mt19937_64 rng(11);
  std::normal_distribution<double> z;
  std::vector<double> values;
  for (int64_t i = 0; i < rows; ++i) {
    values.push_back(6.0 * (i % k) + z(rng));
    values.push_back(3.0 * (i % k) + z(rng));
  }
  v1::FitHeader header;
  header.mutable_spec()->mutable_gmm()->set_k(k);
  header.mutable_shape()->set_rows(rows);
  header.mutable_shape()->set_cols(2);
  header.mutable_options()->set_tol(0);
  header.mutable_options()->set_max_iter(iters);

  const std::string target = "127.0.0.1:" + std::to_string(port);
  client::FitClient client(client::FitClient::Connect(target));
  if (!client.Fit(header, values).ok()) Die("warm-up fit failed");

  // One channel per client, as separate processes would have, connected before the clock
  // starts (clients elsewhere would already be connected).
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < clients; ++c) {
    channels.push_back(client::FitClient::Connect(target));
    if (!channels.back()->WaitForConnected(std::chrono::system_clock::now() +
                                           std::chrono::seconds(10))) {
      Die("a client channel did not connect");
    }
  }
  std::atomic<int> failures{0};
  std::vector<double> efficiencies;
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  for (int cycle = 0; cycle < cycles; ++cycle) {
    std::vector<double> alone, fit_alone;
    for (int r = 0; r < alone_repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<v1::FitResult> result = client.Fit(header, values);
      if (!result.ok()) Die("fit failed");
      alone.push_back(Seconds(start));
      fit_alone.push_back(result->summary().elapsed_seconds());
    }
    std::sort(alone.begin(), alone.end());
    std::sort(fit_alone.begin(), fit_alone.end());
    const double t_alone = alone[alone.size() / 2];
    const double t_fit = fit_alone[fit_alone.size() / 2];

    // Every client thread waits at the start line, so the clock measures the fits, not thread
    // creation.
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<double> fit_seconds(clients, 0.0);  // the server's fit times, per client
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        client::FitClient mine(channels[c]);
        ++ready;
        while (!go.load()) std::this_thread::yield();
        for (int round = 0; round < rounds; ++round) {
          absl::StatusOr<v1::FitResult> r = mine.Fit(header, values);
          if (!r.ok()) {
            std::fprintf(stderr, "client failed: %s\n", r.status().ToString().c_str());
            ++failures;
            continue;
          }
          fit_seconds[c] += r->summary().elapsed_seconds();
        }
      });
    }
    while (ready.load() < clients) std::this_thread::yield();
    const double cpu_before = CpuSeconds();
    const auto start = std::chrono::steady_clock::now();
    go.store(true);
    for (auto& t : threads) t.join();
    const double t_all = Seconds(start);
    const double client_cpu = CpuSeconds() - cpu_before;
    double busy = 0;
    for (double seconds : fit_seconds) busy += seconds;

    const double capacity = workers / t_alone;
    const double throughput = static_cast<double>(clients) * rounds / t_all;
    efficiencies.push_back(throughput / capacity);
    std::printf(
        "{\"cycle\": %d, \"clients\": %d, \"rounds\": %d, \"workers\": %d, \"rows\": %ld, "
        "\"k\": %d, \"iters\": %d, \"client_nice\": %d, \"seconds_alone\": %.6f, "
        "\"seconds_all\": %.6f, \"capacity_fits_per_s\": %.2f, \"throughput_fits_per_s\": %.2f, "
        "\"efficiency\": %.3f, \"seconds_fit_alone\": %.6f, \"fitting_share\": %.3f, "
        "\"busy_share\": %.3f, \"client_cpu_share\": %.3f, \"failures\": %d}\n",
        cycle, clients, rounds, workers, static_cast<long>(rows), k, iters, client_nice, t_alone,
        t_all, capacity, throughput, throughput / capacity, t_fit, throughput * t_fit / workers,
        busy / (workers * t_all), client_cpu / (cores * t_all), failures.load());
    std::fflush(stdout);
  }
  kill(server, SIGTERM);
  waitpid(server, nullptr, 0);
  std::sort(efficiencies.begin(), efficiencies.end());
  std::printf("{\"median_efficiency\": %.3f, \"failures\": %d}\n",
              efficiencies[efficiencies.size() / 2], failures.load());
  return failures.load() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace emfit::bench

int main(int argc, char** argv) { return emfit::bench::Main(argc, argv); }
