// emfit: command-line client of emfitd.
//
//   emfit fit       --server=HOST:PORT --data=FILE.csv --k=2 --covariance=full [--out=FILE.json]
//   emfit posterior --server=HOST:PORT --model=FILE.json --data=FILE.csv [--out=FILE.csv]
//   emfit score     --server=HOST:PORT --model=FILE.json --data=FILE.csv [--out=FILE.json]
//   emfit select    --server=HOST:PORT --data=FILE.csv --k=1..9 --covariance=full,diag
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "csv.h"
#include "fit_client.h"
#include "model_io.h"
#include "progress.h"

ABSL_FLAG(std::string, server, "localhost:50051", "emfitd address, HOST:PORT.");
ABSL_FLAG(std::string, data, "", "CSV file with one row per observation.");
ABSL_FLAG(std::string, header, "auto", "Whether the CSV has a header line: auto, yes, no.");
ABSL_FLAG(std::string, delimiter, ",", "CSV cell delimiter (one character).");
ABSL_FLAG(std::string, weights, "",
          "CSV column (name, or 1-based index) holding non-negative row weights.");
ABSL_FLAG(std::string, family, "gmm", "Model family: gmm.");
ABSL_FLAG(std::string, k, "2",
          "Number of components. For select: a list or range, e.g. 1..9 or 1,2,4.");
ABSL_FLAG(std::string, covariance, "full",
          "Covariance type: full, diag, tied, spherical (select: a comma list).");
ABSL_FLAG(std::optional<double>, reg_covar, std::nullopt,
          "Added to the diagonal of every covariance (>= 0); unset: the server's default (1e-6).");
ABSL_FLAG(std::string, init, "kmeans",
          "Initialisation: kmeans, k-means++, random_from_data, random.");
ABSL_FLAG(std::string, init_model, "",
          "Warm start from this JSON (a result written by --out, or a model).");
ABSL_FLAG(std::string, fix, "",
          "Parameters held at the --init_model values: a comma list of weights, means, "
          "covariances.");
ABSL_FLAG(std::string, acceleration, "none", "EM acceleration: none or squarem.");
ABSL_FLAG(std::optional<int>, max_iter, std::nullopt,
          "Maximum EM iterations per restart; unset: the server's default (100).");
ABSL_FLAG(std::optional<double>, tol, std::nullopt,
          "Stop when the mean log-likelihood changes by less than this (and is not projected to "
          "rise by more); 0 runs max_iter; unset: the server's default (1e-6).");
ABSL_FLAG(int, n_init, 1, "Restarts; the best final log-likelihood is kept.");
ABSL_FLAG(uint64_t, seed, 0, "Seed of all random choices.");
ABSL_FLAG(std::string, model, "", "posterior, score: the model JSON (a result or a model).");
ABSL_FLAG(std::string, criterion, "bic", "select: bic or aic (lower is better).");
ABSL_FLAG(std::string, out, "",
          "Write the result here: JSON for fit, score and select; CSV for posterior "
          "(default stdout).");
ABSL_FLAG(std::string, progress, "auto", "Progress display: auto, line, log, none.");
ABSL_FLAG(int, chunk_bytes, 256 << 10, "Bytes of data per streamed message.");
ABSL_FLAG(double, timeout, 0, "Call deadline in seconds; 0 means none.");

