// The model families the server knows, as closed sets mirroring the proto's oneofs
// (ModelSpec.family, Model.family). Adding a family is one alternative in each variant, one
// case in each switch of families.cc, and one converter in convert/ with the functions
// convert/gmm.h lists (style.md, "Adding a family").
#ifndef EMFIT_SERVER_FAMILIES_H_
#define EMFIT_SERVER_FAMILIES_H_

#include <variant>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "convert/hmm.h"
#include "convert/mk.h"
#include "emfit/gmm/gmm.h"
#include "emfit/v1/emfit.pb.h"

namespace emfit::server {

using SpecVariant = std::variant<gmm::GmmSpec, HmmSpecAndNames, MkSpecPlan>;
using ModelVariant = std::variant<gmm::GmmParams, HmmModelAndNames, MkModelPlan>;

// The family's spec (unchecked against the data and limits: jobs.cc plans it).
absl::StatusOr<SpecVariant> SpecFromProto(const v1::ModelSpec& spec, absl::string_view field);
// The family's model, validated on its own (shapes, values); `field` names it in messages.
absl::StatusOr<ModelVariant> ModelFromProto(const v1::Model& model, absl::string_view field);
// The inverse: `model` as the proto's family case (feature names are not part of it).
void ModelToProto(const ModelVariant& model, v1::Model* out);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_FAMILIES_H_
