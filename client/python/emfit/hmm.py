"""Hidden Markov models: emfit.GaussianHMM, emfit.CategoricalHMM and emfit.PoissonHMM, with
hmmlearn's interface (startprob_, transmat_, lengths=, params/init_params letters, predict as
Viterbi), fitted by Baum-Welch on emfitd. docs/hmm.md describes the model, docs/python.md the
estimators."""
import dataclasses
from typing import List, Optional

import numpy as np

from . import _base
from . import _data
from ._client import DEFAULT_SERVER
from .v1 import emfit_pb2 as pb

_INIT = {"kmeans": pb.INIT_METHOD_KMEANS, "random": pb.INIT_METHOD_RANDOM}
_ALGORITHMS = ("viterbi", "map")
# The chain's letters (hmmlearn's): 's' startprob_, 't' transmat_.
_CHAIN = {"s": "startprob_", "t": "transmat_"}


@dataclasses.dataclass
class ConvergenceMonitor:
    """What hmmlearn's monitor_ tells about a fit: tol and n_iter (max_iter) as asked (None:
    the server's default), history (the log-likelihood of every iteration of the kept restart,
    iteration 0 the starting model; hmmlearn keeps the last two), iter (M-steps run) and
    converged (True only when the tolerance was met, never because max_iter ran out)."""
    tol: Optional[float]
    n_iter: Optional[int]
    history: List[float]
    iter: int
    converged: bool


@dataclasses.dataclass
class _Posteriors:
    """The Posterior call's answer for sequences: probabilities (steps x k), states (the
    Viterbi path), and per sequence its log-likelihood and Viterbi log-probability."""
    probabilities: np.ndarray
    states: np.ndarray
    log_likelihood: np.ndarray
    viterbi_log_probability: np.ndarray


