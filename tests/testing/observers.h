// A FitObserver that keeps every event, for tests. Not thread-safe: use it with one restart at
// a time (no pool, or n_init = 1).
#ifndef EMFIT_TESTS_TESTING_OBSERVERS_H_
#define EMFIT_TESTS_TESTING_OBSERVERS_H_

#include <algorithm>
#include <string>
#include <vector>

#include "emfit/em/observer.h"

namespace emfit::testing {

class RecordingObserver : public FitObserver {
 public:
  void OnIteration(const IterationEvent& e) override { events.push_back(e); }
  void OnWarning(const FitWarning& w) override { warnings.push_back(w); }
  // Warnings with this code.
  int Count(const std::string& code) const {
    return static_cast<int>(std::count_if(warnings.begin(), warnings.end(),
                                          [&](const FitWarning& w) { return w.code == code; }));
  }

  std::vector<IterationEvent> events;
  std::vector<FitWarning> warnings;
};

}  // namespace emfit::testing

#endif  // EMFIT_TESTS_TESTING_OBSERVERS_H_
