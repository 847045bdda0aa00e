#include "enum_names.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace emfit::client {
namespace {

// COVARIANCE_TYPE_ for CovarianceType: the proto's prefix convention for enum values.
std::string Prefix(const google::protobuf::EnumDescriptor* type) {
  std::string prefix;
  for (char c : type->name()) {
    if (absl::ascii_isupper(c) && !prefix.empty()) prefix += '_';
    prefix += absl::ascii_toupper(c);
  }
  return prefix + "_";
}

}  // namespace

std::string ShortName(const google::protobuf::EnumDescriptor* type, int value) {
  const google::protobuf::EnumValueDescriptor* v = type->FindValueByNumber(value);
  if (v == nullptr) return absl::StrCat(value);
  std::string name = v->name();
  const std::string prefix = Prefix(type);
  if (absl::StartsWith(name, prefix)) name = name.substr(prefix.size());
  return absl::AsciiStrToLower(name);
}

std::string ShortNames(const google::protobuf::EnumDescriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->value_count(); ++i) {
    if (type->value(i)->number() == 0) continue;  // UNSPECIFIED
    names.push_back(ShortName(type, type->value(i)->number()));
  }
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<int> ParseShortName(const google::protobuf::EnumDescriptor* type,
                                   absl::string_view name, absl::string_view flag) {
  // "k-means++" and "kmeans++" are the usual spellings of KMEANS_PLUS_PLUS.
  const std::string wanted =
      absl::StrReplaceAll(absl::AsciiStrToUpper(name), {{"++", "_PLUS_PLUS"}, {"-", "_"}});
  const google::protobuf::EnumValueDescriptor* v = type->FindValueByName(Prefix(type) + wanted);
  if (v == nullptr || v->number() == 0) {
    const std::string relaxed = absl::StrReplaceAll(wanted, {{"_", ""}});
    for (int i = 0; i < type->value_count() && v == nullptr; ++i) {
      const std::string candidate =
          absl::StrReplaceAll(type->value(i)->name().substr(Prefix(type).size()), {{"_", ""}});
      if (type->value(i)->number() != 0 && candidate == relaxed) v = type->value(i);
    }
  }
  if (v == nullptr || v->number() == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: must be one of %s; got '%s'", flag, ShortNames(type), name));
  }
  return v->number();
}

}  // namespace emfit::client
