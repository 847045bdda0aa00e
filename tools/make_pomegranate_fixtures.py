#!/usr/bin/python3
"""Writes tests/fixtures/pomegranate_hmm.json: pomegranate 0.14's HiddenMarkovModel.fit
(Baum-Welch) iterated from fixed starting parameters, for Gaussian (1-D and 2-D full covariance)
and categorical emissions, after 1, 5 and 50 iterations.

The C++ test tests/core/hmm_parity_test.cc starts emfit from the same parameters and compares.
Run with Debian's python3-pomegranate (0.14.8) and python3-numpy:
    /usr/bin/python3 tools/make_pomegranate_fixtures.py

pomegranate's fit(max_iterations=n) takes n + 1 M-steps (its loop updates the model before it
checks the count), so n = iterations - 1 here. Its models have no end state (from_matrix with
ends=None), so its log_probability is the usual HMM likelihood.
"""
import json
import os

import numpy as np
import pomegranate
from pomegranate import (DiscreteDistribution, HiddenMarkovModel,
                         MultivariateGaussianDistribution, NormalDistribution)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = [1, 5, 50]


def names(k):
    # Zero-padded, so that baking keeps the states in this order.
    return ["s%02d" % j for j in range(k)]


def fit(model, sequences, iterations):
    """Baum-Welch for exactly `iterations` M-steps."""
    try:
        model.fit(sequences, max_iterations=iterations - 1, stop_threshold=-1e300, n_jobs=1)
    except UnboundLocalError:
        # pomegranate 0.14.8 reports the end of training with a variable its loop sets only
        # after a second pass; with max_iterations=0 the model has taken its one M-step when
        # this is raised.
        if iterations != 1:
            raise


def model_from(start, transitions, distributions):
    return HiddenMarkovModel.from_matrix(np.array(transitions), distributions, np.array(start),
                                         state_names=names(len(start)))


def state_order(model, k):
    index = {s.name: i for i, s in enumerate(model.states)}
    return [index[n] for n in names(k)]


def read_chain(model, k):
    order = state_order(model, k)
    dense = model.dense_transition_matrix()
    start = dense[model.start_index, order]
    transitions = dense[np.ix_(order, order)]
    return start.tolist(), transitions.tolist(), order


def gaussian_case(name, sequences, start, transitions, means, covariances):
    k, d = np.array(means).shape
    cases = []
    for iterations in ITERATIONS:
        if d == 1:
            dists = [NormalDistribution(means[j][0], float(np.sqrt(covariances[j][0])))
                     for j in range(k)]
        else:
            dists = [MultivariateGaussianDistribution(np.array(means[j]),
                                                      np.array(covariances[j]))
                     for j in range(k)]
        model = model_from(start, transitions, dists)
        fit(model, [np.array(s) if d > 1 else np.array(s)[:, 0] for s in sequences], iterations)
        s, a, order = read_chain(model, k)
        out_means, out_covs = [], []
        for j in order:
            p = model.states[j].distribution.parameters
            if d == 1:
                out_means.append([p[0]])
                out_covs.append([[p[1] ** 2]])
            else:
                out_means.append(np.asarray(p[0]).tolist())
                out_covs.append(np.asarray(p[1]).tolist())
        ll = sum(model.log_probability(np.array(q) if d > 1 else np.array(q)[:, 0])
                 for q in sequences)
        cases.append({"iterations": iterations, "start": s, "transitions": a,
                      "means": out_means, "covariances": out_covs, "log_likelihood": ll})
    return {"name": name, "emission": "gaussian", "sequences": sequences,
            "init": {"start": start, "transitions": transitions, "means": means,
                     "covariances": covariances},
            "results": cases}


def categorical_case(name, sequences, start, transitions, probabilities):
    k, m = np.array(probabilities).shape
    cases = []
    for iterations in ITERATIONS:
        dists = [DiscreteDistribution({s: probabilities[j][s] for s in range(m)})
                 for j in range(k)]
        model = model_from(start, transitions, dists)
        fit(model, [list(q) for q in sequences], iterations)
        s, a, order = read_chain(model, k)
        probs = []
        for j in order:
            table = model.states[j].distribution.parameters[0]
            probs.append([table.get(symbol, 0.0) for symbol in range(m)])
        ll = sum(model.log_probability(list(q)) for q in sequences)
        cases.append({"iterations": iterations, "start": s, "transitions": a,
                      "probabilities": probs, "log_likelihood": ll})
    return {"name": name, "emission": "categorical", "sequences": sequences,
            "init": {"start": start, "transitions": transitions, "probabilities": probabilities},
            "results": cases}


def main():
    geyser = np.loadtxt(os.path.join(ROOT, "data/geyser.csv"), delimiter=",", skiprows=1)
    cases = []

    # Old Faithful's 299 consecutive eruptions: 2-D (waiting, duration), full covariance, k = 3,
    # one sequence; a deliberately rough start.
    cov = np.cov(geyser.T, bias=True)
    cases.append(gaussian_case(
        "geyser_2d_full_k3", [geyser.tolist()],
        [0.5, 0.3, 0.2],
        [[0.6, 0.3, 0.1], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]],
        [geyser[10].tolist(), geyser[100].tolist(), geyser[200].tolist()],
        [(cov * s).tolist() for s in (1.0, 0.5, 0.25)]))

    # The waiting times alone, cut into three sequences (100, 99, 100 steps), k = 2.
    waiting = geyser[:, :1]
    cases.append(gaussian_case(
        "geyser_waiting_1d_k2_three_sequences",
        [waiting[:100].tolist(), waiting[100:199].tolist(), waiting[199:].tolist()],
        [0.5, 0.5],
        [[0.5, 0.5], [0.5, 0.5]],
        [[60.0], [75.0]],
        [[[100.0]], [[150.0]]]))

    # Categorical: five seeded sequences of 4 symbols from a 3-state model.
    rng = np.random.default_rng(20240501)
    true_a = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    true_e = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.05, 0.05, 0.3, 0.6]])
    sequences = []
    for length in (120, 80, 45, 200, 60):
        z = rng.integers(3)
        seq = []
        for _ in range(length):
            seq.append(int(rng.choice(4, p=true_e[z])))
            z = rng.choice(3, p=true_a[z])
        sequences.append(seq)
    cases.append(categorical_case(
        "categorical_4_symbols_k3_five_sequences", sequences,
        [0.4, 0.3, 0.3],
        [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]],
        [[0.4, 0.2, 0.2, 0.2], [0.2, 0.4, 0.2, 0.2], [0.2, 0.2, 0.3, 0.3]]))

    out = {
        "generator": "tools/make_pomegranate_fixtures.py",
        "pomegranate": pomegranate.__version__,
        "numpy": np.__version__,
        "cases": cases,
    }
    path = os.path.join(ROOT, "tests/fixtures/pomegranate_hmm.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
