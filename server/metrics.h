// emfitd's Prometheus metrics (prometheus-cpp), served over HTTP on --metrics_port. The names
// and labels are listed in docs/operations.md.
#ifndef EMFIT_SERVER_METRICS_H_
#define EMFIT_SERVER_METRICS_H_

#include <grpcpp/support/status.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "rejection.h"
#include "rpc_method.h"

namespace prometheus {
class Exposer;
}

namespace emfit::server {

// Counters and histograms are updated as calls run; gauges are read from `Sampler` at each
// scrape. Thread-safe.
class Metrics {
 public:
  // The server's state, read at each scrape.
  struct Sample {
    int queued = 0;                // jobs waiting for a worker
    int busy = 0;                  // workers running a job
    int workers = 0;               // worker threads
    uint64_t inflight_bytes = 0;   // in-flight data budget in use
    uint64_t inflight_budget = 0;  // --max_inflight_bytes
    int active_calls = 0;          // EmFitService calls not yet finished
    bool serving = false;          // health SERVING (false while draining)
  };
  using Sampler = std::function<Sample()>;

  Metrics();
  ~Metrics();  // stops serving
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Sets what the gauges read at each collection (null: nothing). `sampler` must stay callable
  // until it is replaced.
  void SetSampler(Sampler sampler);
  // Serves GET /metrics on `host`:`port` (port 0: a free one; see port()).
  absl::Status Serve(const std::string& host, int port);
  void StopServing();
  // The bound port; 0 when not serving.
  int port() const { return port_; }

  // A call of `method` (a full gRPC method name's last part, e.g. "Fit") ended with `code`.
  void CountCall(absl::string_view method, grpc::StatusCode code);
  // A call was refused before its job ran.
  void CountRejected(RejectReason reason);
  void ObserveQueueWait(RpcMethod method, absl::Duration wait);
  void ObserveRun(RpcMethod method, absl::Duration run);
  void CountIterations(RpcMethod method, uint64_t iterations);
  void CountReceivedBytes(RpcMethod method, uint64_t bytes);

  // Everything a scrape would return (the gauges sampled now).
  std::vector<prometheus::MetricFamily> Collect() const;

 private:
  class Collector;

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* calls_;
  prometheus::Family<prometheus::Counter>* rejected_;
  std::array<prometheus::Histogram*, kNumRpcMethods> queue_wait_;
  std::array<prometheus::Histogram*, kNumRpcMethods> run_;
  std::array<prometheus::Counter*, kNumRpcMethods> iterations_;
  std::array<prometheus::Counter*, kNumRpcMethods> received_bytes_;
  prometheus::Gauge* queued_;
  prometheus::Gauge* busy_;
  prometheus::Gauge* workers_;
  prometheus::Gauge* inflight_bytes_;
  prometheus::Gauge* inflight_budget_;
  prometheus::Gauge* active_calls_;
  prometheus::Gauge* serving_;
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_METRICS_H_
