#include "model_io.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_format.h"
#include "csv.h"
#include "out_file.h"

namespace emfit::client {

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) return absl::InternalError(std::string(status.message()));
  return json;
}

absl::Status WriteJson(const google::protobuf::Message& message, absl::string_view flag,
                       const std::string& path) {
  absl::StatusOr<std::string> json = ToJson(message);
  if (!json.ok()) return json.status();
  return WriteOutFile(flag, path, *json);
}

absl::StatusOr<v1::Model> ReadModelJson(const std::string& path) {
  absl::StatusOr<std::string> json = ReadWholeFile(path);
  if (!json.ok()) return json.status();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  v1::FitResult fit;
  if (google::protobuf::util::JsonStringToMessage(*json, &fit, options).ok() && fit.has_model()) {
    return fit.model();
  }
  v1::SelectionResult selection;
  if (google::protobuf::util::JsonStringToMessage(*json, &selection, options).ok() &&
      selection.best_fit().has_model()) {
    return selection.best_fit().model();
  }
  v1::Model model;
  auto status = google::protobuf::util::JsonStringToMessage(*json, &model, options);
  if (status.ok() && model.family_case() != v1::Model::FAMILY_NOT_SET) return model;
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: not a fit result, selection result or model in emfit's JSON (%s)", path,
                      status.ok() ? "no model family set" : std::string(status.message())));
}

}  // namespace emfit::client
