// Reading the server's metrics in tests. Header-only: for test targets that link the server.
#ifndef EMFIT_TESTS_TESTING_METRICS_H_
#define EMFIT_TESTS_TESTING_METRICS_H_

#include <map>
#include <string>
#include <vector>

#include "prometheus/metric_family.h"

namespace emfit::testing {

// The value of metric `name` with exactly `labels`: a counter's or gauge's value, a
// histogram's sample count; -1 when absent.
inline double MetricValue(const std::vector<prometheus::MetricFamily>& families,
                          const std::string& name,
                          const std::map<std::string, std::string>& labels = {}) {
  for (const prometheus::MetricFamily& family : families) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      std::map<std::string, std::string> have;
      for (const auto& l : m.label) have[l.name] = l.value;
      if (have != labels) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return m.counter.value;
        case prometheus::MetricType::Gauge:
          return m.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(m.histogram.sample_count);
        default:
          return -1;
      }
    }
  }
  return -1;
}

}  // namespace emfit::testing

#endif  // EMFIT_TESTS_TESTING_METRICS_H_
