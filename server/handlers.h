// One handler per streaming RPC, plugged into JobReactor (see job_reactor.h).
#ifndef EMFIT_SERVER_HANDLERS_H_
#define EMFIT_SERVER_HANDLERS_H_

#include <grpcpp/grpcpp.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "emfit/data/dataset.h"
#include "emfit/em/options.h"
#include "emfit/v1/emfit.pb.h"
#include "fit_session.h"
#include "jobs.h"
#include "rpc_method.h"
#include "service_limits.h"

namespace emfit::server {

class FitHandler {
 public:
  static constexpr RpcMethod kMethod = RpcMethod::kFit;
  using Request = v1::FitRequest;
  using Response = v1::FitEvent;
  static bool Droppable(const Response& e) { return e.has_iteration() || e.has_heartbeat(); }
  static std::optional<Response> Accepted(const std::string& job_id, int position);
  static std::optional<Response> Heartbeat(int position);
  absl::StatusOr<v1::DataShape> OnHeader(const Request& request, const ServiceLimits& limits);
  grpc::Status Run(Upload upload, StreamSession<Request, Response>& session,
                   const FitControls& controls, const std::string& job_id);

 private:
  std::optional<FitPlan> plan_;
};

class PosteriorHandler {
 public:
  static constexpr RpcMethod kMethod = RpcMethod::kPosterior;
  using Request = v1::PosteriorRequest;
  using Response = v1::PosteriorResponse;
  static bool Droppable(const Response&) { return false; }
  static std::optional<Response> Accepted(const std::string&, int) { return std::nullopt; }
  static std::optional<Response> Heartbeat(int) { return std::nullopt; }
  absl::StatusOr<v1::DataShape> OnHeader(const Request& request, const ServiceLimits& limits);
  grpc::Status Run(Upload upload, StreamSession<Request, Response>& session,
                   const FitControls& controls, const std::string& job_id);

 private:
  std::optional<ModelVariant> model_;
  absl::Duration max_stall_ = absl::Seconds(60);
};

class SelectHandler {
 public:
  static constexpr RpcMethod kMethod = RpcMethod::kSelectModel;
  using Request = v1::SelectModelRequest;
  using Response = v1::SelectModelEvent;
  static bool Droppable(const Response& e) { return e.has_iteration(); }
  static std::optional<Response> Accepted(const std::string& job_id, int position);
  static std::optional<Response> Heartbeat(int) { return std::nullopt; }
  absl::StatusOr<v1::DataShape> OnHeader(const Request& request, const ServiceLimits& limits);
  grpc::Status Run(Upload upload, StreamSession<Request, Response>& session,
                   const FitControls& controls, const std::string& job_id);

 private:
  std::optional<SelectPlan> plan_;
};

}  // namespace emfit::server

#endif  // EMFIT_SERVER_HANDLERS_H_
