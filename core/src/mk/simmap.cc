// Stochastic character maps as a product: sampling, the SIMMAP format and a summary
// (docs/algorithms.md §4.5).
#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"
#include "emfit/exec/thread_pool.h"
#include "emfit/mk/mk.h"
#include "math/rng.h"
#include "mk/model.h"
#include "mk/pruning.h"
#include "mk/sampling.h"

namespace emfit::mk {

namespace {

constexpr int64_t kMapsPerBatch = 256;
// Segments of the maps held at once (about 12 bytes each).
constexpr double kSegmentsPerBatch = 1 << 24;

}  // namespace

absl::Status SampleHistories(
    const MkParams& params, const Tree& tree, const MkTips& tips, int64_t n, uint64_t seed,
    const SimmapOptions& options, const FitControls& controls,
    absl::FunctionRef<absl::Status(int64_t index, const StochasticMap& map)> callback) {
  EMFIT_RETURN_IF_ERROR(params.Validate());
  if (n < 0) {
    return absl::InvalidArgumentError(absl::StrFormat("n: must be >= 0, got %d", n));
  }
  EMFIT_ASSIGN_OR_RETURN(internal::TreeData data, internal::MatchTips(tree, tips, params.k()));
  if (data.characters != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tips.likelihoods: stochastic maps are drawn for one character (k=%d columns), got %d "
        "characters",
        params.k(), data.characters));
  }
  EMFIT_ASSIGN_OR_RETURN(internal::RateLayout layout,
                         internal::RateLayout::FromIndex(params.index, "model.mk.index"));
  const internal::Generator generator(params.q, layout.symmetric);
  EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd rho, internal::RootDistribution(params));
  internal::Upward up;
  EMFIT_RETURN_IF_ERROR(internal::PruneUp(data, generator, params.root, rho, controls, &up));
  // A map holds every change: refuse models whose maps would not fit in memory, and hold fewer
  // maps at once when they are large.
  internal::Expected expected;
  EMFIT_RETURN_IF_ERROR(internal::ExpectedCounts(data, generator, up, controls, &expected));
  const double changes = expected.transitions.sum();
  if (!(changes <= options.max_expected_changes)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "a map of this model would hold %.3g changes on average (limit %.3g): its rates are "
        "too high for the tree's branch lengths",
        changes, options.max_expected_changes));
  }
  const int64_t per_batch = std::clamp<int64_t>(
      static_cast<int64_t>(kSegmentsPerBatch / (changes + tree.num_nodes())), 1, kMapsPerBatch);
  double max_length = 0;
  for (int v = 0; v < tree.num_nodes(); ++v) {
    if (tree.parent[v] >= 0) max_length = std::max(max_length, tree.length[v]);
  }
  const internal::BranchSampler sampler(generator, options.sampler, max_length);
  const int k = params.k(), nodes = tree.num_nodes();
  std::vector<StochasticMap> batch(static_cast<size_t>(std::min(n, per_batch)));
  for (int64_t first = 0; first < n; first += per_batch) {
    EMFIT_RETURN_IF_ERROR(CheckInterrupted(controls));
    const int64_t count = std::min(per_batch, n - first);
    ParallelFor(controls.pool, static_cast<int>(count), [&](int j) {
      const int64_t index = first + j;
      internal::Rng rng(::emfit::internal::DeriveSeed(seed, static_cast<uint64_t>(index),
                                                      ::emfit::internal::StreamPurpose::kHistory));
      StochasticMap& map = batch[j];
      map.node_states.resize(nodes);
      internal::SampleNodeStates(data, up, rng, map.node_states.data());
      map.segment_offsets.assign(nodes + 1, 0);
      map.segment_states.clear();
      map.segment_lengths.clear();
      map.transitions.setZero(k, k);
      map.dwelling_times.setZero(k);
      std::vector<internal::Segment> path;
      for (int v = 0; v < nodes; ++v) {
        map.segment_offsets[v] = static_cast<int>(map.segment_states.size());
        if (tree.parent[v] < 0) continue;
        const int a = map.node_states[tree.parent[v]], b = map.node_states[v];
        sampler.Sample(a, b, tree.length[v], up.p(a, static_cast<Eigen::Index>(v) * k + b), rng,
                       &path);
        internal::Tally(path, &map.transitions, &map.dwelling_times);
        for (const internal::Segment& s : path) {
          map.segment_states.push_back(s.state);
          map.segment_lengths.push_back(s.length);
        }
      }
      map.segment_offsets[nodes] = static_cast<int>(map.segment_states.size());
    });
    for (int64_t j = 0; j < count; ++j) EMFIT_RETURN_IF_ERROR(callback(first + j, batch[j]));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> WriteSimmap(const Tree& tree, const StochasticMap& map,
                                        absl::Span<const std::string> state_names) {
  for (const std::string& s : state_names) {
    if (s.find_first_of(",:{}();[] \t\n\r") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "state_names: '%s' cannot be written in SIMMAP format (it holds one of ,:{}();[] or "
          "whitespace)",
          s));
    }
  }
  for (int v = 0; v < tree.num_tips; ++v) {
    if (tree.labels[v].find_first_of(",:();[]'") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "tree: tip label '%s' cannot be written in SIMMAP format (it holds one of ,:();[]')",
          tree.labels[v]));
    }
  }
  if (static_cast<int>(map.segment_offsets.size()) != tree.num_nodes() + 1) {
    return absl::InvalidArgumentError("map: does not belong to this tree");
  }
  std::string out;
  out.reserve(static_cast<size_t>(tree.num_nodes()) * 32);
  char buf[40];
  auto write_map = [&](int v) {
    // phytools' default reading order (rev.order = TRUE): the child's end first.
    out += ":{";
    for (int s = map.segment_offsets[v + 1] - 1; s >= map.segment_offsets[v]; --s) {
      out += state_names[map.segment_states[s]];
      std::snprintf(buf, sizeof(buf), ",%.17g", map.segment_lengths[s]);
      out += buf;
      if (s > map.segment_offsets[v]) out.push_back(':');
    }
    out.push_back('}');
  };
  WriteNewickWith(
      tree,
      [&](int v, std::string*) {
        if (tree.Children(v).empty()) {
          for (char c : tree.labels[v]) out.push_back(c == ' ' ? '_' : c);
        }
        if (v != tree.root()) write_map(v);
      },
      &out);
  return out;
}

MapSummary::MapSummary(int num_nodes, int k)
    : transitions_(Eigen::MatrixXd::Zero(k, k)),
      times_(Eigen::VectorXd::Zero(k)),
      nodes_(Eigen::MatrixXd::Zero(num_nodes, k)) {}

void MapSummary::Add(const StochasticMap& map) {
  ++count_;
  transitions_ += map.transitions;
  times_ += map.dwelling_times;
  for (size_t v = 0; v < map.node_states.size(); ++v) nodes_(v, map.node_states[v]) += 1;
}

Eigen::MatrixXd MapSummary::MeanTransitions() const {
  return transitions_ / static_cast<double>(std::max<int64_t>(1, count_));
}

Eigen::VectorXd MapSummary::MeanDwellingTimes() const {
  return times_ / static_cast<double>(std::max<int64_t>(1, count_));
}

Eigen::MatrixXd MapSummary::NodeFrequencies() const {
  return nodes_ / static_cast<double>(std::max<int64_t>(1, count_));
}

}  // namespace emfit::mk
