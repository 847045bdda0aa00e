// emfit_bench_loopback: the loopback contestant of bench/compare. Streams the data that
// bench/compare wrote to a running emfitd with the starting parameters in FitHeader.init, tol=0
// and exactly --iters iterations, --repeats times, each call right after the same fit
// in-process with --threads threads (inprocess_seconds), to measure the overhead; then measures
// upload throughput with max_iter=0 fits (one E-step) for each chunk size of
// --throughput_chunk_values. Prints one JSON line. A first max_iter=0 fit connects the channel and
// is not timed. Times are wall seconds on the client, from the start of the call:
//   seconds           to the end of the call (result received)
//   accepted_seconds  to the Accepted event, which the server sends once the last chunk has
//                     arrived and the job is queued, so it bounds the upload
//   server_seconds    FitSummary.elapsed_seconds, the fit as the server timed it
//
//   emfit_bench_loopback --target=127.0.0.1:PORT --data=X.f64 --init=INIT.f64 --n=N --d=D --k=K
//       --cov=full --iters=T [--repeats=3] [--threads=1] [--reg_covar=0] [--chunk_values=32768]
//       [--throughput_chunk_values=8192,32768,131072] [--throughput_repeats=3]
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench_common.h"
#include "emfit_inputs.h"
#include "fit_client.h"

namespace emfit::bench {
namespace {

v1::CovarianceType ProtoType(const std::string& cov) {
  if (cov == "full") return v1::COVARIANCE_TYPE_FULL;
  if (cov == "diag") return v1::COVARIANCE_TYPE_DIAG;
  if (cov == "tied") return v1::COVARIANCE_TYPE_TIED;
  if (cov == "spherical") return v1::COVARIANCE_TYPE_SPHERICAL;
  Die("unknown covariance type '" + cov + "'");
}

void SetMatrix(const std::vector<double>& values, int64_t rows, int64_t cols, v1::Matrix* m) {
  m->set_rows(static_cast<uint32_t>(rows));
  m->set_cols(static_cast<uint32_t>(cols));
  m->mutable_values()->Assign(values.begin(), values.end());
}

struct Call {
  double seconds = 0;
  double accepted_seconds = -1;
  double server_seconds = 0;
  int iterations = 0;
  double log_likelihood = 0;
};

Call TimedFit(client::FitClient& client, const v1::FitHeader& header,
              const std::vector<double>& values, size_t chunk_values) {
  Call call;
  client::CallOptions options;
  options.chunk_values = chunk_values;
  const double t0 = NowSeconds();
  absl::StatusOr<v1::FitResult> result = client.Fit(
      header, values,
      [&](const v1::FitEvent& event) {
        if (event.has_accepted()) call.accepted_seconds = NowSeconds() - t0;
      },
      options);
  call.seconds = NowSeconds() - t0;
  if (!result.ok()) Die("fit through emfitd: " + result.status().ToString());
  call.server_seconds = result->summary().elapsed_seconds();
  call.iterations = static_cast<int>(result->summary().iterations());
  call.log_likelihood = result->summary().log_likelihood();
  return call;
}

std::string CallsJson(const std::vector<Call>& calls) {
  std::vector<double> s, a, v;
  for (const Call& c : calls) {
    s.push_back(c.seconds);
    a.push_back(c.accepted_seconds);
    v.push_back(c.server_seconds);
  }
  return "\"seconds\": " + JsonList(s) + ", \"accepted_seconds\": " + JsonList(a) +
         ", \"server_seconds\": " + JsonList(v);
}

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  const std::string target = flags.Str("target");
  const std::string data_path = flags.Str("data");
  const std::string init_path = flags.Str("init");
  const int64_t n = flags.Int("n");
  const int64_t d = flags.Int("d");
  const int64_t k = flags.Int("k");
  const std::string cov = flags.Str("cov");
  const int iters = static_cast<int>(flags.Int("iters"));
  const int repeats = static_cast<int>(flags.Int("repeats", 3));
  const int threads = static_cast<int>(flags.Int("threads", 1));
  const double reg_covar = flags.Double("reg_covar", "0");
  const int64_t chunk_values = flags.Int("chunk_values", 32768);
  const std::vector<int64_t> throughput_chunks =
      flags.IntList("throughput_chunk_values", "8192,32768,131072");
  const int throughput_repeats = static_cast<int>(flags.Int("throughput_repeats", 3));
  flags.Check();
  if (repeats < 1) Die("--repeats must be at least 1");

