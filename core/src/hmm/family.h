// The hidden Markov model as an EM family (the contract is in emfit/em/driver.h), written once
// for every emission type (emission/emission.h) and instantiated for the three of them.
#ifndef EMFIT_CORE_HMM_FAMILY_H_
#define EMFIT_CORE_HMM_FAMILY_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "emfit/data/dataset.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/hmm/hmm.h"
#include "hmm/forward_backward.h"
#include "hmm/sequence.h"

namespace emfit::hmm::internal {

// What the chain may do and what the fit holds fixed.
struct ChainSpec {
  Eigen::VectorXi start_allowed;        // k: 0 marks a structural zero
  Eigen::MatrixXi transitions_allowed;  // k x k
  bool fix_start = false;
  bool fix_transitions = false;
  bool fix_emissions = false;
  ForwardBackward forward_backward = ForwardBackward::kScaled;
  // Sequences longer than this run checkpointed (sequence.h); 0: DefaultSegmentSteps(k).
  int64_t segment_steps = 0;
};

// Objects of type T handed out to whichever thread needs one and taken back, so that work
// memory exists once per running thread rather than once per stripe (an object's contents never
// carry from one use to the next, so which thread gets which does not change any result).
template <class T>
class ObjectPool {
 public:
  struct Return {
    ObjectPool* pool;
    void operator()(T* object) const { pool->Put(object); }
  };
  using Handle = std::unique_ptr<T, Return>;

  Handle Get() {
    absl::MutexLock lock(&mu_);
    if (free_.empty()) return Handle(new T(), Return{this});
    T* object = free_.back().release();
    free_.pop_back();
    return Handle(object, Return{this});
  }

 private:
  void Put(T* object) {
    absl::MutexLock lock(&mu_);
    free_.emplace_back(object);
  }

  absl::Mutex mu_;
  std::vector<std::unique_ptr<T>> free_ ABSL_GUARDED_BY(mu_);
};

template <class Emission>
class HmmFamily {
 public:
  using Params = HmmParams;
  using EmissionParams = typename Emission::Params;
  using EmissionStats = typename Emission::Stats;

  // One thread's work memory.
  struct Work {
    SequenceScratch sequence;
    typename Emission::Scratch emission;
    std::vector<EmissionStats> inner;  // partials of a range accumulated in parallel
    EmissionStats provisional;         // a long sequence's, until it is committed
  };
  struct Partial {
    ChainStats chain;
    EmissionStats emission;
  };
  struct Stats {
    ChainStats chain;  // start counts, M and the log-likelihood
    RowMatrix xi;      // summed pair posteriors, A o M
    EmissionStats emission;
    std::vector<Partial> stripes;  // per-stripe partials, reduced in stripe order
    std::shared_ptr<ObjectPool<Work>> work;
  };

  // `data` (validated for the emission, with sequence offsets or none for one sequence) must
  // outlive the family.
  HmmFamily(const Dataset& data, Emission emission, ChainSpec spec);

  Stats NewStats() const;
  // W: the weight of the steps with an observed value.
  double total_weight() const { return total_weight_; }
  int64_t NumFreeParameters() const;
  absl::StatusOr<double> EStep(const Params& params, const FitControls& controls,
                               Stats* stats) const;
  absl::Status MStep(const Stats& stats, Params* params) const;
  double ExpectedLogJoint(const Stats& stats, const Params& params) const;
  // Unused states (no posterior mass: they keep their emission parameters) and transition rows
  // kept because the state was never left.
  std::vector<FitWarning> Inspect(const Stats& stats, const Params& params) const;
  // Row logits of start and transitions over their allowed entries (against the last one),
  // then the emission's coordinates; blocks held fixed are left out.
  Eigen::VectorXd Pack(const Params& params) const;
  absl::StatusOr<Params> Unpack(const Eigen::VectorXd& x, const Params& like) const;

  // Inference without statistics on the sequences [first, last) (last < 0: to the end), in
  // parallel: each sequence's log-likelihood into outputs.log_likelihood, and if not null the
  // state probabilities (rows x k, row-major) and (outputs.viterbi_*) the Viterbi path and its
  // log-probability. The outputs start at sequence `first` and its first row (their
  // first_sequence and first_row are set here).
  absl::Status Infer(const Params& params, const FitControls& controls, SequenceOutputs outputs,
                     double* gamma, int64_t first = 0, int64_t last = -1) const;

  const Emission& emission() const { return emission_; }
  const std::vector<int64_t>& offsets() const { return offsets_; }
  const ChainSpec& chain_spec() const { return spec_; }

 private:
  // log-densities of rows [begin, end), in parallel over blocks of rows when there are many.
  absl::Status LogDensities(const typename Emission::Evaluator& e, int64_t begin, int64_t end,
                            double* g, const FitControls& controls, ObjectPool<Work>* pool) const;
  // The emission's scaled densities of rows [begin, end), for emissions that have them.
  absl::Status ScaledDensities(const typename Emission::Evaluator& e, int64_t begin, int64_t end,
                               double* b, double* shift, Work* work) const;
  // Adds the statistics of rows [begin, end) with state probabilities `gamma` to `target`.
  absl::Status Accumulate(const typename Emission::Evaluator& e, int64_t begin, int64_t end,
                          const double* gamma, EmissionStats* target, Work* work,
                          const FitControls& controls, ObjectPool<Work>* pool) const;

  // The sequences [first, last) of the blocks' items [from, to) (block_offsets_).
  std::pair<int64_t, int64_t> SequencesOf(int64_t from, int64_t to) const;

  const Dataset& data_;
  Emission emission_;
  ChainSpec spec_;
  int k_;
  std::vector<int64_t> offsets_;
  // What the stripes of the E-step are cut over: the sequences, or pairs of them.
  bool pair_blocks_ = false;
  std::vector<int64_t> block_offsets_;
  double total_weight_ = 0;
};

}  // namespace emfit::hmm::internal

#endif  // EMFIT_CORE_HMM_FAMILY_H_
