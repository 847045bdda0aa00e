// A model family in the CLI: its flags, its data, its reports. Each family implements FamilyCli
// once (family_gmm.cc, ...) and is listed in family_cli.cc's table; the commands (main.cc) are
// written once for all of them (style.md, "Adding a family").
#ifndef EMFIT_CLIENT_FAMILY_CLI_H_
#define EMFIT_CLIENT_FAMILY_CLI_H_

#include <google/protobuf/descriptor.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "csv.h"
#include "emfit/v1/emfit.pb.h"
#include "enum_names.h"
#include "out_file.h"
#include "request_data.h"

namespace emfit::client {

enum class Command { kFit, kPosterior, kScore, kSelect, kSimmap };

// A request's data as loaded from files: the streams and the shape that declares them.
struct LoadedData {
  v1::DataShape shape;
  std::vector<double> values;
  std::vector<uint64_t> sequence_lengths;
  std::string newick;
  std::vector<std::string> row_names;
  // Hidden Markov models: each sequence's id (the --sequence_column's values), for reports.
  std::vector<std::string> sequence_names;
  // What the data add to the spec of fit and select (e.g. the names of categorical symbols, the
  // states of an Mk model and its rate matrix read against them), merged into it by the
  // command.
  v1::ModelSpec spec_from_data;
  std::string description;  // e.g. "read data/faithful.csv: 272 rows x 2 columns"

  RequestData View() const;
};

// What a Posterior call ends with, besides the rows: a line for the user (standard error) and,
// for families that have one, a summary that is not per row (e.g. per-sequence figures, as CSV),
// which the command writes to --summary_out.
struct PosteriorDone {
  std::string note;
  std::string summary;
  std::string summary_what;  // e.g. "each sequence's log-likelihood"
};

// Receives a Posterior call's blocks and writes them (as CSV, ...) to its OutFile.
class PosteriorSink {
 public:
  virtual ~PosteriorSink() = default;
  // Errors: the OutFile's (a failed write).
  virtual absl::Status Block(const v1::PosteriorResponse& block) = 0;
  // After the last block of a call that succeeded.
  virtual PosteriorDone Finish() = 0;
};

class FamilyCli {
 public:
  virtual ~FamilyCli() = default;
  // The --family value, which is also the name of the family's case in Model and ModelSpec.
  virtual absl::string_view name() const = 0;
  // The family's own flags for `command`, listed by --help after the shared ones.
  virtual std::vector<std::string> Flags(Command command) const = 0;
  // Checks the family's flags for `command`; an error is a usage error (exit status 2), found
  // before any file is read.
  virtual absl::Status CheckFlags(Command command) const = 0;
  // fit: the spec. select: the template spec and the grid.
  virtual absl::StatusOr<v1::ModelSpec> SpecFromFlags() const = 0;
  virtual absl::Status GridFromFlags(v1::SelectModelHeader* header) const = 0;
  // The data of fit and select (`model` null) or of posterior and score (their model).
  virtual absl::StatusOr<LoadedData> LoadData(Command command, const v1::Model* model) const = 0;
  // The fitted parameters, readable (column names from the model's feature_names).
  virtual std::string FormatModel(const v1::Model& model) const = 0;
  // A select candidate's identity in the table (e.g. "3     tied").
  virtual std::string CandidateLabel(const v1::Candidate& candidate) const = 0;
  virtual std::string CandidateHeader() const = 0;
  // Writes posterior blocks of `model` on `data` to `out` (not owned; it outlives the sink).
  virtual std::unique_ptr<PosteriorSink> NewPosteriorSink(const v1::Model& model,
                                                          const LoadedData& data,
                                                          OutFile* out) const = 0;
  // The command's flags, shared or the family's own, that this family does not read as the
  // other flags set it up (e.g. --data for a family whose data are other files; --covariance
  // for an HMM whose --emission is not gaussian): refused when given (a usage error naming the
  // flag and Variant()), and left out of its --help.
  virtual std::vector<std::string> IgnoredFlags(Command) const { return {}; }
  // The family as the flags choose it, for messages: "--family=hmm --emission=poisson".
  virtual std::string Variant() const { return absl::StrCat("--family=", name()); }
  // What a fit's result holds beyond the model and the summary (e.g. an Mk tree summary),
  // readable; printed after FormatModel.
  virtual std::string FormatResult(const v1::FitResult&) const { return ""; }
  // Whether `emfit simmap` applies to the family's models (stochastic maps), and their summary.
  virtual bool DrawsHistories() const { return false; }
  virtual std::string FormatHistories(const v1::Model&, const v1::HistoriesSummary&) const {
    return "";
  }
};

// The family named `name` (nullptr: none), the family of a model, and the list of names.
const FamilyCli* FindFamily(absl::string_view name);
const FamilyCli* FamilyOf(const v1::Model& model);
std::string FamilyNames();

// ---- Helpers for the families ----

// The usage error of a family that reads --data when it is not given.
absl::Status RequireDataFlag();

// "1..9", "1,2,5" or "3" (--k of select).
absl::StatusOr<std::vector<uint32_t>> ParseKList(const std::string& text);

// A --covariance value: one type (full, diag, tied, spherical).
absl::StatusOr<v1::CovarianceType> ParseCovariance(absl::string_view name);
// The types of --covariance read as select's comma list.
absl::StatusOr<std::vector<v1::CovarianceType>> CovarianceListFlag();

// The checks of fit's and select's flags shared by the families with Gaussian parameters
// (mixture, HMM): --k (fit: one number >= 1; select: a list), --covariance (fit: one type;
// select: a comma list), --fix (fit: a comma list of `fixable`, held at the values of
// --init_model, which it needs; select: refused) and --reg_covar (>= 0).
absl::Status CheckGaussianFitFlags(Command command, const std::vector<std::string>& fixable);

// The CSV options that --header and --delimiter set, for every CSV file the CLI reads.
absl::StatusOr<CsvOptions> CsvOptionsFromFlags();

// Reads --data as CSV with --header, --delimiter, --columns, --drop and --weights (moved last
// in each row: DataShape.weight_column), keeping the `text` columns (names or 1-based indices)
// apart as text.
struct TableData {
  LoadedData loaded;
  Table table;  // the parsed CSV (its text columns among others)
};
// With `text_features`, the selected columns are read as text too (Table::text after the
// `text` ones; e.g. categorical symbols).
absl::StatusOr<TableData> LoadTableFromFlags(const std::vector<std::string>& text = {},
                                             bool text_features = false);

// Gaussian parameters in reports (mixture components, HMM states): the row of column names
// (the model's feature names, else x1, x2, ...), and component c's mean and covariance lines
// (tied: none; TiedCovarianceLines gives the shared one).
std::string FeatureHeader(const v1::Model& model, uint32_t d);
std::string GaussianLines(v1::CovarianceType type, const v1::Matrix& means,
                          const v1::Matrix& covariances, uint32_t c);
std::string TiedCovarianceLines(const v1::Matrix& covariances);
// One row of a matrix in columns of 12.
std::string MatrixRow(const v1::Matrix& m, uint32_t r);

// A CSV writer for posterior rows: numbers at full precision.
std::string FormatDouble(double v);

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_FAMILY_CLI_H_