class _BaseHMM(_base.EmfitEstimator):
    """What the three HMM estimators share: the fit (with lengths, sequence weights, params and
    init_params), the E-step calls, decoding, criteria and sampling. A subclass gives its
    emission type, its letters and attributes, and the conversion of its emissions."""

    # Set by subclasses.
    _EMISSION = None   # pb.EmissionType
    _LETTERS = ""      # every letter of params/init_params, e.g. "stmc"
    _EMISSION_ATTRIBUTES = {}  # the attribute of each emission letter, e.g. {"m": "means_"}

    # --- hooks of the emissions -------------------------------------------------------------

    def _values(self, X, reset, fitting):
        """X as the streamed float64 rows and its column names (NaN: missing). reset: X
        defines the columns (fit, or a model set by hand); fitting: for fit."""
        return self._validate_data(X, reset=reset)

    def _spec(self):
        return pb.HiddenMarkovModelSpec(k=int(self.n_components), emission=self._EMISSION,
                                        init=_base.choice(_INIT, self.init, "init"))

    def _set_emissions(self, hmm):
        """Sets the emission attributes from a HiddenMarkovModel message."""
        raise NotImplementedError

    def _put_emissions(self, hmm, letters, k):
        """Writes the emission parameters of `letters` from the attributes into hmm (a
        HiddenMarkovModel message), checking their shapes for k states."""
        raise NotImplementedError

    def _draw(self, state, rng):
        """One observation (a row) drawn from the state's emission distribution."""
        raise NotImplementedError

    # --- fitting ----------------------------------------------------------------------------

    def _letters(self, value, name):
        letters = set(value or "")
        unknown = letters - set(self._LETTERS)
        if unknown:
            raise ValueError("%s: letters of %r, got %r (unknown: %s)"
                             % (name, self._LETTERS, value, "".join(sorted(unknown))))
        return letters

    def _attribute_of(self, letter):
        return _CHAIN.get(letter) or self._EMISSION_ATTRIBUTES[letter]

    def fit(self, X, lengths=None, sample_weight=None):
        """Fits the model to the sequences of X by Baum-Welch on the server. Returns self.

        X: rows x features (NaN for missing values), consecutive sequences of lengths (each
        >= 1, adding up to the rows; None: X is one sequence), in time order. Sequences are
        never joined: each starts from startprob_. sample_weight: one non-negative weight per
        sequence (an integer weight equals repeating the sequence), or None."""
        updated = self._letters(self.params, "params")
        initialised = self._letters(self.init_params, "init_params")
        emission_letters = set(self._LETTERS) - set(_CHAIN)
        if updated & emission_letters and emission_letters - updated:
            raise ValueError("params: emfit holds the emission parameters fixed or updates them "
                             "as a whole; give all of %r or none, got %r"
                             % ("".join(sorted(emission_letters)), self.params))
        values, names = self._values(X, reset=True, fitting=True)
        rows = values.shape[0]
        lengths = _data.as_lengths(lengths, rows)
        weights = self._row_weights(sample_weight, lengths, rows)
        spec = self._spec()
        options = _base.fit_options(self.max_iter, self.tol, self.n_init, self.random_state,
                                    self.acceleration)
        # hmmlearn's rule: a letter of init_params, or a parameter without its attribute, is
        # initialised; the others start from the attributes. Held (fixed) parameters and a mix
        # of the attributes and initialised parameters need a starting model: the server's
        # initialisation (a fit of max_iter=0: the best of n_init starts) with the
        # attributes' parameters put in.
        every = set(self._LETTERS)
        given = {c for c in every
                 if c not in initialised and hasattr(self, self._attribute_of(c))}
        fixed = every - updated
        start = None
        if given == every:
            start = self._model(int(self.n_components))
        elif given or fixed:
            start = self._initialised_model(spec, options, values, weights, names, lengths)
            self._put(start.hmm, given, int(self.n_components))
        header = pb.FitHeader(spec=pb.ModelSpec(hmm=spec), options=options)
        if start is not None:
            header.init.CopyFrom(start)
            spec = header.spec.hmm
            spec.fix_start = "s" in fixed
            spec.fix_transitions = "t" in fixed
            spec.fix_emissions = bool(emission_letters & fixed)
        restarts = 1 if start is not None else max(1, int(self.n_init))
        result = self._fit_on_server(header, values, weights, names, restarts,
                                     sequence_lengths=lengths)
        self._set_fitted(result.model.hmm, result.summary)
        return self

    def _initialised_model(self, spec, options, values, weights, names, lengths):
        """The server's starting model for spec: a fit of max_iter=0 (no progress events)."""
        header = pb.FitHeader(spec=pb.ModelSpec(hmm=spec), options=options)
        header.options.max_iter = 0
        with self._client() as client:
            return client.fit(header, values, weights, names, sequence_lengths=lengths).model

    def _put(self, hmm, letters, k):
        """Writes the parameters of `letters` from the attributes into hmm (a
        HiddenMarkovModel message), checking their shapes for k states."""
        if "s" in letters:
            start = np.asarray(self.startprob_, dtype=np.float64)
            _check_shape(start, (k,), "startprob_")
            hmm.ClearField("startprob")
            hmm.startprob.extend(start)
        if "t" in letters:
            transitions = np.asarray(self.transmat_, dtype=np.float64)
            _check_shape(transitions, (k, k), "transmat_")
            hmm.transmat.CopyFrom(_data.matrix(transitions))
        self._put_emissions(hmm, letters, k)

    @staticmethod
    def _row_weights(sample_weight, lengths, rows):
        """One weight per sequence, repeated on its rows (the server's weight column)."""
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        counts = lengths if lengths is not None else np.array([rows], dtype=np.uint64)
        if w.shape[0] != len(counts):
            raise ValueError("sample_weight: expected one weight per sequence (%d), got %d"
                             % (len(counts), w.shape[0]))
        return np.repeat(w, counts.astype(np.int64))

    def _set_fitted(self, hmm, summary):
        self.startprob_ = np.asarray(hmm.startprob, dtype=np.float64)
        self.transmat_ = _data.array(hmm.transmat)
        self._set_emissions(hmm)
        self.monitor_ = ConvergenceMonitor(
            tol=self.tol, n_iter=self.max_iter, history=list(summary.history),
            iter=int(summary.iterations), converged=bool(summary.converged))
        self._set_summary(summary)

    def _model(self, k=None):
        """The parameters (the attributes, fitted or set by hand) as a Model of k states
        (default: startprob_'s)."""
        self._check_is_fitted("startprob_")
        model = pb.Model()
        self._put(model.hmm, set(self._LETTERS), len(np.ravel(self.startprob_)) if k is None else k)
        return model

    # --- the E-step as a service ------------------------------------------------------------

    def _input(self, X, lengths):
        """The model, X's values and lengths of a Posterior or Score call. A model set by hand
        (never fitted) takes X's columns as its own."""
        self._check_is_fitted("startprob_")
        values, _ = self._values(X, reset=not hasattr(self, "n_features_in_"), fitting=False)
        return self._model(), values, _data.as_lengths(lengths, values.shape[0])

    def _posteriors(self, X, lengths):
        model, values, lengths = self._input(X, lengths)
        with self._client() as client:
            blocks = client.posterior_blocks(model, values, sequence_lengths=lengths)
        return _Posteriors(
            probabilities=np.concatenate([_data.array(b.responsibilities) for b in blocks]),
            states=np.concatenate([np.asarray(b.labels, dtype=np.int64) for b in blocks]),
            log_likelihood=np.concatenate(
                [np.asarray(b.hmm.log_likelihood, dtype=np.float64) for b in blocks]),
            viterbi_log_probability=np.concatenate(
                [np.asarray(b.hmm.viterbi_log_probability, dtype=np.float64) for b in blocks]))

    def _score(self, X, lengths):
        model, values, lengths = self._input(X, lengths)
        with self._client() as client:
            return client.score(model, values, sequence_lengths=lengths)

    def score(self, X, lengths=None):
        """The log-likelihood of X: the sum over its sequences (the server's Score)."""
        return float(self._score(X, lengths).log_likelihood)

    def score_samples(self, X, lengths=None):
        """(log-likelihood of X, state probabilities steps x n_components), as hmmlearn. The
        log-likelihood is the sum of the sequences' (it may differ from score() in the last
        bits: another order of summation)."""
        post = self._posteriors(X, lengths)
        return float(np.sum(post.log_likelihood)), post.probabilities

    def predict_proba(self, X, lengths=None):
        """The state probabilities of every step (forward-backward), steps x n_components."""
        return self._posteriors(X, lengths).probabilities

    def decode(self, X, lengths=None, algorithm=None):
        """(log_prob, states) of X, as hmmlearn. algorithm (default: the estimator's):
        'viterbi': the most probable path of each sequence (ties to the lowest state) and the
        sum of their log-probabilities ln p(X, path); 'map': each step's most probable state
        (lowest on ties) and, as its log_prob, the log-likelihood of X."""
        algorithm = algorithm or self.algorithm
        if algorithm not in _ALGORITHMS:
            raise ValueError("algorithm: must be one of %s, got %r"
                             % (", ".join(repr(a) for a in _ALGORITHMS), algorithm))
        post = self._posteriors(X, lengths)
        if algorithm == "viterbi":
            return float(np.sum(post.viterbi_log_probability)), post.states
        return float(np.sum(post.log_likelihood)), np.argmax(post.probabilities, axis=1)

    def predict(self, X, lengths=None):
        """Each step's state by the estimator's algorithm (default: the Viterbi path)."""
        return self.decode(X, lengths)[1]

    def bic(self, X, lengths=None):
        """Bayesian information criterion of X (lower is better; the server's Score, whose
        parameter count takes exact zeros of startprob_ and transmat_ as structural)."""
        return float(self._score(X, lengths).bic)

    def aic(self, X, lengths=None):
        """Akaike information criterion of X (lower is better; the server's Score)."""
        return float(self._score(X, lengths).aic)

    # --- sampling (client-side) -------------------------------------------------------------

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draws one sequence of n_samples steps from the model. Sampling runs here, in numpy,
        from the attributes (no server call), with hmmlearn's algorithm: the first state from
        startprob_ (or currstate), each next one from its row of transmat_, then each step's
        observation from its state's emission, with a RandomState made from random_state (or,
        when None, the estimator's random_state: an int makes draws repeatable). Returns
        (X, states), X steps x features (CategoricalHMM: steps x 1 of its symbols)."""
        self._check_is_fitted("startprob_")
        if n_samples < 1:
            raise ValueError("n_samples: must be >= 1, got %d" % n_samples)
        rng = _base.random_state_of(self.random_state if random_state is None else random_state)
        transmat_cdf = np.cumsum(self.transmat_, axis=1)
        if currstate is None:
            currstate = int((np.cumsum(self.startprob_) > _uniform(rng)).argmax())
        states = [currstate]
        rows = [self._draw(currstate, rng)]
        for _ in range(n_samples - 1):
            currstate = int((transmat_cdf[currstate] > _uniform(rng)).argmax())
            states.append(currstate)
            rows.append(self._draw(currstate, rng))
        return self._sampled(rows), np.array(states, dtype=int)

    def _sampled(self, rows):
        return np.atleast_2d(np.asarray(rows))


def _uniform(rng):
    """A uniform draw in [0, 1) from a RandomState (hmmlearn's rand()) or a Generator."""
    return rng.random() if isinstance(rng, np.random.Generator) else rng.rand()


def _check_shape(a, shape, name):
    if a.shape != tuple(shape):
        raise ValueError("%s: expected shape %s, got %s" % (name, tuple(shape), a.shape))


class GaussianHMM(_BaseHMM):
    """A hidden Markov model with Gaussian emissions, fitted by Baum-Welch on an emfitd server,
    with hmmlearn's interface.

    Parameters (hmmlearn's where it has them):
      n_components: the number of hidden states k.
      covariance_type: 'full' (the default; hmmlearn's is 'diag'), 'diag', 'tied',
        'spherical'.
      reg_covar: added to the diagonal of every covariance after each M-step (None: the
        server's 1e-6). hmmlearn's min_covar only floors its starting covariances and its
        covars_prior regularises; neither exists here.
      algorithm: 'viterbi' (default) or 'map', the decoder of predict and decode.
      tol, max_iter: None leaves them to the server: 1e-6 on the change of the mean
        log-likelihood per step, 1000 iterations (hmmlearn's n_iter=10 and tol=1e-2 on the
        total stop most fits short of their maximum).
      n_init: restarts (in parallel on the server; the best is kept).
      params: the letters of the parameters fit updates ('s' startprob_, 't' transmat_, 'm'
        means_, 'c' covars_); the others are held at their starting values, exactly. 'm' and
        'c' go together (the emissions are held or updated as a whole).
      init_params: the letters of the parameters fit initialises (from the data, or random
        with init='random'); the others start from the attributes (set by hand, or a previous
        fit: init_params='' continues it). Zeros of a starting startprob_ or transmat_ stay
        exactly zero (left-right models).
      init: 'kmeans' (from the data: k-means means and covariances) or 'random'.
      random_state: an int makes fits (the server's seed) and sample() repeatable; None draws
        a fresh seed per fit.
      acceleration: None or 'squarem'.
      server, channel, credentials, token, timeout, retries, verbose, callback: as
        emfit.GaussianMixture's.

    fit(X, lengths=None, sample_weight=None): X is steps x features (NaN: missing, handled
    exactly: each step's observed coordinates); lengths cut it into consecutive sequences, each
    from its own start (never joined). pandas DataFrames keep their column names
    (feature_names_in_), checked on later calls.

    Fitted attributes: startprob_ (k,), transmat_ (k, k), means_ (k, d), covars_ (k, d, d)
    whatever the covariance_type, as hmmlearn's (set it in hmmlearn's per-type shape: full
    (k, d, d), tied (d, d), diag (k, d), spherical (k,)), monitor_ (a ConvergenceMonitor:
    history, iter, converged), converged_, n_iter_, n_features_in_, feature_names_in_ and
    summary_ (the server's FitSummary: termination reason, every restart, BIC, AIC)."""

    _EMISSION = pb.EMISSION_TYPE_GAUSSIAN
    _LETTERS = "stmc"
    _EMISSION_ATTRIBUTES = {"m": "means_", "c": "_covars_"}

    def __init__(self, n_components=1, covariance_type="full", *, reg_covar=None,
                 algorithm="viterbi", tol=None, max_iter=None, n_init=1, params="stmc",
                 init_params="stmc", init="kmeans", random_state=None, acceleration=None,
                 server=DEFAULT_SERVER, channel=None, credentials=None, token=None,
                 timeout=None, retries=4, verbose=0, callback=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.algorithm = algorithm
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.params = params
        self.init_params = init_params
        self.init = init
        self.random_state = random_state
        self.acceleration = acceleration
        self.server = server
        self.channel = channel
        self.credentials = credentials
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.verbose = verbose
        self.callback = callback

    @property
    def covars_(self):
        """The covariance of every state, (k, d, d), whatever the covariance type (hmmlearn's
        convention)."""
        covars, covariance_type = self._covars_, self._covars_type
        k, d = np.shape(self.means_)
        if covariance_type == "full":
            return covars
        if covariance_type == "tied":
            return np.tile(covars, (k, 1, 1))
        if covariance_type == "diag":
            return np.array([np.diag(c) for c in covars])
        return np.ravel(covars)[:, None, None] * np.eye(d)[None, :, :]

    @covars_.setter
    def covars_(self, covars):
        """Set in the shape of covariance_type: full (k, d, d), tied (d, d), diag (k, d),
        spherical (k,)."""
        _base.choice(_data.COVARIANCE, self.covariance_type, "covariance_type")
        self._covars_type = self.covariance_type.lower()
        self._covars_ = np.array(covars, dtype=np.float64)

    def _spec(self):
        spec = super()._spec()
        spec.covariance_type = _base.choice(_data.COVARIANCE, self.covariance_type,
                                            "covariance_type")
        if self.reg_covar is not None:
            spec.reg_covar = float(self.reg_covar)
        return spec

    def _set_emissions(self, hmm):
        g = hmm.gaussian
        k, d = g.means.rows, g.means.cols
        self.means_ = _data.array(g.means)
        self._covars_type = _data.COVARIANCE_NAME[g.covariance_type]
        self._covars_ = _data.covariances_array(g.covariances, self._covars_type, k, d)

    def _put_emissions(self, hmm, letters, k):
        g = hmm.gaussian
        if "m" in letters:
            means = np.asarray(self.means_, dtype=np.float64)
            if means.ndim != 2 or means.shape[0] != k:
                raise ValueError("means_: expected shape (%d, n_features), got %s"
                                 % (k, means.shape))
            g.means.CopyFrom(_data.matrix(means))
        if "c" in letters:
            covariance_type = self._covars_type
            covars = self._covars_
            d = g.means.cols if g.means.cols else \
                (covars.shape[-1] if covariance_type != "spherical" else 1)
            _check_shape(covars, {"full": (k, d, d), "tied": (d, d), "diag": (k, d),
                                  "spherical": (k,)}[covariance_type],
                         "covars_ (%s)" % covariance_type)
            g.covariance_type = _data.COVARIANCE[covariance_type]
            g.covariances.CopyFrom(_data.covariances_matrix(covars, covariance_type, k, d))

    def _draw(self, state, rng):
        return rng.multivariate_normal(self.means_[state], self.covars_[state])


class PoissonHMM(_BaseHMM):
    """A hidden Markov model with Poisson emissions: one or more count columns, independent
    given the state, one rate per state and column (lambdas_, (k, d)). Parameters and methods
    as emfit.GaussianHMM's, with params and init_params letters 's', 't', 'l' (lambdas_);
    init='kmeans' starts the rates from quantiles of the counts. X holds non-negative integer
    counts (NaN: missing)."""

    _EMISSION = pb.EMISSION_TYPE_POISSON
    _LETTERS = "stl"
    _EMISSION_ATTRIBUTES = {"l": "lambdas_"}

    def __init__(self, n_components=1, *, algorithm="viterbi", tol=None, max_iter=None,
                 n_init=1, params="stl", init_params="stl", init="kmeans", random_state=None,
                 acceleration=None, server=DEFAULT_SERVER, channel=None, credentials=None,
                 token=None, timeout=None, retries=4, verbose=0, callback=None):
        self.n_components = n_components
        self.algorithm = algorithm
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.params = params
        self.init_params = init_params
        self.init = init
        self.random_state = random_state
        self.acceleration = acceleration
        self.server = server
        self.channel = channel
        self.credentials = credentials
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.verbose = verbose
        self.callback = callback

    def _set_emissions(self, hmm):
        self.lambdas_ = _data.array(hmm.poisson.rates)

    def _put_emissions(self, hmm, letters, k):
        if "l" in letters:
            rates = np.asarray(self.lambdas_, dtype=np.float64)
            if rates.ndim != 2 or rates.shape[0] != k:
                raise ValueError("lambdas_: expected shape (%d, n_features), got %s"
                                 % (k, rates.shape))
            hmm.poisson.rates.CopyFrom(_data.matrix(rates))

    def _draw(self, state, rng):
        return rng.poisson(self.lambdas_[state])


class CategoricalHMM(_BaseHMM):
    """A hidden Markov model with categorical emissions: one column of symbols, one
    probability vector per state (emissionprob_, (k, M)). Parameters and methods as
    emfit.GaussianHMM's, with params and init_params letters 's', 't', 'e' (emissionprob_),
    and:
      n_features: None (the symbols of the data), M (the symbols are the integers 0..M-1,
        hmmlearn's meaning), or the symbols' names in order (e.g. ['A', 'C', 'G', 'T'], some
        perhaps absent from the data).

    X is a column of symbols (steps x 1, or a 1-D list): integers 0..M-1 (hmmlearn's
    convention: emissionprob_[:, m] is symbol m's), or names (strings). Names are sorted (as
    numbers when they all are integers, else as text, as the emfit CLI sorts them), and travel
    with the model (the server's model carries them): later calls map their symbols by name and
    an unknown symbol is a ValueError naming its row. None, NaN, pandas' NA or '' is a missing
    symbol (the chain advances over it). symbols_ holds the symbols in emissionprob_'s column
    order (integers 0..M-1, or the names); sample() returns symbols."""

    _EMISSION = pb.EMISSION_TYPE_CATEGORICAL
    _LETTERS = "ste"
    _EMISSION_ATTRIBUTES = {"e": "emissionprob_"}

    def __init__(self, n_components=1, *, n_features=None, algorithm="viterbi", tol=None,
                 max_iter=None, n_init=1, params="ste", init_params="ste", init="kmeans",
                 random_state=None, acceleration=None, server=DEFAULT_SERVER, channel=None,
                 credentials=None, token=None, timeout=None, retries=4, verbose=0, callback=None):
        self.n_components = n_components
        self.n_features = n_features
        self.algorithm = algorithm
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.params = params
        self.init_params = init_params
        self.init = init
        self.random_state = random_state
        self.acceleration = acceleration
        self.server = server
        self.channel = channel
        self.credentials = credentials
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.verbose = verbose
        self.callback = callback

    # The symbols: `_symbol_names` (None: the integers 0..M-1) and symbols_, set by fit (or by
    # the first call of a model set by hand), used by every later call.

    def _values(self, X, reset, fitting):
        cells, names = self._validate_data(X, reset=reset, convert=_symbol_column)
        if reset:
            # Emissions that start from the attributes keep their symbols.
            kept = hasattr(self, "emissionprob_") and \
                (not fitting or "e" not in (self.init_params or ""))
            self._symbol_names, count = self._symbol_table(cells, kept)
            self.symbols_ = np.arange(count) if self._symbol_names is None else \
                np.array(self._symbol_names, dtype=object)
        return _encode(cells, self._symbol_names, len(self.symbols_)), names

    def _symbol_table(self, cells, kept):
        """(names or None, M) of a fit on cells."""
        declared = self.n_features
        if declared is not None and not isinstance(declared, (int, np.integer)):
            names = [_text(s) for s in declared]
            return names, len(names)
        if kept and hasattr(self, "symbols_"):
            return self._symbol_names, len(self.symbols_)
        numbers = _integer_symbols(cells)
        if numbers is not None:
            if declared is not None:
                return None, int(declared)
            if kept:
                return None, np.shape(self.emissionprob_)[-1]
            observed = numbers[~np.isnan(numbers)]
            return None, int(observed.max()) + 1 if observed.size else 1
        names = _sorted_names(cells)
        if declared is not None and int(declared) != len(names):
            raise ValueError("n_features: %d symbols declared, but the data hold %d names (%s); "
                             "declare names by listing them, n_features=[...]"
                             % (declared, len(names), ", ".join(names[:10])))
        return names, len(names)

    def _spec(self):
        spec = super()._spec()
        spec.n_symbols = len(self.symbols_)
        if self._symbol_names is not None:
            spec.symbols.extend(self._symbol_names)
        return spec

    def _set_emissions(self, hmm):
        c = hmm.categorical
        self.emissionprob_ = _data.array(c.probabilities)
        self._symbol_names = list(c.symbols) or None
        self.symbols_ = np.arange(c.probabilities.cols) if self._symbol_names is None else \
            np.array(self._symbol_names, dtype=object)

    def _put_emissions(self, hmm, letters, k):
        if "e" in letters:
            p = np.asarray(self.emissionprob_, dtype=np.float64)
            if p.ndim != 2 or p.shape[0] != k:
                raise ValueError("emissionprob_: expected shape (%d, n_symbols), got %s"
                                 % (k, p.shape))
            hmm.categorical.probabilities.CopyFrom(_data.matrix(p))
            hmm.categorical.ClearField("symbols")
            names = getattr(self, "_symbol_names", None)
            if names is not None:
                if len(names) != p.shape[1]:
                    raise ValueError("emissionprob_: %d columns for the %d symbols (%s)"
                                     % (p.shape[1], len(names), ", ".join(names[:10])))
                hmm.categorical.symbols.extend(names)

    def _draw(self, state, rng):
        cdf = np.cumsum(self.emissionprob_[state, :])
        return [(cdf > _uniform(rng)).argmax()]

    def _sampled(self, rows):
        index = np.asarray(rows, dtype=np.int64).reshape(-1, 1)
        symbols = getattr(self, "symbols_", None)
        return index if symbols is None else symbols[index]


def _is_missing(cell):
    if cell is None or (isinstance(cell, str) and cell == ""):
        return True
    if isinstance(cell, (float, np.floating)):
        return bool(np.isnan(cell))
    return type(cell).__name__ in ("NAType", "NaTType")  # pandas' NA and NaT


def _symbol_column(X):
    """X as a (steps, 1) array of symbols, any dtype (objects kept: names, None, pandas NA)."""
    if hasattr(X, "to_numpy"):  # pandas DataFrame or Series
        X = X.to_numpy()
    # A list's cells as they are (numpy would turn ['a', nan] into the strings 'a', 'nan').
    a = X if isinstance(X, np.ndarray) else np.array(X, dtype=object)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2 or a.shape[1] != 1:
        raise ValueError("X: categorical emissions read one column of symbols (steps x 1), got "
                         "shape %s" % (a.shape,))
    if a.shape[0] < 1:
        raise ValueError("X: expected at least one step")
    return a


def _integer_symbols(cells):
    """The cells as float64 (NaN: missing) when every observed one is an integer (a number
    with an integral value, not a bool), else None."""
    flat = cells[:, 0]
    if flat.dtype.kind in "iu":
        return flat.astype(np.float64)
    if flat.dtype.kind == "f":
        observed = flat[~np.isnan(flat)]
        return flat.astype(np.float64) if np.all(observed == np.round(observed)) else None
    if flat.dtype.kind != "O":
        return None
    out = np.empty(len(flat))
    for i, c in enumerate(flat):
        if _is_missing(c):
            out[i] = np.nan
        elif isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)):
            out[i] = c
        elif isinstance(c, (float, np.floating)) and float(c).is_integer():
            out[i] = c
        else:
            return None
    return out