namespace emfit::client {
namespace {

constexpr char kUsage[] =
    "emfit: fit models by EM on an emfitd server.\n\n"
    "  emfit fit       --server=HOST:PORT --data=FILE.csv --k=2 --covariance=full "
    "[--out=FILE.json]\n"
    "  emfit posterior --server=HOST:PORT --model=FILE.json --data=FILE.csv [--out=FILE.csv]\n"
    "  emfit score     --server=HOST:PORT --model=FILE.json --data=FILE.csv\n"
    "  emfit select    --server=HOST:PORT --data=FILE.csv --k=1..9 "
    "--covariance=full,diag,tied,spherical\n\n"
    "Run with --helpfull for every flag.\n";

int Report(const absl::Status& status) {
  std::fprintf(stderr, "emfit: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "emfit: %s\n", message.c_str());
  return 2;
}

absl::StatusOr<v1::CovarianceType> ParseCovariance(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "full") return v1::COVARIANCE_TYPE_FULL;
  if (n == "diag") return v1::COVARIANCE_TYPE_DIAG;
  if (n == "tied") return v1::COVARIANCE_TYPE_TIED;
  if (n == "spherical") return v1::COVARIANCE_TYPE_SPHERICAL;
  return absl::InvalidArgumentError(
      absl::StrFormat("--covariance: must be one of full, diag, tied, spherical; got '%s'", name));
}

absl::StatusOr<v1::InitMethod> ParseInit(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "kmeans") return v1::INIT_METHOD_KMEANS;
  if (n == "k-means++" || n == "kmeans++") return v1::INIT_METHOD_KMEANS_PLUS_PLUS;
  if (n == "random_from_data") return v1::INIT_METHOD_RANDOM_FROM_DATA;
  if (n == "random") return v1::INIT_METHOD_RANDOM;
  return absl::InvalidArgumentError(absl::StrFormat(
      "--init: must be one of kmeans, k-means++, random_from_data, random; got '%s'", name));
}

absl::StatusOr<ProgressMode> ParseProgress(const std::string& name) {
  if (name == "auto") return ProgressMode::kAuto;
  if (name == "line") return ProgressMode::kLine;
  if (name == "log") return ProgressMode::kLog;
  if (name == "none") return ProgressMode::kNone;
  return absl::InvalidArgumentError(
      absl::StrFormat("--progress: must be one of auto, line, log, none; got '%s'", name));
}

// "1..9", "1,2,5" or "3".
absl::StatusOr<std::vector<uint32_t>> ParseKList(const std::string& text) {
  constexpr uint64_t kMaxCandidates = 10000;
  std::vector<uint32_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> range = absl::StrSplit(part, "..");
    uint64_t lo = 0, hi = 0;
    if (range.size() == 1 && absl::SimpleAtoi(range[0], &lo)) {
      hi = lo;
    } else if (range.size() != 2 || !absl::SimpleAtoi(range[0], &lo) ||
               !absl::SimpleAtoi(range[1], &hi) || hi < lo) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--k: expected a number, a list or a range like 1..9; got '%s'", text));
    }
    if (hi > UINT32_MAX || out.size() + (hi - lo + 1) > kMaxCandidates) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--k: at most %d values below 2^32; got '%s'", kMaxCandidates, text));
    }
    for (uint64_t k = lo; k <= hi; ++k) out.push_back(static_cast<uint32_t>(k));
  }
  if (out.empty() || out.front() == 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--k: must be >= 1; got '%s'", text));
  }
  return out;
}

absl::StatusOr<CsvOptions> CsvFlags() {
  CsvOptions o;
  const std::string header = absl::GetFlag(FLAGS_header);
  if (header == "auto") {
    o.header = HeaderMode::kAuto;
  } else if (header == "yes") {
    o.header = HeaderMode::kYes;
  } else if (header == "no") {
    o.header = HeaderMode::kNo;
  } else {
    return absl::InvalidArgumentError("--header: must be auto, yes or no");
  }
  const std::string delimiter = absl::GetFlag(FLAGS_delimiter);
  if (delimiter.size() != 1) return absl::InvalidArgumentError("--delimiter: one character");
  o.delimiter = delimiter[0];
  return o;
}

// The --data table as streamed values; fills `shape`.
absl::StatusOr<std::vector<double>> LoadData(v1::DataShape* shape) {
  if (absl::GetFlag(FLAGS_data).empty()) {
    return absl::InvalidArgumentError("--data: a CSV file is required");
  }
  absl::StatusOr<CsvOptions> csv = CsvFlags();
  if (!csv.ok()) return csv.status();
  absl::StatusOr<Table> table = ReadCsvFile(absl::GetFlag(FLAGS_data), *csv);
  if (!table.ok()) return table.status();
  absl::StatusOr<int> weights = FindColumn(*table, absl::GetFlag(FLAGS_weights));
  if (!weights.ok()) return weights.status();
  std::fprintf(stderr, "read %s: %zu rows x %zu columns%s\n", absl::GetFlag(FLAGS_data).c_str(),
               table->rows, table->cols, *weights >= 0 ? " (one holds weights)" : "");
  return StreamValues(*table, *weights, shape);
}

