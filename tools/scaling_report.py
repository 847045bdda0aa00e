#!/usr/bin/python3
"""How large one fit can be on one emfitd replica: peak memory per data byte and time per
iteration, measured on a fresh emfitd per case (README, "Scaling out").

    PYTHONPATH=build/client/python tools/scaling_report.py --emfitd build/server/emfitd

For each case it starts `emfitd --workers=1 --compute_threads=1` (a pod with 2 CPUs: the fit's
thread and one compute thread), streams seeded random data with the Python package, runs a fixed
number of EM iterations (tol=0), and reads the server's peak resident memory (VmHWM) and its
resident memory before the call (VmRSS) from /proc. Prints one line per case and the values
(rows x columns) per GiB of a pod's memory that the worst case implies."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import emfit
from emfit.v1 import emfit_pb2 as pb


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/%d/status" % (field, pid))


def run_case(emfitd, rows, cols, k, covariance, missing, iterations, variant_env):
    directory = tempfile.mkdtemp(prefix="emfit-scaling-")
    port_file = os.path.join(directory, "port")
    log = open(os.path.join(directory, "emfitd.log"), "w+")
    proc = subprocess.Popen([emfitd, "--host=127.0.0.1", "--port=0", "--port_file=" + port_file,
                             "--workers=1", "--compute_threads=1"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, **variant_env))
    try:
        while not os.path.exists(port_file):
            if proc.poll() is not None:
                raise RuntimeError("emfitd did not start")
            time.sleep(0.05)
        address = "127.0.0.1:" + open(port_file).read().strip()
        rng = np.random.RandomState(0)
        x = rng.normal(size=(rows, cols)) + rng.randint(0, k, size=(rows, 1)) * 2.0
        if missing:
            x[rng.random_sample(size=x.shape) < missing] = np.nan
        baseline = status_kib(proc.pid, "VmRSS")
        events = []
        header = pb.FitHeader(
            spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(
                k=k, covariance_type=pb.CovarianceType.Value(
                    "COVARIANCE_TYPE_" + covariance.upper()))),
            options=pb.FitOptions(tol=0, max_iter=iterations, seed=1))
        with emfit.Client(address) as client:
            client.fit(header, x, on_event=lambda e: events.append(e))
        peak = status_kib(proc.pid, "VmHWM")
        times = [e.iteration.elapsed_seconds for e in events if e.HasField("iteration")]
        per_iteration = statistics.median(b - a for a, b in zip(times, times[1:]))
        variant = [line for line in open(log.name) if "build" in line][0].split("emfitd ")[1]
        return dict(data_bytes=x.nbytes, baseline=baseline * 1024, peak=peak * 1024,
                    per_iteration=per_iteration, variant=variant.strip())
    finally:
        proc.terminate()
        proc.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emfitd", required=True)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--cols", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--portable", action="store_true",
                        help="EMFIT_PORTABLE=1: measure the portable build")
    args = parser.parse_args()
    env = {"EMFIT_PORTABLE": "1"} if args.portable else {}
    worst = 0.0
    print("%-10s %-8s %9s %10s %10s %9s %12s  %s" % (
        "covariance", "missing", "data MiB", "base MiB", "peak MiB", "peak/data", "s/iteration",
        "build"))
    for covariance, missing in (("full", 0.0), ("diag", 0.0), ("full", 0.1)):
        r = run_case(args.emfitd, args.rows, args.cols, args.k, covariance, missing,
                     args.iterations, env)
        ratio = (r["peak"] - r["baseline"]) / r["data_bytes"]
        worst = max(worst, ratio)
        print("%-10s %-8g %9.0f %10.0f %10.0f %9.2f %12.3f  %s" % (
            covariance, missing, r["data_bytes"] / 2**20, r["baseline"] / 2**20,
            r["peak"] / 2**20, ratio, r["per_iteration"], r["variant"]))
        sys.stdout.flush()
    values_per_gib = 2**30 / (8 * worst)
    print("worst peak/data %.2f: one GiB of a pod's memory holds a fit of %.1f million values "
          "(rows x columns), e.g. %.1f million rows x %d columns"
          % (worst, values_per_gib / 1e6, values_per_gib / args.cols / 1e6, args.cols))


if __name__ == "__main__":
    main()