def _text(cell):
    """A symbol's name: integral numbers without a fraction ('3', not '3.0'), else str."""
    if isinstance(cell, (int, np.integer)) and not isinstance(cell, (bool, np.bool_)):
        return str(int(cell))
    if isinstance(cell, (float, np.floating)) and float(cell).is_integer():
        return str(int(cell))
    return str(cell)


def _sorted_names(cells):
    """The distinct names of the observed cells, sorted as the emfit CLI sorts them: as
    integers when they all are integers, else as text."""
    names = sorted({_text(c) for c in cells[:, 0] if not _is_missing(c)})
    try:
        return sorted(names, key=lambda n: (int(n), n))
    except ValueError:
        return names


def _encode(cells, names, count):
    """The symbols' indices as a (steps, 1) float64 column (NaN: missing): by name when the
    model has names, else the integers themselves. An unknown symbol is a ValueError naming
    its row (1-based) and the model's symbols."""
    out = np.empty((cells.shape[0], 1))
    if names is None:
        numbers = _integer_symbols(cells)
        if numbers is None:
            raise ValueError("X: the model's symbols are the integers 0..%d; the data hold "
                             "other values (names need a model fitted on names)" % (count - 1))
        bad = ~np.isnan(numbers) & ((numbers < 0) | (numbers >= count))
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError("X: row %d: symbol %d is not one of the model's %d symbols "
                             "(0..%d)" % (row + 1, numbers[row], count, count - 1))
        out[:, 0] = numbers
        return out
    index = {n: float(m) for m, n in enumerate(names)}
    for row, c in enumerate(cells[:, 0]):
        if _is_missing(c):
            out[row, 0] = np.nan
            continue
        m = index.get(_text(c))
        if m is None:
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise ValueError("X: row %d: symbol %r is not one of the model's %d symbols (%s)"
                             % (row + 1, _text(c), len(names), shown))
        out[row, 0] = m
    return out
