"""What every estimator shares: scikit-learn's parameter protocol (get_params/set_params, so
sklearn.base.clone and GridSearchCV work), the connection parameters, feature-name checks, the
fit call with its progress callback and progress bar, and fitted-state checks. A family module
(mixture.py, ...) adds only its spec, its model conversion and its methods."""
import inspect
import sys
import warnings

import numpy as np

from . import _data
from ._client import Client
from ._progress import IterationEvent, ProgressBar
from .v1 import emfit_pb2 as pb

try:  # scikit-learn's own classes when it is installed, so its handlers catch ours
    from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
    _NOT_FITTED_BASES = (_SklearnNotFittedError,)
    _CONVERGENCE_BASES = (_SklearnConvergenceWarning,)
except ImportError:
    _NOT_FITTED_BASES = (ValueError, AttributeError)
    _CONVERGENCE_BASES = (UserWarning,)

NotFittedError = type("NotFittedError", _NOT_FITTED_BASES, {
    "__doc__": "A method that needs a fitted model was called before fit (a ValueError and an "
               "AttributeError, as scikit-learn's).",
    "__module__": "emfit"})
ConvergenceWarning = type("ConvergenceWarning", _CONVERGENCE_BASES, {
    "__doc__": "A fit stopped before meeting its tolerance (max_iter ran out).",
    "__module__": "emfit"})


class ServerWarning(UserWarning):
    """A warning event of the server (e.g. a restart failed numerically), with its code."""


ACCELERATION = {None: pb.ACCELERATION_NONE, "none": pb.ACCELERATION_NONE,
                "squarem": pb.ACCELERATION_SQUAREM}
# Iterations a progress bar expects per restart when max_iter is the server's default (1000 for
# every family).
DEFAULT_MAX_ITER = 1000


def choice(table, value, name):
    """table[value] (strings compared in lower case), or ValueError naming the parameter and
    the choices."""
    key = value.lower() if isinstance(value, str) else value
    if key not in table:
        raise ValueError("%s: must be one of %s, got %r"
                         % (name, ", ".join(repr(k) for k in table if k is not None), value))
    return table[key]


def fit_options(max_iter, tol, n_init, random_state, acceleration):
    """FitOptions; max_iter and tol of None are left unset, so the server's defaults apply."""
    options = pb.FitOptions(n_init=int(n_init), seed=seed_from(random_state),
                            acceleration=choice(ACCELERATION, acceleration, "acceleration"))
    if max_iter is not None:
        options.max_iter = int(max_iter)
    if tol is not None:
        options.tol = float(tol)
    return options


