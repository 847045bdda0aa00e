#ifndef EMFIT_CORE_EM_OPTIONS_H_
#define EMFIT_CORE_EM_OPTIONS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace emfit {

class CancellationToken;
class FitObserver;
class ThreadPool;

// Convergence acceleration of the EM loop.
enum class Acceleration {
  kNone,
  // SQUAREM, scheme S3 (Varadhan & Roland 2008; algorithms.md §5.1) in unconstrained
  // coordinates, with the monotone safeguard (objfn_inc = 0): a cycle whose extrapolated point
  // has a lower log-likelihood falls back to two plain EM steps.
  kSquarem,
};

// Options of the EM loop shared by every model family. Plain value type; Validate() checks it.
struct FitOptions {
  // Maximum number of M-steps per restart. Must be >= 0 (0 evaluates the starting parameters).
  int max_iter = 100;
  // Convergence tolerance on the change of the mean log-likelihood l/W between iterations (W:
  // the total weight; scikit-learn's rule), with a guard against slow plateaus: while the
  // log-likelihood is still rising, the rise that Aitken's delta-squared projects from the last
  // three iterations must also be below tol (docs/gmm.md, "When a fit stops"). 0 disables the
  // test, so exactly max_iter iterations run. Must be finite and >= 0.
  double tol = 1e-6;
  // Independent restarts; the restart with the largest final log-likelihood is kept (the
  // earliest on ties). Must be >= 1.
  int n_init = 1;
  // Seed of every random stream; restart r uses a stream derived from (seed, r, purpose).
  uint64_t seed = 0;
  Acceleration acceleration = Acceleration::kNone;

  absl::Status Validate() const;
};

// Runtime handles of one fit, kept apart from the options. All pointers may be null and are
// not owned; they must outlive the fit.
struct FitControls {
  // Polled before every iteration and between row blocks (initialisation included); a fit
  // cancelled after an iteration completed stops with reason kCancelled and returns the last
  // complete parameters; before that, it returns CANCELLED.
  const CancellationToken* cancel = nullptr;
  // Receives progress (see FitObserver: concurrent calls when restarts run on `pool`).
  FitObserver* observer = nullptr;
  // Row blocks of the E-step run on this pool (null: on the calling thread only).
  ThreadPool* pool = nullptr;
  // A time budget: no iteration starts after it has passed and the fit ends with reason
  // kDeadline and the last complete parameters. The starting point of the first restart is
  // always evaluated, so a passed deadline is always that outcome, never an error; restarts
  // that have not begun when it passes are skipped. To stop work already running, cancel.
  absl::Time deadline = absl::InfiniteFuture();
};

// CANCELLED if `controls.cancel` fired, else OK. Cheap enough to call between row blocks.
absl::Status CheckCancelled(const FitControls& controls);

// CheckCancelled, then DEADLINE_EXCEEDED if `controls.deadline` has passed.
absl::Status CheckInterrupted(const FitControls& controls);

}  // namespace emfit

#endif  // EMFIT_CORE_EM_OPTIONS_H_
