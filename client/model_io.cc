#include "model_io.h"

#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace emfit::client {

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
  if (!out) return absl::UnavailableError(absl::StrFormat("cannot write '%s'", path));
  return absl::OkStatus();
}

absl::StatusOr<v1::Model> ReadModelJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot open '%s'", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string json = buffer.str();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  v1::FitResult fit;
  if (google::protobuf::util::JsonStringToMessage(json, &fit, options).ok() && fit.has_model()) {
    return fit.model();
  }
  v1::SelectionResult selection;
  if (google::protobuf::util::JsonStringToMessage(json, &selection, options).ok() &&
      selection.best_fit().has_model()) {
    return selection.best_fit().model();
  }
  v1::Model model;
  auto status = google::protobuf::util::JsonStringToMessage(json, &model, options);
  if (status.ok() && model.family_case() != v1::Model::FAMILY_NOT_SET) return model;
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: not a fit result, selection result or model in emfit's JSON (%s)", path,
                      status.ok() ? "no model family set" : std::string(status.message())));
}

std::vector<double> StreamValues(const Table& table, int weight_column, v1::DataShape* shape) {
  shape->set_rows(table.rows);
  shape->clear_column_names();
  const bool weighted = weight_column >= 0;
  shape->set_cols(static_cast<uint32_t>(table.cols - (weighted ? 1 : 0)));
  shape->set_weight_column(weighted);
  if (!table.column_names.empty()) {
    for (size_t j = 0; j < table.cols; ++j) {
      if (static_cast<int>(j) != weight_column) shape->add_column_names(table.column_names[j]);
    }
  }
  if (!weighted) return table.values;
  std::vector<double> out;
  out.reserve(table.values.size());
  for (size_t i = 0; i < table.rows; ++i) {
    const double* row = table.values.data() + i * table.cols;
    for (size_t j = 0; j < table.cols; ++j) {
      if (static_cast<int>(j) != weight_column) out.push_back(row[j]);
    }
    out.push_back(row[weight_column]);
  }
  return out;
}

absl::StatusOr<int> FindColumn(const Table& table, const std::string& spec) {
  if (spec.empty()) return -1;
  for (size_t j = 0; j < table.column_names.size(); ++j) {
    if (table.column_names[j] == spec) return static_cast<int>(j);
  }
  int index = 0;
  if (absl::SimpleAtoi(spec, &index) && index >= 1 && static_cast<size_t>(index) <= table.cols) {
    return index - 1;
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "--weights: '%s' is neither a column name of the CSV header nor an index 1..%d", spec,
      table.cols));
}

}  // namespace emfit::client