class EmfitEstimator:
    """Base of the estimators. Subclasses list their parameters in __init__, which stores
    each one verbatim (scikit-learn's convention), and implement the family hooks."""

    # --- scikit-learn's parameter protocol -------------------------------------------------

    @classmethod
    def _get_param_names(cls):
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self, deep=True):
        """The constructor's parameters as a dict (deep has no effect: no nested
        estimators)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Sets constructor parameters by name; returns self."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError("Invalid parameter %r for estimator %s. Valid parameters "
                                 "are: %r." % (name, type(self).__name__, valid))
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            if value is not default and not _equal(value, default):
                changed.append("%s=%r" % (name, value))
        return "%s(%s)" % (type(self).__name__, ", ".join(changed))

    # --- the connection ---------------------------------------------------------------------

    def _client(self):
        return Client(server=self.server, channel=self.channel, credentials=self.credentials,
                      token=self.token, timeout=self.timeout, retries=self.retries,
                      on_resend=self._report_resend if self.verbose else None)

    def _report_resend(self, error, attempt):
        """With verbose: a line on stderr before each re-send (as the CLI's)."""
        print("emfit: sending the call again (attempt %d of %d) after %s: %s"
              % (attempt, self.retries + 1, error.code.name, error.message), file=sys.stderr)

    # --- input checks -----------------------------------------------------------------------

    def _validate_data(self, X, reset, convert=_data.as_matrix):
        """X converted by convert (default: float64 rows); on fit (reset) records n_features_in_
        and feature_names_in_, on later calls checks X against them."""
        names = _data.feature_names(X)
        matrix = convert(X)
        if reset:
            self.n_features_in_ = matrix.shape[1]
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            return matrix, names
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is not None and names is not None and list(fitted) != list(names):
            raise ValueError("The feature names of X, %s, differ from those seen in fit, %s."
                             % (list(names), list(fitted)))
        if fitted is not None and names is None:
            warnings.warn("X does not have valid feature names, but %s was fitted with "
                          "feature names" % type(self).__name__, UserWarning)
        if fitted is None and names is not None:
            warnings.warn("X has feature names, but %s was fitted without feature names"
                          % type(self).__name__, UserWarning)
        if matrix.shape[1] != self.n_features_in_:
            raise ValueError("X has %d features, but %s is expecting %d features as input."
                             % (matrix.shape[1], type(self).__name__, self.n_features_in_))
        return matrix, names

    def _check_is_fitted(self, attribute):
        if not hasattr(self, attribute):
            raise NotFittedError(
                "This %s instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator." % type(self).__name__)

    # --- the fit call -----------------------------------------------------------------------

    def _fit_on_server(self, header, X, sample_weight=None, names=None, restarts=1, **texts):
        """Client.fit of header and X with the estimator's connection, callback and progress
        bar (max_iter, or the server's default, times restarts iterations). Returns the
        FitResult."""
        options = header.options
        max_iter = options.max_iter if options.HasField("max_iter") else DEFAULT_MAX_ITER
        with self._client() as client:
            return self._call_with_progress(
                lambda on_event: client.fit(header, X, sample_weight, names, on_event, **texts),
                total=max_iter * restarts, label="fit")

    def _set_summary(self, summary, stacklevel=4):
        """The fitted attributes every family has (converged_, n_iter_, summary_) from a
        FitSummary; a fit that ran out of iterations warns ConvergenceWarning."""
        self.converged_ = bool(summary.converged)
        self.n_iter_ = int(summary.iterations)
        self.summary_ = summary
        if not summary.converged and summary.reason == pb.TERMINATION_REASON_MAX_ITER:
            warnings.warn("The fit did not converge in %d iterations (%s). Try a larger "
                          "max_iter or tol." % (summary.iterations, summary.message),
                          ConvergenceWarning, stacklevel=stacklevel)

    def _call_with_progress(self, call, total, label):
        """Runs call(on_event) (Client.fit or Client.select_model) with this estimator's
        callback (an IterationEvent per iteration) and, when verbose, a progress bar on
        stderr; server warnings become ServerWarning. Returns the call's result."""
        bar = ProgressBar(self.verbose, total, label) if self.verbose else None
        callback = self.callback

        def on_event(event):
            kind = event.WhichOneof("kind")
            if kind == "iteration":
                it = event.iteration
                if it.DESCRIPTOR.name == "CandidateIteration":  # SelectModel
                    e = IterationEvent.from_proto(it.iteration, candidate=it.candidate)
                else:
                    e = IterationEvent.from_proto(it)
                if bar is not None:
                    bar.update(e)
                if callback is not None:
                    callback(e)
            elif kind in ("accepted", "heartbeat"):
                position = getattr(event, kind).queue_position
                if bar is not None and position > 0:
                    bar.queued(position)
            elif kind == "warning":
                warnings.warn("emfitd: %s: %s" % (event.warning.code, event.warning.message),
                              ServerWarning, stacklevel=4)

        complete = False
        try:
            result = call(on_event)
            complete = True
            return result
        finally:
            if bar is not None:
                bar.close(complete)


def seed_from(random_state):
    """The server's uint64 seed for a scikit-learn random_state: an int is used as is, None
    draws a fresh seed (as scikit-learn, fits then differ), a RandomState or Generator draws
    one from itself."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0 or random_state >= 2**64:
            raise ValueError("random_state: must be in [0, 2**64), got %d" % random_state)
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    raise ValueError("random_state: expected None, an int, a RandomState or a Generator, got %r"
                     % (random_state,))


def random_state_of(random_state):
    """A numpy RandomState for client-side draws (scikit-learn's check_random_state)."""
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.RandomState(random_state)
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    raise ValueError("random_state: expected None, an int, a RandomState or a Generator, got %r"
                     % (random_state,))


def _equal(a, b):
    try:
        return bool(a == b)
    except Exception:
        return False
