"""Gaussian mixtures: emfit.GaussianMixture (scikit-learn's GaussianMixture, fitted by emfitd)
and emfit.select_model (a grid of k and covariance types, fitted in parallel on the server)."""
import dataclasses
from typing import List, Optional

import numpy as np

from . import _base
from . import _data
from ._client import DEFAULT_SERVER
from .v1 import emfit_pb2 as pb

_INIT = {"kmeans": pb.INIT_METHOD_KMEANS, "k-means++": pb.INIT_METHOD_KMEANS_PLUS_PLUS,
         "random_from_data": pb.INIT_METHOD_RANDOM_FROM_DATA, "random": pb.INIT_METHOD_RANDOM}
_CRITERION = {"bic": pb.CRITERION_BIC, "aic": pb.CRITERION_AIC}


class GaussianMixture(_base.EmfitEstimator):
    """A Gaussian mixture fitted by EM on an emfitd server, with scikit-learn's interface.

    Parameters are scikit-learn's (n_components, covariance_type, tol, reg_covar, max_iter,
    n_init, init_params in {'kmeans', 'k-means++', 'random', 'random_from_data'},
    random_state, warm_start), plus:
      tol, reg_covar, max_iter: None (the default) leaves them to the server, whose defaults
        are emfit's (docs/gmm.md): tol 1e-6 on the change of the mean log-likelihood, with a
        guard against stopping on a slow plateau; reg_covar 1e-6; max_iter 1000. scikit-learn's
        tol is 1e-3, which stops many fits short of their maximum.
      acceleration: None or 'squarem' (SQUAREM with a monotone safeguard).
      server: "host:port" of emfitd or of a load balancer; or channel: a grpc.Channel.
      credentials: None, a grpc.ChannelCredentials or emfit.TlsFiles; token: a bearer token.
      timeout: seconds each call may take (re-sends included), or None.
      retries: re-sends of a call refused as busy (after the server's retry hint) or lost in
        transit (a replica that died), 0 to 10 (emfit.Client).
      verbose: 1 for a progress bar on stderr, 2 for one line per iteration.
      callback: called with an emfit.IterationEvent for every iteration of every restart.

    NaN in X is a missing value: the fit is the exact EM under missing-at-random (each row's
    observed coordinates), not imputation; predictions use each row's observed coordinates.
    pandas DataFrames keep their column names (feature_names_in_), checked on later calls.
    random_state=None draws a fresh seed per fit (as scikit-learn); an int makes fits
    repeatable. KeyboardInterrupt during fit cancels the fit on the server.

    Fitted attributes follow scikit-learn's conventions per covariance type: weights_ (k,),
    means_ (k, d), covariances_ (full (k, d, d), tied (d, d), diag (k, d), spherical (k,)),
    precisions_, precisions_cholesky_, converged_, n_iter_, lower_bound_ (mean log-likelihood
    per row of the returned model), n_features_in_, feature_names_in_, and summary_ (the
    server's FitSummary: termination reason, history, restarts, BIC, AIC)."""

    def __init__(self, n_components=1, *, covariance_type="full", tol=None, reg_covar=None,
                 max_iter=None, n_init=1, init_params="kmeans", random_state=None,
                 warm_start=False, acceleration=None, server=DEFAULT_SERVER, channel=None,
                 credentials=None, token=None, timeout=None, retries=4, verbose=0, callback=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.warm_start = warm_start
        self.acceleration = acceleration
        self.server = server
        self.channel = channel
        self.credentials = credentials
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.verbose = verbose
        self.callback = callback

    # --- fitting ----------------------------------------------------------------------------

    def _spec(self):
        spec = pb.GaussianMixtureSpec(
            k=int(self.n_components),
            covariance_type=_base.choice(_data.COVARIANCE, self.covariance_type,
                                         "covariance_type"),
            init=_base.choice(_INIT, self.init_params, "init_params"))
        if self.reg_covar is not None:
            spec.reg_covar = float(self.reg_covar)
        return spec

    def fit(self, X, y=None, sample_weight=None):
        """Fits the mixture to X (rows x features, NaN for missing) on the server, with
        optional non-negative row weights. Returns self."""
        warm = self.warm_start and hasattr(self, "converged_")
        init = self._model() if warm else None
        matrix, names = self._validate_data(X, reset=True)
        header = pb.FitHeader(
            spec=pb.ModelSpec(gmm=self._spec()),
            options=_base.fit_options(self.max_iter, self.tol, self.n_init, self.random_state,
                                      self.acceleration))
        if init is not None:
            header.init.CopyFrom(init)  # one restart from the current parameters
        restarts = 1 if warm else max(1, int(self.n_init))
        result = self._fit_on_server(header, matrix, sample_weight, names, restarts)
        self._set_fitted(result.model.gmm, result.summary)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fits, then returns the most likely component of each row of X."""
        return self.fit(X, y, sample_weight).predict(X)

    def _set_fitted(self, gmm, summary):
        k, d = gmm.means.rows, gmm.means.cols
        covariance_type = _data.COVARIANCE_NAME[gmm.covariance_type]
        self.weights_ = np.asarray(gmm.weights, dtype=np.float64)
        self.means_ = _data.array(gmm.means)
        self.covariances_ = _data.covariances_array(gmm.covariances, covariance_type, k, d)
        self.precisions_cholesky_ = _precision_cholesky(self.covariances_, covariance_type)
        self.precisions_ = _precisions(self.precisions_cholesky_, covariance_type)
        self.lower_bound_ = float(summary.mean_log_likelihood)
        self._fitted_covariance_type = covariance_type
        self._set_summary(summary)

    def _model(self):
        """The fitted parameters (the attributes, as scikit-learn uses them) as a Model."""
        self._check_is_fitted("means_")
        covariance_type = self._fitted_covariance_type
        k, d = np.shape(self.means_)
        return pb.Model(gmm=pb.GaussianMixture(
            covariance_type=_data.COVARIANCE[covariance_type], weights=np.ravel(self.weights_),
            means=_data.matrix(self.means_),
            covariances=_data.covariances_matrix(self.covariances_, covariance_type, k, d)))

    # --- the E-step as a service ------------------------------------------------------------

    def _posteriors(self, X):
        model = self._model()
        matrix, _ = self._validate_data(X, reset=False)
        with self._client() as client:
            return client.posterior(model, matrix)

    def _score(self, X, sample_weight=None):
        model = self._model()
        matrix, _ = self._validate_data(X, reset=False)
        with self._client() as client:
            return client.score(model, matrix, sample_weight)

    def predict_proba(self, X):
        """Responsibilities, rows x n_components (each row sums to 1)."""
        return self._posteriors(X).responsibilities

    def predict(self, X):
        """The most likely component of each row (lowest index on ties)."""
        return self._posteriors(X).labels

    def score_samples(self, X):
        """ln p(x_i) of each row (over its observed coordinates; 0 if none is observed)."""
        return self._posteriors(X).log_likelihood

    def score(self, X, y=None, sample_weight=None):
        """Mean log-likelihood per row (rows with nothing observed are left out)."""
        return float(self._score(X, sample_weight).mean_log_likelihood)

    def bic(self, X):
        """Bayesian information criterion of X (lower is better)."""
        return float(self._score(X).bic)

    def aic(self, X):
        """Akaike information criterion of X (lower is better)."""
        return float(self._score(X).aic)

    # --- sampling (client-side) -------------------------------------------------------------

    def sample(self, n_samples=1):
        """Draws n_samples rows from the fitted mixture. Sampling runs here, in numpy, from
        the fitted attributes (no server call), as scikit-learn does: component counts from a
        multinomial, then normal draws, with random_state's RandomState. Returns (X, y), y the
        component of each row; rows are grouped by component."""
        self._check_is_fitted("means_")
        if n_samples < 1:
            raise ValueError("Invalid value for 'n_samples': %d. The sampling requires at "
                             "least one sample." % n_samples)
        _, d = self.means_.shape
        rng = _base.random_state_of(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        covariance_type = self._fitted_covariance_type
        if covariance_type == "full":
            X = np.vstack([rng.multivariate_normal(mean, cov, int(n))
                           for mean, cov, n in zip(self.means_, self.covariances_, counts)])
        elif covariance_type == "tied":
            X = np.vstack([rng.multivariate_normal(mean, self.covariances_, int(n))
                           for mean, n in zip(self.means_, counts)])
        else:
            X = np.vstack([mean + rng.standard_normal(size=(n, d)) * np.sqrt(cov)
                           for mean, cov, n in zip(self.means_, self.covariances_, counts)])
        y = np.concatenate([np.full(n, j, dtype=int) for j, n in enumerate(counts)])
        return X, y


def _precision_cholesky(covariances, covariance_type):
    """scikit-learn's precisions_cholesky_: for full and tied the upper-triangular U with
    U U^T = inverse covariance (the transposed inverse of the lower Cholesky factor); for diag
    and spherical 1 / sqrt(variance)."""
    if covariance_type in ("diag", "spherical"):
        return 1.0 / np.sqrt(covariances)

    def one(cov):
        lower = np.linalg.cholesky(cov)
        # The inverse of a lower-triangular factor is lower-triangular: keep its zeros exact.
        return np.tril(np.linalg.solve(lower, np.eye(cov.shape[0]))).T
    if covariance_type == "tied":
        return one(covariances)
    return np.stack([one(c) for c in covariances])


def _precisions(precisions_cholesky, covariance_type):
    """scikit-learn's precisions_ from precisions_cholesky_."""
    if covariance_type == "full":
        return np.stack([u @ u.T for u in precisions_cholesky])
    if covariance_type == "tied":
        return precisions_cholesky @ precisions_cholesky.T
    return precisions_cholesky ** 2


@dataclasses.dataclass
class Candidate:
    """One candidate of a model selection and how it ended (error set if it could not be
    fitted)."""
    index: int
    n_components: int
    covariance_type: str
    log_likelihood: float
    bic: float
    aic: float
    n_parameters: int
    converged: bool
    n_iter: int
    error: str = ""


@dataclasses.dataclass
class ModelSelection:
    """The outcome of emfit.select_model: every candidate in grid order (k-major), the index of
    the best by the criterion, and the best as a fitted GaussianMixture."""
    criterion: str
    candidates: List[Candidate]
    best_index: int
    best_estimator: Optional[GaussianMixture]


def select_model(X, n_components=range(1, 10), covariance_types=("full",), criterion="bic",
                 *, sample_weight=None, tol=None, reg_covar=None, max_iter=None, n_init=1,
                 init_params="kmeans", random_state=None, acceleration=None,
                 server=DEFAULT_SERVER, channel=None, credentials=None, token=None,
                 timeout=None, retries=4, verbose=0, callback=None):
    """Fits every (n_components, covariance_type) of the grid to X on the server, in
    parallel, and picks the best by BIC or AIC (lower is better). Returns a ModelSelection;
    callback receives IterationEvents whose candidate field says which fit they belong to."""
    template = GaussianMixture(
        tol=tol, reg_covar=reg_covar, max_iter=max_iter, n_init=n_init, init_params=init_params,
        random_state=random_state, acceleration=acceleration, server=server, channel=channel,
        credentials=credentials, token=token, timeout=timeout, retries=retries, verbose=verbose,
        callback=callback)
    ks = [int(k) for k in n_components]
    if isinstance(covariance_types, str):
        covariance_types = [covariance_types]
    header = pb.SelectModelHeader(
        gmm=template._spec(), k=ks,
        covariance_types=[_base.choice(_data.COVARIANCE, c, "covariance_types")
                          for c in covariance_types],
        options=_base.fit_options(max_iter, tol, n_init, random_state, acceleration),
        criterion=_base.choice(_CRITERION, criterion, "criterion"))
    matrix, names = template._validate_data(X, reset=True)
    with template._client() as client:
        result = template._call_with_progress(
            lambda on_event: client.select_model(header, matrix, sample_weight, names, on_event),
            total=int(max_iter or _base.DEFAULT_MAX_ITER) * max(1, int(n_init)) * len(ks) *
            len(header.covariance_types),
            label="select")
    candidates = [Candidate(
        index=c.index, n_components=c.k,
        covariance_type=_data.COVARIANCE_NAME[c.covariance_type],
        log_likelihood=c.summary.log_likelihood, bic=c.summary.bic, aic=c.summary.aic,
        n_parameters=c.summary.num_free_parameters, converged=c.summary.converged,
        n_iter=c.summary.iterations, error=c.error) for c in result.candidates]
    best = None
    if result.HasField("best_fit"):
        chosen = candidates[result.best]
        best = GaussianMixture(chosen.n_components, covariance_type=chosen.covariance_type,
                               **{k: v for k, v in template.get_params().items()
                                  if k not in ("n_components", "covariance_type")})
        best.n_features_in_ = template.n_features_in_
        if hasattr(template, "feature_names_in_"):
            best.feature_names_in_ = template.feature_names_in_
        best._set_fitted(result.best_fit.model.gmm, result.best_fit.summary)
    return ModelSelection(criterion=criterion, candidates=candidates, best_index=result.best,
                          best_estimator=best)
