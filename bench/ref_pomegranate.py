#!/usr/bin/python3
"""pomegranate contestant of `bench/compare --family=hmm`: HiddenMarkovModel.fit (Baum-Welch)
from given starting parameters.

Reads the files bench/compare wrote (formats in bench/hmm_fit.cc), builds pomegranate 0.14's
HiddenMarkovModel.from_matrix with the starting parameters (no end state: the usual HMM
likelihood), runs its own fit for exactly --iters M-steps --repeats times and prints one JSON
line. pomegranate's fit(max_iterations=n) takes n + 1 M-steps and n + 1 E-steps (it has no
closing E-step; emfit's fit has one more E-step, at the returned parameters, which counts against
emfit). The final log-likelihood is computed after the clock stops. The sequences are converted
to pomegranate's input (a list of arrays) before the clock starts; pomegranate checks them again
inside fit, which is part of its work.

Threads: pomegranate runs sequences on n_jobs threads; its numerical kernels are its own Cython
(no BLAS in the forward-backward), and BLAS threads are pinned to --threads.
"""

import argparse
import json
import os
import sys
import time

import numpy as np


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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("data", "offsets", "init", "emission"):
        p.add_argument("--" + name, required=True)
    for name in ("n", "d", "k", "sequences", "iters"):
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--symbols", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(a.threads)
    import pomegranate
    from pomegranate import (DiscreteDistribution, HiddenMarkovModel,
                             MultivariateGaussianDistribution, NormalDistribution)

    x = np.fromfile(a.data, dtype="<f8")
    if x.size != a.n * a.d:
        sys.exit(f"error: {a.data}: expected {a.n * a.d} doubles, got {x.size}")
    x = x.reshape(a.n, a.d)
    offsets = np.fromfile(a.offsets, dtype="<f8").astype(np.int64)
    raw = np.fromfile(a.init, dtype="<f8")
    k, d = a.k, a.d
    start, rest = raw[:k], raw[k:]
    transitions, rest = rest[: k * k].reshape(k, k), rest[k * k:]
    names = ["s%02d" % j for j in range(k)]  # zero-padded: baking keeps this order

    if a.emission == "gaussian":
        means = rest[: k * d].reshape(k, d)
        covs = rest[k * d:].reshape(k, d, d)
        if d == 1:
            sequences = [x[offsets[q]:offsets[q + 1], 0].copy() for q in range(a.sequences)]
        else:
            sequences = [x[offsets[q]:offsets[q + 1]].copy() for q in range(a.sequences)]

        def distributions():
            if d == 1:
                return [NormalDistribution(means[j, 0], float(np.sqrt(covs[j, 0, 0])))
                        for j in range(k)]
            return [MultivariateGaussianDistribution(means[j].copy(), covs[j].copy())
                    for j in range(k)]
    else:
        probabilities = rest.reshape(k, a.symbols)
        sequences = [x[offsets[q]:offsets[q + 1], 0].astype(np.int64)
                     for q in range(a.sequences)]

        def distributions():
            return [DiscreteDistribution({s: probabilities[j, s] for s in range(a.symbols)})
                    for j in range(k)]

    seconds, cpu_seconds, rss_before, peak = [], [], 0, 0
    for _ in range(a.repeats):
        model = HiddenMarkovModel.from_matrix(transitions, distributions(), start,
                                              state_names=names)
        reset_peak_rss()
        before = proc_status_kb("VmRSS")
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            model.fit(sequences, max_iterations=a.iters - 1, stop_threshold=-1e300,
                      n_jobs=a.threads)
        except UnboundLocalError:
            # pomegranate 0.14.8 ends training with a variable only its second pass sets; with
            # max_iterations=0 its one M-step is done when this is raised.
            if a.iters != 1:
                raise
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
        hwm = proc_status_kb("VmHWM")
        if not seconds[1:] or hwm - before > peak - rss_before:
            rss_before, peak = before, hwm
    log_likelihood = float(sum(model.log_probability(s) for s in sequences))

    print(json.dumps({
        "contestant": "pomegranate",
        "emission": a.emission,
        "threads": a.threads,
        "iterations": a.iters,
        "log_likelihood": log_likelihood,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rss_before_kb": rss_before,
        "peak_rss_kb": peak,
        "version": pomegranate.__version__,
        "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
