#include "fit_service.h"

#include "absl/strings/str_format.h"
#include "handlers.h"
#include "job_reactor.h"
#include "score_reactor.h"

namespace emfit::server {

grpc::ServerBidiReactor<v1::FitRequest, v1::FitEvent>* FitService::Fit(
    grpc::CallbackServerContext* context) {
  return new JobReactor<FitHandler>(context, this);
}

grpc::ServerBidiReactor<v1::PosteriorRequest, v1::PosteriorResponse>* FitService::Posterior(
    grpc::CallbackServerContext* context) {
  return new JobReactor<PosteriorHandler>(context, this);
}

grpc::ServerReadReactor<v1::ScoreRequest>* FitService::Score(grpc::CallbackServerContext* context,
                                                             v1::ScoreResponse* response) {
  return new ScoreReactor(context, response, this);
}

grpc::ServerBidiReactor<v1::SelectModelRequest, v1::SelectModelEvent>* FitService::SelectModel(
    grpc::CallbackServerContext* context) {
  return new JobReactor<SelectHandler>(context, this);
}

bool FitService::ReserveBytes(uint64_t bytes) {
  uint64_t current = inflight_bytes_.load();
  do {
    if (current + bytes > limits_.max_inflight_bytes) return false;
  } while (!inflight_bytes_.compare_exchange_weak(current, current + bytes));
  return true;
}

void FitService::ReleaseBytes(uint64_t bytes) { inflight_bytes_.fetch_sub(bytes); }

std::string FitService::NextJobId(RpcMethod method) {
  return absl::StrFormat("%s-%06d", JobIdPrefix(method), next_job_.fetch_add(1));
}

}  // namespace emfit::server
