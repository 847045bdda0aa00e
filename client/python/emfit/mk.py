"""Mk models of discrete trait evolution on a phylogeny: emfit.MkModel (phytools' fitMk, fitted
by EM on emfitd), with ancestral states (posterior) and stochastic character maps
(sample_histories). docs/mk.md describes the model, docs/python.md the estimator."""
import dataclasses
import os
from typing import List

import numpy as np

from . import _base
from . import _data
from ._client import DEFAULT_SERVER
from .v1 import emfit_pb2 as pb

_RATE_MODEL = {"er": pb.RATE_MODEL_ER, "sym": pb.RATE_MODEL_SYM, "ard": pb.RATE_MODEL_ARD}
_ROOT = {"equal": pb.ROOT_PRIOR_EQUAL, "stationary": pb.ROOT_PRIOR_STATIONARY}
_ESTEP = {"exact": pb.E_STEP_METHOD_EXACT, "monte-carlo": pb.E_STEP_METHOD_MONTE_CARLO,
          "monte_carlo": pb.E_STEP_METHOD_MONTE_CARLO}
_SAMPLER = {"auto": pb.PATH_SAMPLER_AUTO, "rejection": pb.PATH_SAMPLER_REJECTION,
            "modified_rejection": pb.PATH_SAMPLER_MODIFIED_REJECTION,
            "uniformization": pb.PATH_SAMPLER_UNIFORMIZATION}
_MISSING = ("", "?", "-")


def read_tree(tree):
    """Newick text as bytes: `tree` is the text itself (a str ending in ';') or a path."""
    if isinstance(tree, bytes):
        return tree
    if isinstance(tree, str) and tree.rstrip().endswith(";"):
        return tree.encode()
    with open(os.fspath(tree), "rb") as f:
        return f.read()


def tip_pairs(tips):
    """(labels, states) of `tips`: a dict {label: state}, a pandas Series indexed by label, or
    pairs (label, state). A state is a name, names joined by '|' (ambiguous), or '?', '-', ''
    or None (missing)."""
    if hasattr(tips, "items"):
        items = list(tips.items())
    else:
        items = [tuple(t) for t in tips]
    labels = [str(label) for label, _ in items]
    states = ["" if s is None or (isinstance(s, float) and np.isnan(s)) else str(s)
              for _, s in items]
    return labels, states


def state_names(states):
    """The distinct states of `states` (ambiguous ones split, missing ones skipped), sorted as
    emfit's core sorts them (byte order, R's order of factor levels for ASCII names)."""
    names = set()
    for s in states:
        for part in s.split("|"):
            part = part.strip()
            if part not in _MISSING:
                names.add(part)
    return sorted(names, key=lambda n: n.encode())


def tip_likelihoods(labels, states, names):
    """Rows of tip likelihoods (len(labels) x k): 1 for each state a tip may be in (all ones
    when missing), as emfit's core reads states (mk::TipLikelihoods)."""
    index = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(states), len(names)))
    for r, s in enumerate(states):
        s = s.strip()
        if s in _MISSING:
            out[r] = 1
            continue
        for part in s.split("|"):
            part = part.strip()
            if part not in index:
                raise ValueError("tips: row %d (%r): state %r is not one of the declared states "
                                 "(%s)" % (r + 1, labels[r], part, ", ".join(names)))
            out[r, index[part]] = 1
    return out


@dataclasses.dataclass
class NodePosteriors:
    """Every node's posterior, in emfit's node numbering (tips 0..num_tips-1 in Newick order,
    then internal nodes in the order of their '('; ape's number is node + 1).

    Attributes: node_labels, parents (-1 for the root), branch_lengths (NaN for a root without
    one), probabilities (nodes x k, rows sum to 1), states (the most probable state's name),
    num_tips, log_likelihood, expected_transitions (k x k changes i -> j over the tree),
    expected_times (k)."""
    node_labels: List[str]
    parents: np.ndarray
    branch_lengths: np.ndarray
    probabilities: np.ndarray
    states: List[str]
    num_tips: int
    log_likelihood: float
    expected_transitions: np.ndarray
    expected_times: np.ndarray


