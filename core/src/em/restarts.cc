#include "emfit/em/restarts.h"

#include <cmath>

#include "math/rng.h"

namespace emfit {

uint64_t RestartSeed(uint64_t seed, int restart) {
  return internal::DeriveSeed(seed, static_cast<uint64_t>(restart),
                              internal::StreamPurpose::kRestart);
}

double Bic(double log_likelihood, int64_t num_free_parameters, double total_weight) {
  return -2.0 * log_likelihood + static_cast<double>(num_free_parameters) * std::log(total_weight);
}

double Aic(double log_likelihood, int64_t num_free_parameters) {
  return -2.0 * log_likelihood + 2.0 * static_cast<double>(num_free_parameters);
}

}  // namespace emfit
