#include "testing/data.h"

#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace emfit::testing {

std::string DataPath(const std::string& name) { return std::string(EMFIT_DATA_DIR) + "/" + name; }

RowMatrix ReadCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    return RowMatrix();
  }
  std::string line;
  std::getline(in, line);  // header
  std::vector<std::vector<double>> rows;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<double> row;
    for (absl::string_view f : absl::StrSplit(line, ',')) {
      double v;
      if (!absl::SimpleAtod(f, &v)) {
        ADD_FAILURE() << path << ": '" << f << "' is not a number";
        return RowMatrix();
      }
      row.push_back(v);
    }
    if (!rows.empty() && row.size() != rows[0].size()) {
      ADD_FAILURE() << path << ": rows of different lengths";
      return RowMatrix();
    }
    rows.push_back(row);
  }
  RowMatrix x(rows.size(), rows.empty() ? 0 : rows[0].size());
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t j = 0; j < rows[i].size(); ++j) x(i, j) = rows[i][j];
  }
  return x;
}

Eigen::MatrixXd SpreadMeans(int k, int d, double scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-scale, scale);
  Eigen::MatrixXd means(k, d);
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < d; ++j) means(i, j) = u(rng);
  }
  return means;
}

RowMatrix SampleMixture(const Eigen::MatrixXd& means, double sd, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, sd);
  RowMatrix x(n, means.cols());
  for (int i = 0; i < n; ++i) {
    const int k = i % static_cast<int>(means.rows());
    for (int j = 0; j < means.cols(); ++j) x(i, j) = means(k, j) + normal(rng);
  }
  return x;
}

}  // namespace emfit::testing
