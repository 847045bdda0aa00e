#include "family_cli.h"

#include <algorithm>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "cli_flags.h"

namespace emfit::client {

// The families, one line each (defined in family_<name>.cc).
const FamilyCli& GmmFamilyCli();
const FamilyCli& HmmFamilyCli();
const FamilyCli& MkFamilyCli();

namespace {

const std::vector<const FamilyCli*>& Families() {
  static const auto* families =
      new std::vector<const FamilyCli*>{&GmmFamilyCli(), &HmmFamilyCli(), &MkFamilyCli()};
  return *families;
}

}  // namespace

RequestData LoadedData::View() const {
  RequestData data(values);
  data.sequence_lengths = sequence_lengths;
  data.newick = newick;
  data.row_names = row_names;
  return data;
}

const FamilyCli* FindFamily(absl::string_view name) {
  for (const FamilyCli* f : Families()) {
    if (f->name() == name) return f;
  }
  return nullptr;
}

const FamilyCli* FamilyOf(const v1::Model& model) {
  const google::protobuf::FieldDescriptor* field =
      v1::Model::descriptor()->FindFieldByNumber(model.family_case());
  return field == nullptr ? nullptr : FindFamily(field->name());
}

std::string FamilyNames() {
  std::vector<std::string> names;
  for (const FamilyCli* f : Families()) names.emplace_back(f->name());
  return absl::StrJoin(names, ", ");
}

absl::Status RequireDataFlag() {
  if (!absl::GetFlag(FLAGS_data).empty()) return absl::OkStatus();
  return absl::InvalidArgumentError("--data: a CSV file is required (\"-\" reads standard input)");
}

absl::StatusOr<std::vector<uint32_t>> ParseKList(const std::string& text) {
  constexpr uint64_t kMaxCandidates = 10000;
  std::vector<uint32_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
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
  if (out.empty() || *std::min_element(out.begin(), out.end()) == 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--k: must be >= 1; got '%s'", text));
  }
  return out;
}

absl::StatusOr<v1::CovarianceType> ParseCovariance(absl::string_view name) {
  absl::StatusOr<int> v = ParseShortName(v1::CovarianceType_descriptor(), name, "--covariance");
  if (!v.ok()) return v.status();
  return static_cast<v1::CovarianceType>(*v);
}

absl::StatusOr<std::vector<v1::CovarianceType>> CovarianceListFlag() {
  std::vector<v1::CovarianceType> types;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_covariance), ',')) {
    absl::StatusOr<v1::CovarianceType> type = ParseCovariance(t);
    if (!type.ok()) return type.status();
    types.push_back(*type);
  }
  return types;
}

