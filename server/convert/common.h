// Conversions between emfit.v1 messages and core types shared by every model family: matrices,
// options, summaries, events, warnings, enums used by several families. Every function that
// reads client input validates it and names the offending field.
#ifndef EMFIT_SERVER_CONVERT_COMMON_H_
#define EMFIT_SERVER_CONVERT_COMMON_H_

#include <Eigen/Core>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/em/summary.h"
#include "emfit/gmm/gmm.h"
#include "emfit/v1/emfit.pb.h"

namespace emfit::server {

// Receives a Posterior call's blocks, in order (every family's PosteriorJob).
using PosteriorEmitter = std::function<void(v1::PosteriorResponse)>;

void ToProto(const Eigen::Ref<const Eigen::MatrixXd>& m, v1::Matrix* out);
absl::StatusOr<Eigen::MatrixXd> FromProto(const v1::Matrix& m, absl::string_view field);

absl::StatusOr<FitOptions> FromProto(const v1::FitOptions& options);

// Covariance types (mixtures and Gaussian HMM emissions).
v1::CovarianceType ToProto(gmm::CovarianceType type);
absl::StatusOr<gmm::CovarianceType> FromProto(v1::CovarianceType type, absl::string_view field);

v1::TerminationReason ToProto(TerminationReason reason);
void ToProto(const FitSummary& summary, v1::FitSummary* out);
void ToProto(const IterationEvent& event, v1::Iteration* out);
void ToProto(const FitWarning& warning, v1::Warning* out);

// A family's Score result (fields as in gmm::ScoreResult and hmm::ScoreResult) as the response.
template <class ScoreResult>
v1::ScoreResponse ScoreToProto(const ScoreResult& s) {
  v1::ScoreResponse out;
  out.set_log_likelihood(s.log_likelihood);
  out.set_mean_log_likelihood(s.mean_log_likelihood);
  out.set_bic(s.bic);
  out.set_aic(s.aic);
  out.set_num_free_parameters(static_cast<uint64_t>(s.num_free_parameters));
  out.set_rows(static_cast<uint64_t>(s.rows_used));
  return out;
}

}  // namespace emfit::server

#endif  // EMFIT_SERVER_CONVERT_COMMON_H_
