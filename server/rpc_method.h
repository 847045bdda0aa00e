// The RPCs of emfit.v1.EmFitService, as named in logs, metrics and job ids.
#ifndef EMFIT_SERVER_RPC_METHOD_H_
#define EMFIT_SERVER_RPC_METHOD_H_

#include "absl/strings/string_view.h"

namespace emfit::server {

enum class RpcMethod { kFit, kPosterior, kScore, kSelectModel };
inline constexpr int kNumRpcMethods = 4;

// The method's name in the proto ("SelectModel"): the `method` of logs and metrics.
constexpr absl::string_view RpcMethodName(RpcMethod method) {
  switch (method) {
    case RpcMethod::kFit:
      return "Fit";
    case RpcMethod::kPosterior:
      return "Posterior";
    case RpcMethod::kScore:
      return "Score";
    case RpcMethod::kSelectModel:
      return "SelectModel";
  }
  return "";
}

// The prefix of the method's job ids ("select" in select-000004).
constexpr absl::string_view JobIdPrefix(RpcMethod method) {
  switch (method) {
    case RpcMethod::kFit:
      return "fit";
    case RpcMethod::kPosterior:
      return "posterior";
    case RpcMethod::kScore:
      return "score";
    case RpcMethod::kSelectModel:
      return "select";
  }
  return "";
}

}  // namespace emfit::server

#endif  // EMFIT_SERVER_RPC_METHOD_H_
