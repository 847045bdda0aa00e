// emfit: command-line client of emfitd.
//
//   emfit fit --server=HOST:PORT --data=FILE.csv --k=2 --covariance=full [--out=model.json]
#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "csv.h"
#include "fit_client.h"
#include "progress.h"

ABSL_FLAG(std::string, server, "localhost:50051", "emfitd address, HOST:PORT.");
ABSL_FLAG(std::string, data, "", "CSV file with one row per observation.");
ABSL_FLAG(std::string, header, "auto", "Whether the CSV has a header line: auto, yes, no.");
ABSL_FLAG(std::string, delimiter, ",", "CSV cell delimiter (one character).");
ABSL_FLAG(std::string, family, "gmm", "Model family: gmm.");
ABSL_FLAG(int, k, 2, "Number of components (gmm) or hidden states.");
ABSL_FLAG(std::string, covariance, "full", "Covariance type: full, diag, tied, spherical.");
ABSL_FLAG(double, reg_covar, 1e-6, "Added to the diagonal of every covariance (>= 0).");
ABSL_FLAG(std::string, init, "kmeans",
          "Initialisation: kmeans, k-means++, random_from_data, random.");
ABSL_FLAG(int, max_iter, 100, "Maximum EM iterations per restart.");
ABSL_FLAG(double, tol, 1e-3,
          "Stop when the mean log-likelihood changes by less than this; 0 runs max_iter.");
ABSL_FLAG(int, n_init, 1, "Restarts; the best final log-likelihood is kept.");
ABSL_FLAG(uint64_t, seed, 0, "Seed of all random choices.");
ABSL_FLAG(std::string, out, "", "Write the result (model + summary) as JSON to this file.");
ABSL_FLAG(std::string, progress, "auto", "Progress display: auto, line, log, none.");
ABSL_FLAG(int, chunk_bytes, 256 << 10, "Bytes of data per streamed message.");
ABSL_FLAG(double, timeout, 0, "Call deadline in seconds; 0 means none.");

namespace emfit::client {
namespace {

constexpr char kUsage[] =
    "emfit: fit models by EM on an emfitd server.\n\n"
    "  emfit fit --server=HOST:PORT --data=FILE.csv --k=2 --covariance=full [--out=FILE.json]\n\n"
    "Flags (--helpfull lists all): --family --k --covariance --reg_covar --init --max_iter --tol\n"
    "--n_init --seed --out --progress --header --delimiter --chunk_bytes --timeout\n";

int Fail(const std::string& what) {
  std::fprintf(stderr, "emfit: %s\n", what.c_str());
  return 1;
}

absl::StatusOr<v1::CovarianceType> CovarianceFlag(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "full") return v1::COVARIANCE_TYPE_FULL;
  if (n == "diag") return v1::COVARIANCE_TYPE_DIAG;
  if (n == "tied") return v1::COVARIANCE_TYPE_TIED;
  if (n == "spherical") return v1::COVARIANCE_TYPE_SPHERICAL;
  return absl::InvalidArgumentError(
      absl::StrFormat("--covariance: must be one of full, diag, tied, spherical; got '%s'", name));
}

absl::StatusOr<v1::InitMethod> InitFlag(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "kmeans") return v1::INIT_METHOD_KMEANS;
  if (n == "k-means++" || n == "kmeans++") return v1::INIT_METHOD_KMEANS_PLUS_PLUS;
  if (n == "random_from_data") return v1::INIT_METHOD_RANDOM_FROM_DATA;
  if (n == "random") return v1::INIT_METHOD_RANDOM;
  return absl::InvalidArgumentError(absl::StrFormat(
      "--init: must be one of kmeans, k-means++, random_from_data, random; got '%s'", name));
}

absl::StatusOr<ProgressMode> ProgressFlag(const std::string& name) {
  if (name == "auto") return ProgressMode::kAuto;
  if (name == "line") return ProgressMode::kLine;
  if (name == "log") return ProgressMode::kLog;
  if (name == "none") return ProgressMode::kNone;
  return absl::InvalidArgumentError(
      absl::StrFormat("--progress: must be one of auto, line, log, none; got '%s'", name));
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

absl::Status WriteJson(const google::protobuf::Message& message, const std::string& path) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) return absl::InternalError(std::string(status.message()));
  std::ofstream out(path);
  out << json;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrFormat("--out: cannot write '%s'", path));
  return absl::OkStatus();
}

