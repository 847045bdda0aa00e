// The hidden Markov model in the server: its messages converted to and from core, and its part of
// each job (jobs.h). The same set of functions as every family's converter (convert/gmm.h),
// overloaded on the HMM's types. Besides core's spec and parameters, the names of categorical
// symbols travel with the spec and the model (core works with the symbols' indices).
#ifndef EMFIT_SERVER_CONVERT_HMM_H_
#define EMFIT_SERVER_CONVERT_HMM_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "convert/gmm.h"
#include "data_receiver.h"
#include "emfit/em/options.h"
#include "emfit/hmm/hmm.h"
#include "emfit/v1/emfit.pb.h"
#include "service_limits.h"

namespace emfit::server {

struct HmmSpecAndNames {
  hmm::HmmSpec spec;
  std::vector<std::string> symbols;  // categorical: empty or M names
};

struct HmmModelAndNames {
  hmm::HmmParams params;
  std::vector<std::string> symbols;
};

absl::StatusOr<HmmSpecAndNames> FromProto(const v1::HiddenMarkovModelSpec& spec);
void ToProto(const hmm::HmmParams& params, const std::vector<std::string>& symbols,
             v1::HiddenMarkovModel* out);
absl::StatusOr<HmmModelAndNames> FromProto(const v1::HiddenMarkovModel& model,
                                           absl::string_view field);

// What one EM iteration visits, for --max_work (service_limits.h).
IterationCost CostOfIteration(const HmmSpecAndNames& spec, const v1::DataShape& shape);

absl::Status PlanSpec(HmmSpecAndNames* spec, const v1::ModelSpec& sent, const v1::Model* init,
                      const v1::DataShape& shape, const ServiceLimits& limits);
absl::Status PlanModel(HmmModelAndNames* model, const v1::DataShape& shape,
                       const ServiceLimits& limits);
// Admission (convert/gmm.h): bounds of a job's memory beyond its uploaded data.
uint64_t ResultBytes(const HmmSpecAndNames& spec, const v1::DataShape& shape,
                     const FitOptions& options);
uint64_t WorkingBytes(const HmmSpecAndNames& spec, const v1::DataShape& shape,
                      const FitOptions& options, int threads);
uint64_t WorkingBytes(const HmmModelAndNames& model, const v1::DataShape& shape, int threads);
absl::StatusOr<v1::FitResult> FitJob(const HmmSpecAndNames& spec, Upload upload,
                                     const FitOptions& options, const FitControls& controls);
// Emits the state probabilities and Viterbi states of the steps block by block in input order,
// each block listing the sequences that end in it (log-likelihood, Viterbi log-probability).
absl::Status PosteriorJob(const HmmModelAndNames& model, const Upload& upload,
                          const FitControls& controls, const PosteriorEmitter& emit);
absl::StatusOr<v1::ScoreResponse> ScoreJob(const HmmModelAndNames& model, const Upload& upload,
                                           const FitControls& controls);
// Each k of the header (for Gaussian emissions, for each covariance type of the header; FULL if
// none).
absl::StatusOr<std::vector<HmmSpecAndNames>> SelectGrid(const HmmSpecAndNames& base,
                                                        const v1::SelectModelHeader& header,
                                                        const ServiceLimits& limits);
void Describe(const HmmSpecAndNames& spec, v1::Candidate* candidate);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_CONVERT_HMM_H_
