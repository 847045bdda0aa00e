#include "testing/fixtures.h"

#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace emfit::testing {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

Eigen::MatrixXd ToMatrix(const Value& v) {
  const ListValue& rows = v.list_value();
  if (rows.values_size() > 0 && rows.values(0).has_list_value()) {
    Eigen::MatrixXd m(rows.values_size(), rows.values(0).list_value().values_size());
    for (int i = 0; i < m.rows(); ++i) {
      for (int j = 0; j < m.cols(); ++j)
        m(i, j) = rows.values(i).list_value().values(j).number_value();
    }
    return m;
  }
  Eigen::MatrixXd m(rows.values_size(), 1);
  for (int i = 0; i < m.rows(); ++i) m(i, 0) = rows.values(i).number_value();
  return m;
}

Struct LoadFixtures(const std::string& name) {
  const std::string path = std::string(EMFIT_TESTS_DIR) + "/fixtures/" + name;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  Struct fixtures;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(buffer.str(), &fixtures).ok()) << path;
  return fixtures;
}

}  // namespace emfit::testing
