// Reference fixtures (tests/fixtures/*.json, written by the scripts in tools/) for the parity
// tests, read with protobuf's JSON parser into a google.protobuf.Struct.
#ifndef EMFIT_TESTS_TESTING_FIXTURES_H_
#define EMFIT_TESTS_TESTING_FIXTURES_H_

#include <google/protobuf/struct.pb.h>

#include <Eigen/Core>
#include <string>

namespace emfit::testing {

// tests/fixtures/`name`, parsed; an unreadable file is a test failure (and an empty Struct).
google::protobuf::Struct LoadFixtures(const std::string& name);

// A JSON list of numbers as a column, or a list of lists as a matrix (rows x cols).
Eigen::MatrixXd ToMatrix(const google::protobuf::Value& v);

}  // namespace emfit::testing

#endif  // EMFIT_TESTS_TESTING_FIXTURES_H_