absl::Status CheckGaussianFitFlags(Command command, const std::vector<std::string>& fixable) {
  const std::vector<std::string> fix = absl::GetFlag(FLAGS_fix);
  if (command == Command::kSelect) {
    if (absl::Status s = ParseKList(absl::GetFlag(FLAGS_k)).status(); !s.ok()) return s;
    if (absl::Status s = CovarianceListFlag().status(); !s.ok()) return s;
    if (!fix.empty()) {
      return absl::InvalidArgumentError("--fix: select has no starting model to hold");
    }
  } else {
    uint32_t k = 0;
    if (!absl::SimpleAtoi(absl::GetFlag(FLAGS_k), &k) || k < 1) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--k: must be a number >= 1 for fit; got '%s'", absl::GetFlag(FLAGS_k)));
    }
    if (absl::Status s = ParseCovariance(absl::GetFlag(FLAGS_covariance)).status(); !s.ok()) {
      return s;
    }
    for (const std::string& f : fix) {
      if (std::find(fixable.begin(), fixable.end(), f) == fixable.end()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--fix: expected a comma list of %s; got '%s'", absl::StrJoin(fixable, ", "), f));
      }
    }
    if (!fix.empty() && absl::GetFlag(FLAGS_init_model).empty()) {
      return absl::InvalidArgumentError(
          "--fix: parameters are held at the values of a starting model: give --init_model");
    }
  }
  if (const auto reg = absl::GetFlag(FLAGS_reg_covar); reg.has_value() && !(*reg >= 0)) {
    return absl::InvalidArgumentError("--reg_covar: must be >= 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<CsvOptions> CsvOptionsFromFlags() {
  CsvOptions o;
  const std::string header = absl::GetFlag(FLAGS_header);
  o.header = header == "yes"  ? HeaderMode::kYes
             : header == "no" ? HeaderMode::kNo
                              : HeaderMode::kAuto;
  absl::StatusOr<char> delimiter = ParseDelimiter(absl::GetFlag(FLAGS_delimiter));
  if (!delimiter.ok()) return delimiter.status();
  o.delimiter = *delimiter;
  return o;
}

absl::StatusOr<TableData> LoadTableFromFlags(const std::vector<std::string>& text,
                                             bool text_features) {
  absl::StatusOr<CsvOptions> options = CsvOptionsFromFlags();
  if (!options.ok()) return options.status();
  CsvOptions& o = *options;
  o.columns = absl::GetFlag(FLAGS_columns);
  o.drop = absl::GetFlag(FLAGS_drop);
  const std::string weights = absl::GetFlag(FLAGS_weights);
  if (!weights.empty()) o.extra.push_back(weights);
  o.text = text;
  o.text_features = text_features;
  const std::string path = absl::GetFlag(FLAGS_data);
  TableData out;
  absl::StatusOr<Table> table = ReadCsvFile(path, o);
  if (!table.ok()) return table.status();
  out.table = *std::move(table);
  const Table& t = out.table;
  LoadedData& d = out.loaded;
  d.shape.set_rows(t.rows);
  d.shape.set_cols(static_cast<uint32_t>(t.features));
  d.shape.set_weight_column(!weights.empty());
  if (!t.column_names.empty()) {
    for (size_t j = 0; j < t.features; ++j) d.shape.add_column_names(t.column_names[j]);
  }
  d.values = t.values;  // features then the weight, row by row: the streamed layout
  d.description =
      absl::StrFormat("read %s: %d rows x %d columns%s", path == "-" ? "standard input" : path,
                      t.rows, t.features, weights.empty() ? "" : " and a column of weights");
  return out;
}

std::string FormatDouble(double v) { return absl::StrFormat("%.17g", v); }

std::string MatrixRow(const v1::Matrix& m, uint32_t r) {
  std::string s;
  for (uint32_t j = 0; j < m.cols(); ++j) {
    absl::StrAppend(&s, absl::StrFormat("%12.6g", m.values(r * m.cols() + j)));
  }
  return s;
}

std::string FeatureHeader(const v1::Model& model, uint32_t d) {
  std::string header = "          ";
  for (uint32_t j = 0; j < d; ++j) {
    const std::string name = j < static_cast<uint32_t>(model.feature_names_size())
                                 ? model.feature_names(j)
                                 : absl::StrCat("x", j + 1);
    absl::StrAppend(&header, absl::StrFormat("%12s", name.substr(0, 11)));
  }
  return header;
}

std::string GaussianLines(v1::CovarianceType type, const v1::Matrix& means, const v1::Matrix& cov,
                          uint32_t c) {
  const uint32_t d = means.cols();
  std::string out = absl::StrCat("  mean    ", MatrixRow(means, c), "\n");
  switch (type) {
    case v1::COVARIANCE_TYPE_FULL:
      for (uint32_t r = 0; r < d; ++r) {
        absl::StrAppend(&out, r == 0 ? "  cov     " : "          ", MatrixRow(cov, c * d + r),
                        "\n");
      }
      break;
    case v1::COVARIANCE_TYPE_DIAG:
      absl::StrAppend(&out, "  var     ", MatrixRow(cov, c), "\n");
      break;
    case v1::COVARIANCE_TYPE_SPHERICAL:
      absl::StrAppend(&out, absl::StrFormat("  var     %12.6g\n", cov.values(c)));
      break;
    default:
      break;
  }
  return out;
}

std::string TiedCovarianceLines(const v1::Matrix& covariances) {
  std::string out = "shared covariance\n";
  for (uint32_t r = 0; r < covariances.rows(); ++r) {
    absl::StrAppend(&out, "          ", MatrixRow(covariances, r), "\n");
  }
  return out;
}

}  // namespace emfit::client
