// The CLI's flags shared by commands and families (defined in cli_flags.cc). One word per
// concept, end to end: the names are the proto's and core's (k, max_iter, tol, n_init, ...).
// Options that the server defaults when unset (max_iter, tol, reg_covar) are optional flags and
// are sent only when given.
#ifndef EMFIT_CLIENT_CLI_FLAGS_H_
#define EMFIT_CLIENT_CLI_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(std::string, data);
ABSL_DECLARE_FLAG(std::string, header);
ABSL_DECLARE_FLAG(std::string, delimiter);
ABSL_DECLARE_FLAG(std::vector<std::string>, columns);
ABSL_DECLARE_FLAG(std::vector<std::string>, drop);
ABSL_DECLARE_FLAG(std::string, weights);
ABSL_DECLARE_FLAG(std::string, family);
ABSL_DECLARE_FLAG(std::string, k);
ABSL_DECLARE_FLAG(std::string, covariance);
ABSL_DECLARE_FLAG(std::string, emission);
ABSL_DECLARE_FLAG(std::string, sequence_column);
ABSL_DECLARE_FLAG(std::string, summary_out);
ABSL_DECLARE_FLAG(std::optional<double>, reg_covar);
ABSL_DECLARE_FLAG(std::string, init);
ABSL_DECLARE_FLAG(std::string, init_model);
ABSL_DECLARE_FLAG(std::vector<std::string>, fix);
ABSL_DECLARE_FLAG(std::string, acceleration);
ABSL_DECLARE_FLAG(std::optional<int>, max_iter);
ABSL_DECLARE_FLAG(std::optional<double>, tol);
ABSL_DECLARE_FLAG(int, n_init);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(bool, ignore_feature_names);
ABSL_DECLARE_FLAG(std::string, criterion);
ABSL_DECLARE_FLAG(std::string, out);
ABSL_DECLARE_FLAG(std::string, progress);
ABSL_DECLARE_FLAG(int, chunk_bytes);
ABSL_DECLARE_FLAG(double, timeout);
// Mk models (family_mk.cc) and emfit simmap.
ABSL_DECLARE_FLAG(std::string, tree);
ABSL_DECLARE_FLAG(std::string, tips);
ABSL_DECLARE_FLAG(std::string, state_column);
ABSL_DECLARE_FLAG(std::vector<std::string>, states);
ABSL_DECLARE_FLAG(bool, allow_missing_tips);
ABSL_DECLARE_FLAG(std::string, rates);
ABSL_DECLARE_FLAG(std::string, root);
ABSL_DECLARE_FLAG(std::string, estep);
ABSL_DECLARE_FLAG(std::optional<double>, mcem_tol);
ABSL_DECLARE_FLAG(std::optional<int>, max_sample_size);
ABSL_DECLARE_FLAG(int, n);
ABSL_DECLARE_FLAG(std::string, sampler);

#endif  // EMFIT_CLIENT_CLI_FLAGS_H_