int RunFit() {
  if (absl::GetFlag(FLAGS_data).empty()) return Fail("--data: a CSV file is required");
  if (absl::GetFlag(FLAGS_family) != "gmm") {
    return Fail(absl::StrFormat("--family: only gmm is available in this version, got '%s'",
                                absl::GetFlag(FLAGS_family)));
  }
  if (absl::GetFlag(FLAGS_k) < 1) return Fail("--k: must be >= 1");
  if (absl::GetFlag(FLAGS_max_iter) < 0) return Fail("--max_iter: must be >= 0");
  if (absl::GetFlag(FLAGS_n_init) < 1) return Fail("--n_init: must be >= 1");
  absl::StatusOr<CsvOptions> csv_options = CsvFlags();
  if (!csv_options.ok()) return Fail(std::string(csv_options.status().message()));
  absl::StatusOr<v1::CovarianceType> covariance = CovarianceFlag(absl::GetFlag(FLAGS_covariance));
  if (!covariance.ok()) return Fail(std::string(covariance.status().message()));
  absl::StatusOr<v1::InitMethod> init = InitFlag(absl::GetFlag(FLAGS_init));
  if (!init.ok()) return Fail(std::string(init.status().message()));
  absl::StatusOr<ProgressMode> progress_mode = ProgressFlag(absl::GetFlag(FLAGS_progress));
  if (!progress_mode.ok()) return Fail(std::string(progress_mode.status().message()));

  absl::StatusOr<Table> table = ReadCsvFile(absl::GetFlag(FLAGS_data), *csv_options);
  if (!table.ok()) return Fail(std::string(table.status().message()));

  v1::FitHeader header;
  v1::GaussianMixtureSpec* gmm = header.mutable_spec()->mutable_gmm();
  gmm->set_k(static_cast<uint32_t>(absl::GetFlag(FLAGS_k)));
  gmm->set_covariance_type(*covariance);
  gmm->set_reg_covar(absl::GetFlag(FLAGS_reg_covar));
  gmm->set_init(*init);
  header.mutable_shape()->set_rows(table->rows);
  header.mutable_shape()->set_cols(static_cast<uint32_t>(table->cols));
  for (const std::string& name : table->column_names)
    header.mutable_shape()->add_column_names(name);
  header.mutable_options()->set_max_iter(static_cast<uint32_t>(absl::GetFlag(FLAGS_max_iter)));
  header.mutable_options()->set_tol(absl::GetFlag(FLAGS_tol));
  header.mutable_options()->set_n_init(static_cast<uint32_t>(absl::GetFlag(FLAGS_n_init)));
  header.mutable_options()->set_seed(absl::GetFlag(FLAGS_seed));

  CallOptions call;
  call.chunk_values = std::max(1, absl::GetFlag(FLAGS_chunk_bytes)) / sizeof(double);
  if (absl::GetFlag(FLAGS_timeout) > 0) call.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout));

  std::fprintf(stderr, "fitting %s (%zu rows x %zu columns) on %s\n",
               absl::GetFlag(FLAGS_data).c_str(), table->rows, table->cols,
               absl::GetFlag(FLAGS_server).c_str());
  FitClient client(FitClient::Connect(absl::GetFlag(FLAGS_server)));
  ProgressPrinter progress(*progress_mode);
  absl::StatusOr<v1::FitResult> result = client.Fit(
      header, table->values, [&](const v1::FitEvent& e) { progress.OnEvent(e); }, call);
  progress.Close();
  if (!result.ok()) {
    return Fail(absl::StrFormat("%s: %s", absl::StatusCodeToString(result.status().code()),
                                result.status().message()));
  }
  std::printf("%s", FormatResult(*result, header.shape().column_names()).c_str());
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
    if (absl::Status s = WriteJson(*result, out); !s.ok()) return Fail(std::string(s.message()));
    std::fprintf(stderr, "wrote %s\n", out.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace emfit::client

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(emfit::client::kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::fprintf(stderr, "%s", emfit::client::kUsage);
    return 2;
  }
  const std::string command = args[1];
  if (command == "fit") return emfit::client::RunFit();
  std::fprintf(stderr, "emfit: unknown command '%s'\n\n%s", command.c_str(), emfit::client::kUsage);
  return 2;
}