absl::StatusOr<v1::FitOptions> OptionsFlags() {
  const std::optional<int> max_iter = absl::GetFlag(FLAGS_max_iter);
  const std::optional<double> tol = absl::GetFlag(FLAGS_tol);
  if (max_iter.has_value() && *max_iter < 0) {
    return absl::InvalidArgumentError("--max_iter: >= 0");
  }
  if (absl::GetFlag(FLAGS_n_init) < 1) return absl::InvalidArgumentError("--n_init: >= 1");
  v1::FitOptions o;
  if (max_iter.has_value()) o.set_max_iter(static_cast<uint32_t>(*max_iter));
  if (tol.has_value()) o.set_tol(*tol);
  o.set_n_init(static_cast<uint32_t>(absl::GetFlag(FLAGS_n_init)));
  o.set_seed(absl::GetFlag(FLAGS_seed));
  const std::string acc = absl::AsciiStrToLower(absl::GetFlag(FLAGS_acceleration));
  if (acc == "none") {
    o.set_acceleration(v1::ACCELERATION_NONE);
  } else if (acc == "squarem") {
    o.set_acceleration(v1::ACCELERATION_SQUAREM);
  } else {
    return absl::InvalidArgumentError("--acceleration: must be none or squarem");
  }
  return o;
}

absl::StatusOr<v1::GaussianMixtureSpec> GmmFlags() {
  if (absl::GetFlag(FLAGS_family) != "gmm") {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--family: only gmm is available in this version, got '%s'", absl::GetFlag(FLAGS_family)));
  }
  v1::GaussianMixtureSpec spec;
  absl::StatusOr<v1::InitMethod> init = ParseInit(absl::GetFlag(FLAGS_init));
  if (!init.ok()) return init.status();
  spec.set_init(*init);
  if (const std::optional<double> reg = absl::GetFlag(FLAGS_reg_covar); reg.has_value()) {
    spec.set_reg_covar(*reg);
  }
  for (absl::string_view f : absl::StrSplit(absl::GetFlag(FLAGS_fix), ',', absl::SkipEmpty())) {
    if (f == "weights") {
      spec.set_fix_weights(true);
    } else if (f == "means") {
      spec.set_fix_means(true);
    } else if (f == "covariances") {
      spec.set_fix_covariances(true);
    } else {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--fix: expected a comma list of weights, means, covariances; got '%s'", f));
    }
  }
  return spec;
}

CallOptions CallFlags() {
  CallOptions call;
  call.chunk_values = std::max<size_t>(1, absl::GetFlag(FLAGS_chunk_bytes) / sizeof(double));
  if (absl::GetFlag(FLAGS_timeout) > 0) call.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout));
  return call;
}

// Evaluates a StatusOr expression; on error reports it and returns 1 from the command.
#define EMFIT_CLI_TRY(lhs, expr)                        \
  auto lhs##_or = (expr);                               \
  if (!lhs##_or.ok()) return Report(lhs##_or.status()); \
  auto& lhs = *lhs##_or

int RunFit() {
  v1::FitHeader header;
  EMFIT_CLI_TRY(values, LoadData(header.mutable_shape()));
  EMFIT_CLI_TRY(spec, GmmFlags());
  EMFIT_CLI_TRY(options, OptionsFlags());
  EMFIT_CLI_TRY(covariance, ParseCovariance(absl::GetFlag(FLAGS_covariance)));
  EMFIT_CLI_TRY(progress_mode, ParseProgress(absl::GetFlag(FLAGS_progress)));
  uint32_t k = 0;
  if (!absl::SimpleAtoi(absl::GetFlag(FLAGS_k), &k) || k < 1) {
    return Usage("--k: must be a number >= 1 for fit");
  }
  spec.set_k(k);
  spec.set_covariance_type(covariance);
  *header.mutable_spec()->mutable_gmm() = spec;
  *header.mutable_options() = options;
  if (const std::string path = absl::GetFlag(FLAGS_init_model); !path.empty()) {
    EMFIT_CLI_TRY(model, ReadModelJson(path));
    *header.mutable_init() = model;
  }
  std::fprintf(stderr, "fitting on %s\n", absl::GetFlag(FLAGS_server).c_str());
  FitClient client(FitClient::Connect(absl::GetFlag(FLAGS_server)));
  ProgressPrinter progress(progress_mode);
  absl::StatusOr<v1::FitResult> result = client.Fit(
      header, values, [&](const v1::FitEvent& e) { progress.OnEvent(e); }, CallFlags());
  progress.Close();
  if (!result.ok()) return Report(result.status());
  std::printf("%s", FormatResult(*result, header.shape().column_names()).c_str());
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
    if (absl::Status s = WriteJson(*result, out); !s.ok()) return Report(s);
    std::fprintf(stderr, "wrote %s\n", out.c_str());
  }
  return 0;
}

