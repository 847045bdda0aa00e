#ifndef EMFIT_SERVER_GRPC_STATUS_H_
#define EMFIT_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace emfit::server {

// The only place where absl::Status becomes grpc::Status. Codes share numbers; the message is
// capped at kMaxStatusMessageBytes so that a status always fits in trailers.
inline constexpr size_t kMaxStatusMessageBytes = 2048;
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_GRPC_STATUS_H_
