#!/usr/bin/python3
"""scikit-learn contestant of bench/compare: GaussianMixture from given starting parameters.

Reads the files bench/compare wrote (formats in bench/bench_common.h), runs scikit-learn's own
GaussianMixture.fit with max_iter=T, tol=0, n_init=1 from the starting parameters --repeats
times, and prints one JSON line.

Why a subclass: GaussianMixture.fit always runs its initialiser (k-means by default) even when
weights_init, means_init and precisions_init are all given, and then overwrites the result. The
subclass replaces only that step (_initialize_parameters) with "set the given parameters"; the
EM loop that is timed is scikit-learn's, unchanged: T x (E-step, M-step) plus its final E-step.
The final log-likelihood is gm.score(X) * N at the returned parameters (lower_bound_ is one
iteration behind), computed after the clock stops.

Threads are pinned with threadpoolctl (BLAS and OpenMP); the BLAS in use is reported.
"""

import argparse
import json
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
from threadpoolctl import threadpool_info, threadpool_limits


def proc_status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class WarmStartedGaussianMixture(GaussianMixture):
    """GaussianMixture whose initialisation sets the parameters in start_ (weights, means,
    covariances in scikit-learn's layout)."""

    def _initialize_parameters(self, X, random_state):
        weights, means, covariances = self.start_
        self.weights_ = weights.copy()
        self.means_ = means.copy()
        self.covariances_ = covariances.copy()
        self.precisions_cholesky_ = _compute_precision_cholesky(
            self.covariances_, self.covariance_type
        )


def read_init(path, cov, k, d):
    raw = np.fromfile(path, dtype="<f8")
    weights, means, rest = raw[:k], raw[k : k + k * d].reshape(k, d), raw[k + k * d :]
    shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[cov]
    return weights, means, rest.reshape(shape)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("data", "init", "cov"):
        p.add_argument("--" + name, required=True)
    for name in ("n", "d", "k", "iters"):
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reg_covar", type=float, default=0.0)
    a = p.parse_args()

    x = np.fromfile(a.data, dtype="<f8")
    if x.size != a.n * a.d:
        sys.exit(f"error: {a.data}: expected {a.n * a.d} doubles, got {x.size}")
    x = x.reshape(a.n, a.d)
    start = read_init(a.init, a.cov, a.k, a.d)

    seconds, rss_before, peak = [], 0, 0
    with threadpool_limits(limits=a.threads):
        blas = [
            {k: v for k, v in lib.items() if k in ("internal_api", "version", "num_threads",
                                                    "threading_layer", "architecture")}
            for lib in threadpool_info()
        ]
        for _ in range(a.repeats):
            gm = WarmStartedGaussianMixture(
                n_components=a.k,
                covariance_type=a.cov,
                tol=0.0,
                reg_covar=a.reg_covar,
                max_iter=a.iters,
                n_init=1,
            )
            gm.start_ = start
            reset_peak_rss()
            before = proc_status_kb("VmRSS")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t0 = time.perf_counter()
                gm.fit(x)
                seconds.append(time.perf_counter() - t0)
            hwm = proc_status_kb("VmHWM")
            if not seconds[1:] or hwm - before > peak - rss_before:
                rss_before, peak = before, hwm
        log_likelihood = float(gm.score(x)) * a.n

    print(json.dumps({
        "contestant": "scikit-learn",
        "cov": a.cov,
        "threads": a.threads,
        "iterations": int(gm.n_iter_),
        "log_likelihood": log_likelihood,
        "seconds": seconds,
        "rss_before_kb": rss_before,
        "peak_rss_kb": peak,
        "version": __import__("sklearn").__version__,
        "numpy": np.__version__,
        "threadpools": blas,
    }))


if __name__ == "__main__":
    main()
