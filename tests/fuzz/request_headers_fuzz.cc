// Fuzzes the checks of every request header (jobs.h's Plan* functions, and through them each
// family's FromProto converters and working-memory estimates): whatever a client sends as a
// header, the server answers with a status and does not crash. The first byte picks the header
// type; the rest is parsed as that message (bytes that do not parse are skipped: gRPC refuses
// them before any handler runs). A model the server accepts must convert back to a proto that is
// accepted again and that a second round trip leaves unchanged (a fitted model is sent back as a
// warm start or a Posterior header); the proto sent may differ where the converters normalise.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "families.h"
#include "fuzz_limits.h"
#include "jobs.h"

namespace emfit::fuzz {
namespace {

template <class Message>
bool Parse(const uint8_t* data, size_t size, Message* message) {
  return message->ParseFromArray(data, static_cast<int>(size));
}

void CheckModelRoundTrip(const v1::Model& sent) {
  absl::StatusOr<server::ModelVariant> model = server::ModelFromProto(sent, "model");
  if (!model.ok()) return;
  v1::Model back;
  server::ModelToProto(*model, &back);
  absl::StatusOr<server::ModelVariant> again = server::ModelFromProto(back, "model");
  Require(again.ok(), "a model the server accepted is refused once converted back");
  v1::Model twice;
  server::ModelToProto(*again, &twice);
  Require(twice.SerializeAsString() == back.SerializeAsString(),
          "a model converted back and forth twice changed");
}

}  // namespace
}  // namespace emfit::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emfit;
  if (size == 0) return 0;
  const server::ServiceLimits limits = fuzz::FuzzLimits();
  const uint8_t kind = data[0] % 4;
  ++data;
  --size;
  switch (kind) {
    case 0: {
      v1::FitHeader header;
      if (!fuzz::Parse(data, size, &header)) return 0;
      (void)server::PlanFit(header, limits);
      if (header.has_init()) fuzz::CheckModelRoundTrip(header.init());
      break;
    }
    case 1: {
      v1::PosteriorHeader header;
      if (!fuzz::Parse(data, size, &header)) return 0;
      absl::StatusOr<server::ModelVariant> model = server::PlanModel(header, limits);
      if (model.ok()) (void)server::ModelWorkingBytes(*model, header.shape(), limits.job_threads);
      fuzz::CheckModelRoundTrip(header.model());
      break;
    }
    case 2: {
      v1::SelectModelHeader header;
      if (!fuzz::Parse(data, size, &header)) return 0;
      (void)server::PlanSelect(header, limits);
      break;
    }
    default: {
      v1::SampleHistoriesHeader header;
      if (!fuzz::Parse(data, size, &header)) return 0;
      (void)server::PlanHistories(header, limits);
      break;
    }
  }
  return 0;
}
