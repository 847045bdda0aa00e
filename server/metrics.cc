#include "metrics.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/exposer.h"

namespace emfit::server {
namespace {

// Seconds, from 1 ms to about an hour (queue waits and job durations alike).
prometheus::Histogram::BucketBoundaries SecondsBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,
          2.5,   5,      10,    30,   60,    120,  300, 600,  1800, 3600};
}

std::string MethodLabel(RpcMethod method) { return std::string(RpcMethodName(method)); }

// civetweb's form of a listening address: IPv6 hosts in brackets.
std::string ListenAddress(const std::string& host, int port) {
  const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
  return v6 ? absl::StrFormat("[%s]:%d", host, port) : absl::StrFormat("%s:%d", host, port);
}

}  // namespace

// What the exposer scrapes: the registry, with the gauges sampled first.
class Metrics::Collector final : public prometheus::Collectable {
 public:
  explicit Collector(Metrics* metrics) : metrics_(metrics) {}

  void set_sampler(Sampler sampler) {
    absl::MutexLock lock(&mu_);
    sampler_ = std::move(sampler);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::MutexLock lock(&mu_);
    if (sampler_) {
      const Sample s = sampler_();
      metrics_->queued_->Set(s.queued);
      metrics_->busy_->Set(s.busy);
      metrics_->workers_->Set(s.workers);
      metrics_->inflight_bytes_->Set(static_cast<double>(s.inflight_bytes));
      metrics_->inflight_budget_->Set(static_cast<double>(s.inflight_budget));
      metrics_->active_calls_->Set(s.active_calls);
      metrics_->serving_->Set(s.serving ? 1 : 0);
    }
    return metrics_->registry_->Collect();
  }

 private:
  Metrics* const metrics_;
  mutable absl::Mutex mu_;
  Sampler sampler_ ABSL_GUARDED_BY(mu_);
};

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::Registry& r = *registry_;
  calls_ = &prometheus::BuildCounter()
                .Name("emfit_calls_total")
                .Help("EmFitService calls that ended, by method and gRPC status code")
                .Register(r);
  rejected_ = &prometheus::BuildCounter()
                   .Name("emfit_rejected_calls_total")
                   .Help("Calls refused before their job ran, by reason")
                   .Register(r);
  auto& queue_wait = prometheus::BuildHistogram()
                         .Name("emfit_queue_wait_seconds")
                         .Help("Time a job waited in the queue for a worker, by method")
                         .Register(r);
  auto& run = prometheus::BuildHistogram()
                  .Name("emfit_job_duration_seconds")
                  .Help("Time a job ran on a worker (a fit's duration for Fit), by method")
                  .Register(r);
  auto& iterations = prometheus::BuildCounter()
                         .Name("emfit_em_iterations_total")
                         .Help("EM iterations run (over all restarts and candidates), by method")
                         .Register(r);
  auto& received = prometheus::BuildCounter()
                       .Name("emfit_received_bytes_total")
                       .Help("Bytes of request messages received, by method")
                       .Register(r);
  for (RpcMethod m :
       {RpcMethod::kFit, RpcMethod::kPosterior, RpcMethod::kScore, RpcMethod::kSelectModel}) {
    const int i = static_cast<int>(m);
    queue_wait_[i] = &queue_wait.Add({{"method", MethodLabel(m)}}, SecondsBuckets());
    run_[i] = &run.Add({{"method", MethodLabel(m)}}, SecondsBuckets());
    iterations_[i] = &iterations.Add({{"method", MethodLabel(m)}});
    received_bytes_[i] = &received.Add({{"method", MethodLabel(m)}});
  }
  auto gauge = [&r](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
  };
  queued_ = gauge("emfit_queue_depth", "Jobs waiting for a worker");
  busy_ = gauge("emfit_workers_busy", "Workers running a job");
  workers_ = gauge("emfit_workers", "Worker threads (--workers)");
  inflight_bytes_ = gauge("emfit_inflight_bytes", "In-flight data budget in use, bytes");
  inflight_budget_ =
      gauge("emfit_inflight_budget_bytes", "In-flight data budget (--max_inflight_bytes)");
  active_calls_ = gauge("emfit_active_calls", "EmFitService calls in progress");
  serving_ = gauge("emfit_serving", "1 while health is SERVING, 0 while draining");
  collector_ = std::make_shared<Collector>(this);
}

Metrics::~Metrics() { StopServing(); }

void Metrics::SetSampler(Sampler sampler) { collector_->set_sampler(std::move(sampler)); }

absl::Status Metrics::Serve(const std::string& host, int port) {
  if (exposer_ != nullptr) return absl::FailedPreconditionError("metrics: already serving");
  const std::string address = ListenAddress(host, port);
  // prometheus-cpp reports a failed bind by throwing; this is the boundary where it becomes a
  // status.
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrFormat("--metrics_port: cannot listen on %s: %s", address, e.what()));
  }
  const std::vector<int> ports = exposer_->GetListeningPorts();
  if (ports.empty() || ports.front() <= 0) {
    exposer_.reset();
    return absl::UnavailableError(absl::StrFormat("--metrics_port: cannot listen on %s", address));
  }
  port_ = ports.front();
  exposer_->RegisterCollectable(collector_);
  return absl::OkStatus();
}

void Metrics::StopServing() {
  exposer_.reset();  // joins the HTTP threads: no scrape runs after this
  port_ = 0;
}

void Metrics::CountCall(absl::string_view method, grpc::StatusCode code) {
  calls_
      ->Add({{"method", std::string(method)},
             {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}})
      .Increment();
}

void Metrics::CountRejected(RejectReason reason) {
  rejected_->Add({{"reason", std::string(RejectReasonName(reason))}}).Increment();
}

void Metrics::ObserveQueueWait(RpcMethod method, absl::Duration wait) {
  queue_wait_[static_cast<int>(method)]->Observe(absl::ToDoubleSeconds(wait));
}

void Metrics::ObserveRun(RpcMethod method, absl::Duration run) {
  run_[static_cast<int>(method)]->Observe(absl::ToDoubleSeconds(run));
}

void Metrics::CountIterations(RpcMethod method, uint64_t iterations) {
  iterations_[static_cast<int>(method)]->Increment(static_cast<double>(iterations));
}

void Metrics::CountReceivedBytes(RpcMethod method, uint64_t bytes) {
  received_bytes_[static_cast<int>(method)]->Increment(static_cast<double>(bytes));
}

std::vector<prometheus::MetricFamily> Metrics::Collect() const { return collector_->Collect(); }

}  // namespace emfit::server
