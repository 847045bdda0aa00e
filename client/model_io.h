#ifndef EMFIT_CLIENT_MODEL_IO_H_
#define EMFIT_CLIENT_MODEL_IO_H_

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/statusor.h"
#include "csv.h"
#include "emfit/v1/emfit.pb.h"

namespace emfit::client {

// Writes `message` as JSON with the proto field names (what `emfit ... --out` writes).
absl::Status WriteJson(const google::protobuf::Message& message, const std::string& path);

// Reads a model from JSON: a FitResult (its model), a SelectionResult (its best model) or a
// bare Model, as the CLI writes them.
absl::StatusOr<v1::Model> ReadModelJson(const std::string& path);

// The values to stream for `table`: row-major, and with `weight_column` >= 0 that column moved
// to the end of each row (DataShape.weight_column). Fills `shape` accordingly.
std::vector<double> StreamValues(const Table& table, int weight_column, v1::DataShape* shape);

// Resolves a column given by name or by 1-based index; -1 for an empty `spec`.
absl::StatusOr<int> FindColumn(const Table& table, const std::string& spec);

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_MODEL_IO_H_
