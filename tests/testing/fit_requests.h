// Requests of the service tests: headers for Old Faithful and a fit that runs until cancelled.
// Header-only: for test targets that link the protocol (emfit_proto).
#ifndef EMFIT_TESTS_TESTING_FIT_REQUESTS_H_
#define EMFIT_TESTS_TESTING_FIT_REQUESTS_H_

#include <Eigen/Core>
#include <vector>

#include "emfit/data/dataset.h"
#include "emfit/v1/emfit.pb.h"
#include "testing/data.h"

namespace emfit::testing {

inline RowMatrix Faithful() { return ReadCsv(DataPath("faithful.csv")); }

// The values of `x` as streamed: row-major.
inline std::vector<double> Values(const RowMatrix& x) {
  return std::vector<double>(x.data(), x.data() + x.size());
}

// A full-covariance mixture of k components on `x`.
inline v1::FitHeader GmmHeader(const RowMatrix& x, int k) {
  v1::FitHeader h;
  h.mutable_spec()->mutable_gmm()->set_k(k);
  h.mutable_spec()->mutable_gmm()->set_covariance_type(v1::COVARIANCE_TYPE_FULL);
  h.mutable_shape()->set_rows(x.rows());
  h.mutable_shape()->set_cols(x.cols());
  return h;
}

// A fit that runs until cancelled: many rows, tol = 0, a huge max_iter.
struct LongFit {
  LongFit() {
    Eigen::MatrixXd means(3, 4);
    means << 1, -2, 0, 3, -3, 1, 2, 0, 2, 2, -1, -2;
    x = SampleMixture(means, 1.0, 50000, 5);
    header = GmmHeader(x, 3);
    header.mutable_options()->set_tol(0);
    header.mutable_options()->set_max_iter(100000);
  }
  RowMatrix x;
  v1::FitHeader header;
};

}  // namespace emfit::testing

#endif  // EMFIT_TESTS_TESTING_FIT_REQUESTS_H_
