// The Gaussian mixture in the server: its messages converted to and from core, and its part of
// each job (jobs.h). Every family's converter provides the same set of functions, overloaded on
// the family's core types, so that the generic job code is written once.
#ifndef EMFIT_SERVER_CONVERT_GMM_H_
#define EMFIT_SERVER_CONVERT_GMM_H_

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "convert/common.h"
#include "data_receiver.h"
#include "emfit/em/options.h"
#include "emfit/gmm/gmm.h"
#include "emfit/v1/emfit.pb.h"
#include "service_limits.h"

namespace emfit::server {

absl::StatusOr<gmm::GmmSpec> FromProto(const v1::GaussianMixtureSpec& spec);
void ToProto(const gmm::GmmParams& params, v1::GaussianMixture* out);
absl::StatusOr<gmm::GmmParams> FromProto(const v1::GaussianMixture& model, absl::string_view field);

// What one EM iteration visits, for --max_work (service_limits.h).
IterationCost CostOfIteration(const gmm::GmmSpec& spec, const v1::DataShape& shape);

// Completes `spec` (converted from `sent`) with the starting model `init` (null: none; already
// checked to be of this family) and checks both against the declared shape and the limits.
absl::Status PlanSpec(gmm::GmmSpec* spec, const v1::ModelSpec& sent, const v1::Model* init,
                      const v1::DataShape& shape, const ServiceLimits& limits);
// Checks a model for Posterior and Score against the declared shape and the limits (and
// completes it with what the header says about the data, for families that need it).
absl::Status PlanModel(gmm::GmmParams* model, const v1::DataShape& shape,
                       const ServiceLimits& limits);
// Memory, in bytes, for the admission of a job (admission.h), beyond the uploaded data, which is
// counted as it arrives. Estimated before the job starts, from the declared shape; upper bounds
// of the peaks measured in docs/reliability.md ("Working memory").
//
// A fit's working memory: the copies its data may need (the missing-value layout: the data are
// not known when the header arrives, so missing values are assumed), the E-step's per-stripe
// partial sums and scratch and the parameters of each of `threads` restarts running at once,
// every restart's starting point, result and log-likelihood history (n_init x max_iter), and
// the result message.
uint64_t WorkingBytes(const gmm::GmmSpec& spec, const v1::DataShape& shape,
                      const FitOptions& options, int threads);
// What a fit's result keeps once the fit has ended (its model and history), e.g. while other
// SelectModel candidates run.
// Doubles of one set of Gaussian components' parameters (weights, means, covariances) with k
// components in d dimensions, and bytes of one E-step's partial sums and scratch over `rows`
// rows (core/src/gmm/family.cc, BlockStripes): shared with the HMM's Gaussian emissions.
uint64_t ParamValues(gmm::CovarianceType type, uint64_t k, uint64_t d);
uint64_t EStepBytes(gmm::CovarianceType type, uint64_t k, uint64_t d, uint64_t rows);
uint64_t ResultBytes(const gmm::GmmSpec& spec, const v1::DataShape& shape,
                     const FitOptions& options);
// Posterior and Score with `model`: the missing-value layout and per-stripe scratch of Score, or
// the posterior blocks a Posterior call keeps in flight, whichever is larger.
uint64_t WorkingBytes(const gmm::GmmParams& model, const v1::DataShape& shape, int threads);

absl::StatusOr<v1::FitResult> FitJob(const gmm::GmmSpec& spec, Upload upload,
                                     const FitOptions& options, const FitControls& controls);
// Emits the posteriors of the rows block by block, in row order.
absl::Status PosteriorJob(const gmm::GmmParams& model, const Upload& upload,
                          const FitControls& controls, const PosteriorEmitter& emit);
absl::StatusOr<v1::ScoreResponse> ScoreJob(const gmm::GmmParams& model, const Upload& upload,
                                           const FitControls& controls);
// The candidates of a SelectModel grid from the template `base`: each k of the header for each
// of its covariance types (FULL if none), checked against the shape and the limits.
absl::StatusOr<std::vector<gmm::GmmSpec>> SelectGrid(const gmm::GmmSpec& base,
                                                     const v1::SelectModelHeader& header,
                                                     const ServiceLimits& limits);
// A candidate's identity in SelectModel's table (k, covariance type, its whole spec).
void Describe(const gmm::GmmSpec& spec, v1::Candidate* candidate);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_CONVERT_GMM_H_
