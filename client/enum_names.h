// The CLI's names of proto enum values: lower case, without the prefix of their type
// (COVARIANCE_TYPE_FULL: "full"), read from the generated descriptors so that no table of names
// is written by hand.
#ifndef EMFIT_CLIENT_ENUM_NAMES_H_
#define EMFIT_CLIENT_ENUM_NAMES_H_

#include <google/protobuf/descriptor.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace emfit::client {

// The lower-case name of an enum value without the prefix of its type (COVARIANCE_TYPE_FULL:
// "full"), and its inverse ("full" -> COVARIANCE_TYPE_FULL; `flag` names the flag in errors).
std::string ShortName(const google::protobuf::EnumDescriptor* type, int value);
absl::StatusOr<int> ParseShortName(const google::protobuf::EnumDescriptor* type,
                                   absl::string_view name, absl::string_view flag);
// Every short name of `type` but UNSPECIFIED, comma-separated.
std::string ShortNames(const google::protobuf::EnumDescriptor* type);

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_ENUM_NAMES_H_