absl::StatusOr<v1::PosteriorHeader> PosteriorHeaderFlags(std::vector<double>* values) {
  if (absl::GetFlag(FLAGS_model).empty()) {
    return absl::InvalidArgumentError(
        "--model: a model JSON (e.g. from emfit fit --out) is required");
  }
  v1::PosteriorHeader header;
  absl::StatusOr<v1::Model> model = ReadModelJson(absl::GetFlag(FLAGS_model));
  if (!model.ok()) return model.status();
  *header.mutable_model() = *model;
  absl::StatusOr<std::vector<double>> data = LoadData(header.mutable_shape());
  if (!data.ok()) return data.status();
  *values = *std::move(data);
  return header;
}

int RunPosterior() {
  std::vector<double> values;
  EMFIT_CLI_TRY(header, PosteriorHeaderFlags(&values));
  const std::string path = absl::GetFlag(FLAGS_out);
  std::FILE* out = path.empty() ? stdout : std::fopen(path.c_str(), "w");
  if (out == nullptr) return Report(absl::UnavailableError("--out: cannot write " + path));
  const uint32_t k = header.model().gmm().means().rows();
  for (uint32_t c = 0; c < k; ++c) std::fprintf(out, "r%u,", c);
  std::fprintf(out, "log_likelihood,label\n");
  FitClient client(FitClient::Connect(absl::GetFlag(FLAGS_server)));
  uint64_t rows = 0;
  absl::Status status = client.Posterior(
      header, values,
      [&](const v1::PosteriorResponse& r) {
        const v1::Matrix& m = r.responsibilities();
        for (uint32_t i = 0; i < m.rows(); ++i) {
          for (uint32_t c = 0; c < m.cols(); ++c) {
            std::fprintf(out, "%.17g,", m.values(i * m.cols() + c));
          }
          std::fprintf(out, "%.17g,%u\n", r.log_likelihood(i), r.labels(i));
        }
        rows += m.rows();
      },
      CallFlags());
  if (out != stdout) std::fclose(out);
  if (!status.ok()) return Report(status);
  std::fprintf(stderr, "posteriors of %lu rows%s%s\n", static_cast<unsigned long>(rows),
               path.empty() ? "" : " written to ", path.c_str());
  return 0;
}

int RunScore() {
  std::vector<double> values;
  EMFIT_CLI_TRY(header, PosteriorHeaderFlags(&values));
  FitClient client(FitClient::Connect(absl::GetFlag(FLAGS_server)));
  absl::StatusOr<v1::ScoreResponse> score = client.Score(header, values, CallFlags());
  if (!score.ok()) return Report(score.status());
  std::printf(
      "log-likelihood %.6f (%.6f per row)  BIC %.4f  AIC %.4f  free parameters %lu  "
      "rows %lu\n",
      score->log_likelihood(), score->mean_log_likelihood(), score->bic(), score->aic(),
      static_cast<unsigned long>(score->num_free_parameters()),
      static_cast<unsigned long>(score->rows()));
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
    if (absl::Status s = WriteJson(*score, out); !s.ok()) return Report(s);
  }
  return 0;
}

