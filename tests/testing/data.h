// Test data: the bundled CSV files and seeded synthetic samples.
#ifndef EMFIT_TESTS_TESTING_DATA_H_
#define EMFIT_TESTS_TESTING_DATA_H_

#include <Eigen/Core>
#include <string>
#include <vector>

#include "emfit/data/dataset.h"

namespace emfit::testing {

// Path of a file in the repository's data/ folder.
std::string DataPath(const std::string& name);

// Reads a numeric CSV with a header line (test helper; the CLI has its own reader). On error it
// records a test failure (it never aborts) and returns an empty matrix.
RowMatrix ReadCsv(const std::string& path);

// n rows from a mixture of Gaussians with the given means (k x d), isotropic standard
// deviation `sd` and equal weights, seeded.
// k x d means drawn uniformly from [-scale, scale] with a seeded stream.
Eigen::MatrixXd SpreadMeans(int k, int d, double scale, uint64_t seed);

RowMatrix SampleMixture(const Eigen::MatrixXd& means, double sd, int n, uint64_t seed);

}  // namespace emfit::testing

#endif  // EMFIT_TESTS_TESTING_DATA_H_
