// Fuzzes a whole call as the server runs it, without the network: a request stream (a header,
// then chunks) through the ConsumeUpload/FinishUpload and DataReceiver that the reactors use,
// then, if the upload is accepted, the job (fit, posterior, score, model selection, stochastic
// maps) on it, with limits that keep every input small (fuzz_limits.h). Input: one byte that
// picks the method, then the request messages, each preceded by its length (a varint), as
// gRPC delivers them. A fit that converged or ran out of iterations returns a model the server
// accepts again (clients send it back as a warm start or to Posterior).
#include <google/protobuf/io/coded_stream.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "admission.h"
#include "data_receiver.h"
#include "emfit/exec/thread_pool.h"
#include "families.h"
#include "fuzz_limits.h"
#include "jobs.h"
#include "upload.h"

namespace emfit::fuzz {
namespace {

using google::protobuf::io::CodedInputStream;
using server::Declared;
using server::Upload;

// Reads `in`'s request messages into a receiver as a reactor does (each message is checked as
// it arrives; the first refusal ends the call), then hands the upload to `run`.
template <class Request, class OnHeader, class Run>
void Call(CodedInputStream* in, const server::ServiceLimits& limits, OnHeader&& on_header,
          Run&& run) {
  server::Admission admission(
      {limits.max_inflight_bytes, limits.max_inflight_bytes_per_peer, /*peer_calls=*/1});
  absl::StatusOr<std::unique_ptr<server::Admission::Slot>> slot = admission.Enter("fuzz");
  Require(slot.ok(), "an idle admission refused a call");
  server::DataReceiver receiver(&limits, slot->get());
  Request request;
  uint32_t length = 0;
  while (in->ReadVarint32(&length)) {
    const CodedInputStream::Limit limit = in->PushLimit(static_cast<int>(length));
    request.Clear();
    const bool parsed = request.ParseFromCodedStream(in) && in->ConsumedEntireMessage();
    in->PopLimit(limit);
    if (!parsed) return;  // gRPC refuses a message that does not parse
    if (!server::ConsumeUpload(request, &receiver, on_header).ok()) return;
  }
  absl::StatusOr<std::shared_ptr<server::PendingData>> pending = server::FinishUpload(&receiver);
  if (!pending.ok()) return;
  std::optional<Upload> upload = (*pending)->Take();
  Require(upload.has_value(), "accepted data were not handed over");
  ThreadPool pool(0);
  FitControls controls;
  controls.pool = &pool;
  run(*std::move(upload), controls);
}

void RequireUsableModel(const v1::FitResult& result) {
  const v1::TerminationReason reason = result.summary().reason();
  if (reason != v1::TERMINATION_REASON_CONVERGED && reason != v1::TERMINATION_REASON_MAX_ITER) {
    return;
  }
  Require(server::ModelFromProto(result.model(), "model").ok(),
          "a fit that converged or ran out of iterations returned a model the server refuses");
}

}  // namespace
}  // namespace emfit::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emfit;
  using fuzz::Call;
  if (size == 0) return 0;
  const server::ServiceLimits limits = fuzz::FuzzLimits();
  const uint8_t method = data[0] % 5;
  google::protobuf::io::CodedInputStream in(data + 1, static_cast<int>(size - 1));
  switch (method) {
    case 0: {
      std::optional<server::FitPlan> plan;
      Call<v1::FitRequest>(
          &in, limits,
          [&](const v1::FitRequest& r) { return server::PlanCall(r.header(), limits, &plan); },
          [&](server::Upload upload, const FitControls& controls) {
            absl::StatusOr<v1::FitResult> result =
                server::RunFit(*plan, std::move(upload), controls);
            if (result.ok()) fuzz::RequireUsableModel(*result);
          });
      break;
    }
    case 1:
    case 2: {
      std::optional<server::ModelVariant> model;
      Call<v1::PosteriorRequest>(
          &in, limits,
          [&](const v1::PosteriorRequest& r) {
            return server::PlanCall(r.header(), limits, &model);
          },
          [&](const server::Upload& upload, const FitControls& controls) {
            if (method == 1) {
              (void)server::RunPosterior(*model, upload, controls, [](v1::PosteriorResponse) {});
            } else {
              (void)server::RunScore(*model, upload, controls);
            }
          });
      break;
    }
    case 3: {
      std::optional<server::SelectPlan> plan;
      Call<v1::SelectModelRequest>(
          &in, limits,
          [&](const v1::SelectModelRequest& r) {
            return server::PlanCall(r.header(), limits, &plan);
          },
          [&](const server::Upload& upload, const FitControls& controls) {
            (void)server::RunSelect(
                *plan, upload, controls, [](int) -> FitObserver* { return nullptr; },
                [](const v1::Candidate&) {});
          });
      break;
    }
    default: {
      std::optional<server::HistoriesPlan> plan;
      Call<v1::SampleHistoriesRequest>(
          &in, limits,
          [&](const v1::SampleHistoriesRequest& r) {
            return server::PlanCall(r.header(), limits, &plan);
          },
          [&](const server::Upload& upload, const FitControls& controls) {
            (void)server::RunHistories(*plan, upload, controls, [](v1::SampleHistoriesResponse) {});
          });
      break;
    }
  }
  return 0;
}