int RunSelect() {
  v1::SelectModelHeader header;
  EMFIT_CLI_TRY(values, LoadData(header.mutable_shape()));
  EMFIT_CLI_TRY(spec, GmmFlags());
  EMFIT_CLI_TRY(options, OptionsFlags());
  EMFIT_CLI_TRY(ks, ParseKList(absl::GetFlag(FLAGS_k)));
  EMFIT_CLI_TRY(progress_mode, ParseProgress(absl::GetFlag(FLAGS_progress)));
  *header.mutable_gmm() = spec;
  *header.mutable_options() = options;
  for (uint32_t k : ks) header.add_k(k);
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_covariance), ',')) {
    EMFIT_CLI_TRY(type, ParseCovariance(t));
    header.add_covariance_types(type);
  }
  const std::string criterion = absl::AsciiStrToLower(absl::GetFlag(FLAGS_criterion));
  if (criterion != "bic" && criterion != "aic") return Usage("--criterion: bic or aic");
  header.set_criterion(criterion == "aic" ? v1::CRITERION_AIC : v1::CRITERION_BIC);
  FitClient client(FitClient::Connect(absl::GetFlag(FLAGS_server)));
  const bool show = progress_mode != ProgressMode::kNone;
  absl::StatusOr<v1::SelectionResult> result = client.SelectModel(
      header, values,
      [&](const v1::SelectModelEvent& e) {
        if (!show) return;
        if (e.has_accepted()) {
          std::fprintf(stderr, "accepted as %s: %d candidates\n", e.accepted().job_id().c_str(),
                       header.k_size() * header.covariance_types_size());
        } else if (e.has_candidate_done()) {
          const v1::Candidate& c = e.candidate_done();
          std::fprintf(stderr, "candidate %2u  k=%-3u %-9s %s\n", c.index(), c.k(),
                       v1::CovarianceType_Name(c.covariance_type()).substr(16).c_str(),
                       c.error().empty()
                           ? absl::StrFormat("log-likelihood %.4f  BIC %.4f  %u iterations",
                                             c.summary().log_likelihood(), c.summary().bic(),
                                             c.summary().iterations())
                                 .c_str()
                           : ("failed: " + c.error()).c_str());
        } else if (e.has_warning()) {
          std::fprintf(stderr, "warning [%s]: %s\n", e.warning().code().c_str(),
                       e.warning().message().c_str());
        }
      },
      CallFlags());
  if (!result.ok()) return Report(result.status());
  std::printf("%-5s %-10s %16s %14s %14s %6s  %s\n", "k", "covariance", "log-likelihood", "BIC",
              "AIC", "params", "outcome");
  for (const v1::Candidate& c : result->candidates()) {
    const std::string type = v1::CovarianceType_Name(c.covariance_type()).substr(16);
    if (!c.error().empty()) {
      std::printf("%-5u %-10s %s\n", c.k(), absl::AsciiStrToLower(type).c_str(), c.error().c_str());
      continue;
    }
    std::printf("%-5u %-10s %16.4f %14.4f %14.4f %6lu  %s%s\n", c.k(),
                absl::AsciiStrToLower(type).c_str(), c.summary().log_likelihood(),
                c.summary().bic(), c.summary().aic(),
                static_cast<unsigned long>(c.summary().num_free_parameters()),
                v1::TerminationReason_Name(c.summary().reason()).substr(19).c_str(),
                c.index() == result->best() ? "  <- best" : "");
  }
  std::printf(
      "\nbest by %s: k=%u, covariance %s\n\n%s", criterion.c_str(),
      result->candidates(result->best()).k(),
      absl::AsciiStrToLower(
          v1::CovarianceType_Name(result->candidates(result->best()).covariance_type()).substr(16))
          .c_str(),
      FormatResult(result->best_fit(), header.shape().column_names()).c_str());
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
    if (absl::Status s = WriteJson(*result, out); !s.ok()) return Report(s);
    std::fprintf(stderr, "wrote %s\n", out.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace emfit::client

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG: absl::Mutex (which gRPC locks with too) would keep
  // a process-wide lock-order graph for deadlock detection on every acquisition.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(emfit::client::kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::fprintf(stderr, "%s", emfit::client::kUsage);
    return 2;
  }
  const std::string command = args[1];
  if (command == "fit") return emfit::client::RunFit();
  if (command == "posterior") return emfit::client::RunPosterior();
  if (command == "score") return emfit::client::RunScore();
  if (command == "select") return emfit::client::RunSelect();
  std::fprintf(stderr, "emfit: unknown command '%s'\n\n%s", command.c_str(), emfit::client::kUsage);
  return 2;
}
