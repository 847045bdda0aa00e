#!/usr/bin/python3
"""Writes tests/fixtures/sklearn_faithful.json: scikit-learn's GaussianMixture iterated from
fixed starting parameters on the bundled Old Faithful data, for every covariance type.

The C++ test tests/core/gmm_parity_test.cc starts emfit from the same parameters and compares.
Run with Debian's python3-sklearn (1.2) and python3-numpy:
    /usr/bin/python3 tools/make_sklearn_fixtures.py
"""
import json
import os
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = np.loadtxt(os.path.join(ROOT, "data/faithful.csv"), delimiter=",", skiprows=1)
N, D = X.shape
K = 3
ITERATIONS = [1, 5, 50]

# Deterministic, deliberately rough starting point: three data rows as means.
means0 = X[[10, 100, 200]].copy()
weights0 = np.array([0.5, 0.3, 0.2])
cov0 = np.cov(X.T, bias=True)


def start(covariance_type):
    if covariance_type == "full":
        covs = np.array([cov0 * s for s in (1.0, 0.5, 0.25)])
    elif covariance_type == "tied":
        covs = cov0.copy()
    elif covariance_type == "diag":
        covs = np.array([np.diag(cov0) * s for s in (1.0, 0.5, 0.25)])
    else:
        covs = np.array([np.trace(cov0) / D * s for s in (1.0, 0.5, 0.25)])
    return covs


def precisions(covariance_type, covs):
    if covariance_type in ("full",):
        return np.array([np.linalg.inv(c) for c in covs])
    if covariance_type == "tied":
        return np.linalg.inv(covs)
    return 1.0 / covs


def flat_covariances(covariance_type, covs):
    if covariance_type == "full":
        return covs.reshape(K * D, D)
    if covariance_type == "tied":
        return covs.reshape(D, D)
    if covariance_type == "diag":
        return covs.reshape(K, D)
    return covs.reshape(K, 1)


cases = []
for covariance_type in ("full", "diag", "tied", "spherical"):
    covs = start(covariance_type)
    for iterations in ITERATIONS:
        gm = GaussianMixture(n_components=K, covariance_type=covariance_type, tol=0.0,
                             reg_covar=1e-6, max_iter=iterations, weights_init=weights0,
                             means_init=means0,
                             precisions_init=precisions(covariance_type, covs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X)
        cases.append({
            "covariance_type": covariance_type,
            "iterations": iterations,
            "init": {"weights": weights0.tolist(), "means": means0.tolist(),
                     "covariances": flat_covariances(covariance_type, covs).tolist()},
            "weights": gm.weights_.tolist(),
            "means": gm.means_.tolist(),
            "covariances": flat_covariances(covariance_type, gm.covariances_).tolist(),
            "log_likelihood": float(gm.score(X) * N),
        })

out = os.path.join(ROOT, "tests/fixtures/sklearn_faithful.json")
with open(out, "w") as f:
    json.dump({"generator": "scikit-learn " + sklearn.__version__ + ", numpy " + np.__version__,
               "data": "data/faithful.csv", "k": K, "reg_covar": 1e-6, "cases": cases}, f,
              indent=1)
print("wrote", out, "with", len(cases), "cases")