  const Dataset data = LoadDataset(data_path, n, d);
  const std::vector<double> values(data.x.data(), data.x.data() + data.x.size());
  const InitParams init = ReadInit(init_path, cov, k, d);
  const FixedWorkFit fit(LoadParams(init_path, cov, k, d), iters, reg_covar);
  const std::unique_ptr<ThreadPool> pool = MakePool(threads);
  FitControls controls;
  controls.pool = pool.get();

  v1::FitHeader header;
  v1::GaussianMixtureSpec* spec = header.mutable_spec()->mutable_gmm();
  spec->set_k(static_cast<uint32_t>(k));
  spec->set_covariance_type(ProtoType(cov));
  spec->set_reg_covar(reg_covar);
  header.mutable_shape()->set_rows(static_cast<uint64_t>(n));
  header.mutable_shape()->set_cols(static_cast<uint32_t>(d));
  header.mutable_options()->set_max_iter(static_cast<uint32_t>(iters));
  header.mutable_options()->set_tol(0);
  v1::GaussianMixture* start = header.mutable_init()->mutable_gmm();
  start->set_covariance_type(ProtoType(cov));
  start->mutable_weights()->Assign(init.weights.begin(), init.weights.end());
  SetMatrix(init.means, k, d, start->mutable_means());
  const int64_t cov_cols = cov == "spherical" ? 1 : d;
  SetMatrix(init.covariances, static_cast<int64_t>(init.covariances.size()) / cov_cols, cov_cols,
            start->mutable_covariances());

  client::FitClient client(client::FitClient::Connect(target));
  v1::FitHeader upload_header = header;
  upload_header.mutable_options()->set_max_iter(0);
  // Untimed: connects the channel and warms up both processes.
  TimedFit(client, upload_header, values, static_cast<size_t>(chunk_values));

  // Each call is paired with an in-process fit of the same work just before it, so that both
  // see the same machine (the CPU may be shared); the server is idle meanwhile.
  std::vector<Call> fits;
  std::vector<double> inprocess_seconds;
  for (int r = 0; r < repeats; ++r) {
    Dataset copy = data;
    const double t0 = NowSeconds();
    absl::StatusOr<gmm::GmmFitResult> local =
        gmm::Fit(std::move(copy), fit.spec, fit.options, controls);
    inprocess_seconds.push_back(NowSeconds() - t0);
    if (!local.ok()) Die(local.status().ToString());
    fits.push_back(TimedFit(client, header, values, static_cast<size_t>(chunk_values)));
    if (fits.back().iterations != iters) {
      Die("emfitd ran " + std::to_string(fits.back().iterations) + " iterations, expected " +
          std::to_string(iters) + " (is FitHeader.init honoured?)");
    }
  }

  std::string uploads = "[";
  for (size_t c = 0; throughput_repeats > 0 && c < throughput_chunks.size(); ++c) {
    std::vector<Call> calls;
    for (int r = 0; r < throughput_repeats; ++r) {
      calls.push_back(
          TimedFit(client, upload_header, values, static_cast<size_t>(throughput_chunks[c])));
    }
    uploads += std::string(c ? ", " : "") +
               "{\"chunk_values\": " + std::to_string(throughput_chunks[c]) + ", " +
               CallsJson(calls) + "}";
  }
  uploads += "]";

  std::printf(
      "{\"contestant\": \"emfit-loopback\", \"cov\": \"%s\", \"iterations\": %d, "
      "\"log_likelihood\": %s, \"chunk_values\": %lld, %s, \"inprocess_seconds\": %s, "
      "\"payload_bytes\": %lld, \"uploads\": %s}\n",
      cov.c_str(), fits.back().iterations, Exact(fits.back().log_likelihood).c_str(),
      static_cast<long long>(chunk_values), CallsJson(fits).c_str(),
      JsonList(inprocess_seconds).c_str(),
      static_cast<long long>(n * d * static_cast<int64_t>(sizeof(double))), uploads.c_str());
  return 0;
}

}  // namespace
}  // namespace emfit::bench

int main(int argc, char** argv) { return emfit::bench::Main(argc, argv); }