@dataclasses.dataclass
class Histories:
    """Stochastic character maps: maps (one SIMMAP tree per map, as phytools::read.simmap reads
    them) and their summary: mean_transitions (k x k changes per map), mean_times (k),
    node_frequencies (nodes x k share of maps with each node in each state), node_labels."""
    maps: List[str]
    mean_transitions: np.ndarray
    mean_times: np.ndarray
    node_frequencies: np.ndarray
    node_labels: List[str]
    num_tips: int


class MkModel(_base.EmfitEstimator):
    """An Mk model of a discrete trait on a tree, fitted by EM on an emfitd server.

    Parameters:
      rate_model: 'ER', 'SYM', 'ARD' (phytools' names), or a k x k index matrix (equal
        positive values share a rate, 0 forbids the change).
      root: 'equal' (phytools' default), 'stationary', or k probabilities.
      estep: 'exact' or 'monte-carlo' (Monte Carlo EM; mcem_tol and max_sample_size apply).
      states: the state names in order; None: the states of the tips, sorted.
      tol, max_iter: None leaves them to the server (Mk: 1e-10 and 1000, docs/mk.md).
      n_init, random_state, acceleration (None or 'squarem'), allow_missing_tips, and the
      connection (server, channel, credentials, token, timeout, retries), verbose and callback
      as for emfit.GaussianMixture.

    fit(tree, tips): tree is Newick text or a path; tips a dict {label: state}, a pandas Series
    or pairs. Fitted attributes: states_, q_ (k x k generator), rates_ (the free rates in
    phytools' order, as fitMk()$rates), index_, root_probs_ (given root only), loglik_, aic_,
    bic_, n_iter_, converged_, summary_ (the server's FitSummary), rate_standard_errors_ (Monte
    Carlo EM), and the tree summary at the fit: node_posteriors_ (a NodePosteriors)."""

    def __init__(self, rate_model="ER", *, root="equal", estep="exact", states=None, tol=None,
                 max_iter=None, n_init=1, random_state=None, acceleration=None, mcem_tol=None,
                 max_sample_size=None, allow_missing_tips=False, server=DEFAULT_SERVER,
                 channel=None, credentials=None, token=None, timeout=None, retries=4, verbose=0,
                 callback=None):
        self.rate_model = rate_model
        self.root = root
        self.estep = estep
        self.states = states
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.acceleration = acceleration
        self.mcem_tol = mcem_tol
        self.max_sample_size = max_sample_size
        self.allow_missing_tips = allow_missing_tips
        self.server = server
        self.channel = channel
        self.credentials = credentials
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.verbose = verbose
        self.callback = callback

    # --- fitting ----------------------------------------------------------------------------

    def _spec(self, names):
        spec = pb.MkSpec(state_names=names, estep=_base.choice(_ESTEP, self.estep, "estep"))
        if isinstance(self.rate_model, str):
            spec.rate_model = _base.choice(_RATE_MODEL, self.rate_model, "rate_model")
        else:
            spec.rate_model = pb.RATE_MODEL_CUSTOM
            spec.index.CopyFrom(_data.matrix(self.rate_model))
        if isinstance(self.root, str):
            spec.root = _base.choice(_ROOT, self.root, "root")
        else:
            spec.root = pb.ROOT_PRIOR_GIVEN
            spec.root_probs.extend(np.asarray(self.root, dtype=np.float64).ravel())
        if self.mcem_tol is not None:
            spec.mcem.tol = float(self.mcem_tol)
        if self.max_sample_size is not None:
            spec.mcem.max_sample_size = int(self.max_sample_size)
        return spec

    def _texts(self, tree, tips, names):
        """The tip likelihood rows and the streams of an Mk call."""
        labels, states = tip_pairs(tips)
        rows = tip_likelihoods(labels, states, names)
        return rows, dict(newick=read_tree(tree), row_names=labels,
                          allow_missing_tips=bool(self.allow_missing_tips))

    def fit(self, tree, tips, y=None):
        """Fits the model to the tips' states on the tree (on the server). Returns self."""
        labels, states = tip_pairs(tips)
        names = list(self.states) if self.states is not None else state_names(states)
        rows, texts = self._texts(tree, tips, names)
        header = pb.FitHeader(
            spec=pb.ModelSpec(mk=self._spec(names)),
            options=_base.fit_options(self.max_iter, self.tol, self.n_init, self.random_state,
                                      self.acceleration))
        result = self._fit_on_server(header, rows, None, names, max(1, int(self.n_init)),
                                     **texts)
        self._set_fitted(result)
        return self

    def _set_fitted(self, result):
        mk, summary = result.model.mk, result.summary
        self.states_ = list(mk.state_names)
        self.q_ = _data.array(mk.q)
        self.index_ = _data.array(mk.index).astype(np.int64)
        self.root_ = mk.root
        self.root_probs_ = np.asarray(mk.root_probs, dtype=np.float64)
        self.rates_ = np.asarray(result.mk.rates, dtype=np.float64)
        self.rate_standard_errors_ = np.asarray(result.mk.rate_standard_errors, dtype=np.float64)
        self.loglik_ = float(summary.log_likelihood)
        self.aic_ = float(summary.aic)
        self.bic_ = float(summary.bic)
        self.node_posteriors_ = _node_posteriors([result.mk.tree], self.states_)
        self._set_summary(summary)

    def _model(self):
        self._check_is_fitted("q_")
        return pb.Model(mk=pb.MkModel(state_names=self.states_, q=_data.matrix(self.q_),
                                      index=_data.matrix(self.index_), root=self.root_,
                                      root_probs=self.root_probs_))

    # --- the E-step as a service, and stochastic maps ---------------------------------------

    def posterior(self, tree, tips):
        """Every node's posterior state probabilities under the fitted model (NodePosteriors)."""
        model = self._model()
        rows, texts = self._texts(tree, tips, self.states_)
        with self._client() as client:
            blocks = client.posterior_blocks(model, rows, **texts)
        return _node_posteriors(blocks, self.states_)

    def score(self, tree, tips, y=None):
        """The log-likelihood of the tips on the tree under the fitted model."""
        model = self._model()
        rows, texts = self._texts(tree, tips, self.states_)
        with self._client() as client:
            return float(client.score(model, rows, **texts).log_likelihood)

    def sample_histories(self, tree, tips, n=100, random_state=None, sampler="auto"):
        """n stochastic character maps under the fitted model (Histories). random_state: an
        int makes them repeatable (map i depends only on it and i); None draws a fresh seed."""
        model = self._model()
        rows, texts = self._texts(tree, tips, self.states_)
        header = pb.SampleHistoriesHeader(model=model, n=int(n),
                                          seed=_base.seed_from(random_state),
                                          sampler=_base.choice(_SAMPLER, sampler, "sampler"))
        maps = []
        with self._client() as client:
            summary = client.sample_histories(header, rows,
                                              lambda r: maps.extend(r.simmap), **texts)
        return Histories(maps=maps, mean_transitions=_data.array(summary.mean_transitions),
                         mean_times=np.asarray(summary.mean_times, dtype=np.float64),
                         node_frequencies=_data.array(summary.node_frequencies),
                         node_labels=list(summary.node_labels), num_tips=summary.num_tips)


def _node_posteriors(summaries_or_blocks, states):
    """NodePosteriors from a FitResult's MkTreeSummary (as a one-item list) or from Posterior
    blocks."""
    labels, parents, lengths, probs = [], [], [], []
    last = None
    for item in summaries_or_blocks:
        tree = item.mk if hasattr(item, "responsibilities") else item
        labels.extend(tree.node_labels)
        parents.extend(tree.parents)
        lengths.extend(tree.branch_lengths)
        matrix = item.responsibilities if hasattr(item, "responsibilities") else \
            tree.node_probabilities
        if matrix.rows:
            probs.append(_data.array(matrix))
        last = tree
    k = len(states)
    p = np.concatenate(probs) if probs else np.zeros((0, k))
    return NodePosteriors(
        node_labels=labels, parents=np.asarray(parents, dtype=np.int64),
        branch_lengths=np.asarray(lengths, dtype=np.float64), probabilities=p,
        states=[states[i] for i in np.argmax(p[:, :k], axis=1)] if len(p) else [],
        num_tips=int(last.num_tips), log_likelihood=float(last.log_likelihood),
        expected_transitions=_data.array(last.expected_transitions),
        expected_times=np.asarray(last.expected_times, dtype=np.float64))
