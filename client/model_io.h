#ifndef EMFIT_CLIENT_MODEL_IO_H_
#define EMFIT_CLIENT_MODEL_IO_H_

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "emfit/v1/emfit.pb.h"

namespace emfit::client {

// `message` as JSON with the proto field names (what `emfit ... --out` writes).
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);
// Writes `message` as JSON to `path` (given by the flag `flag`; "-": standard output) through
// an OutFile (out_file.h): a file is replaced whole or not at all. Errors name the flag, the file
// and the reason (FAILED_PRECONDITION; UNAVAILABLE is not used: nothing here is the server's).
absl::Status WriteJson(const google::protobuf::Message& message, absl::string_view flag,
                       const std::string& path);

// Reads a model from JSON: a FitResult (its model), a SelectionResult (its best model) or a
// bare Model, as the CLI writes them.
absl::StatusOr<v1::Model> ReadModelJson(const std::string& path);

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_MODEL_IO_H_
