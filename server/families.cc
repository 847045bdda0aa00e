#include "families.h"

#include <type_traits>
#include <variant>

#include "absl/strings/str_cat.h"
#include "convert/gmm.h"
#include "convert/hmm.h"
#include "convert/mk.h"
#include "emfit/base/status_macros.h"

namespace emfit::server {

absl::StatusOr<SpecVariant> SpecFromProto(const v1::ModelSpec& spec, absl::string_view field) {
  switch (spec.family_case()) {
    case v1::ModelSpec::kGmm: {
      EMFIT_ASSIGN_OR_RETURN(gmm::GmmSpec g, FromProto(spec.gmm()));
      return SpecVariant(std::move(g));
    }
    case v1::ModelSpec::kHmm: {
      absl::StatusOr<HmmSpecAndNames> h = FromProto(spec.hmm());
      if (!h.ok()) return h.status();
      return SpecVariant(std::in_place_type<HmmSpecAndNames>, *std::move(h));
    }
    case v1::ModelSpec::kMk: {
      EMFIT_ASSIGN_OR_RETURN(MkSpecPlan m, FromProto(spec.mk()));
      return SpecVariant(std::move(m));
    }
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      field,
      ".family: no model family that this server knows is set; expected one of: gmm, hmm, mk"));
}

absl::StatusOr<ModelVariant> ModelFromProto(const v1::Model& model, absl::string_view field) {
  switch (model.family_case()) {
    case v1::Model::kGmm: {
      EMFIT_ASSIGN_OR_RETURN(gmm::GmmParams p, FromProto(model.gmm(), absl::StrCat(field, ".gmm")));
      return ModelVariant(std::move(p));
    }
    case v1::Model::kHmm: {
      EMFIT_ASSIGN_OR_RETURN(HmmModelAndNames h,
                             FromProto(model.hmm(), absl::StrCat(field, ".hmm")));
      return ModelVariant(std::move(h));
    }
    case v1::Model::kMk: {
      EMFIT_ASSIGN_OR_RETURN(MkModelPlan p, FromProto(model.mk(), absl::StrCat(field, ".mk")));
      return ModelVariant(std::move(p));
    }
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": no model family that this server knows is set; expected one of: gmm, hmm, mk"));
}

void ModelToProto(const ModelVariant& model, v1::Model* out) {
  std::visit(
      [out](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, gmm::GmmParams>) {
          ToProto(m, out->mutable_gmm());
        } else if constexpr (std::is_same_v<T, HmmModelAndNames>) {
          ToProto(m.params, m.symbols, out->mutable_hmm());
        } else {
          static_assert(std::is_same_v<T, MkModelPlan>, "a family without its ToProto here");
          ToProto(m.params, out->mutable_mk());
        }
      },
      model);
}

}  // namespace emfit::server
