"""The Python package's hidden Markov models (emfit.GaussianHMM, CategoricalHMM, PoissonHMM)
against a real emfitd, with the emfit CLI as their oracle. One ctest per class
(tests/CMakeLists.txt):

  python_hmm_matches_the_cli           parameters, Viterbi states, state probabilities, scores
                                       and criteria equal the CLI's for the same data and seed
                                       (geyser, every covariance type, empty cells; discoveries)
  python_hmm_sequences_never_joined    lengths: a set's score is the sum of its sequences',
                                       the CLI's --sequence_column fit, sequence weights
  python_hmm_categorical_symbols       string symbols round-trip (names travel with the model),
                                       integer symbols as hmmlearn's, missing and unknown ones
  python_hmm_params_and_init_params    hmmlearn's params/init_params: held parameters, warm
                                       starts, structural zeros, a model set by hand
  python_hmm_errors_and_samples        statuses as exceptions, input checks, sample()
                                       repeatable with the right shapes
  python_hmm_sklearn_api               clone and get/set_params (skipped without scikit-learn)
  python_hmm_pandas_data_frames        feature_names_in_ kept and checked (skipped without
                                       pandas)
  python_hmm_readme_example            README's HMM example prints what README shows

Run with Debian's /usr/bin/python3 and PYTHONPATH=<build>/client/python, like
python_client_test.py (whose ServerTest and runner it uses)."""
import csv
import io
import contextlib
import json
import os
import random
import re
import unittest
import warnings

import grpc
import numpy as np

import emfit
import python_client_test as base

COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")


def data(name):
    return os.path.join(base.ARGS.repo, "data", name)


def geyser():
    return np.loadtxt(data("geyser.csv"), delimiter=",", skiprows=1)


def discoveries():
    """The yearly counts, steps x 1."""
    return np.loadtxt(data("discoveries.csv"), delimiter=",", skiprows=1, usecols=1)[:, None]


def matrix(m):
    return np.array(m.get("values", []), dtype=float).reshape(m.get("rows", 0), m.get("cols", 0))


def write_weather(path, seed=3):
    """Three stations' daily weather as names (some missing), as tests/e2e/hmm_test.py writes
    them. Returns (symbols with '' for missing, the sequence lengths)."""
    rng = random.Random(seed)
    symbols, lengths = [], []
    with open(path, "w") as f:
        f.write("day,station,weather\n")
        for station, days in [("north", 80), ("south", 60), ("east", 70)]:
            state = 0
            for day in range(days):
                state = state if rng.random() < 0.85 else 1 - state
                weights = [0.7, 0.1, 0.2] if state == 0 else [0.1, 0.8, 0.1]
                symbol = rng.choices(["rain", "sun", "fog"], weights)[0]
                symbol = "" if rng.random() < 0.03 else symbol
                symbols.append(symbol)
                f.write("%d,%s,%s\n" % (day, station, symbol))
            lengths.append(days)
    return symbols, lengths


class HmmServerTest(base.ServerTest):
    def hmm(self, cls, *args, **kwargs):
        return cls(*args, server=self.server.address, **kwargs)

    def path(self, name):
        return os.path.join(self.server.dir, name)

    def cli_json(self, command, *flags):
        out = self.path("cli_%s.json" % command)
        self.run_cli(command, "--out=" + out, *flags)
        with open(out) as f:
            return json.load(f)

    def cli_posterior(self, model, *flags):
        """The CLI's posterior CSV (sequence, step, p0.., state) and per-sequence summary."""
        states, summary = self.path("cli_states.csv"), self.path("cli_sequences.csv")
        self.run_cli("posterior", "--model=" + model, "--out=" + states,
                     "--summary_out=" + summary, *flags)
        with open(states) as f:
            rows = list(csv.DictReader(f))
        with open(summary) as f:
            sequences = list(csv.DictReader(f))
        return rows, sequences


class HmmMatchesTheCli(HmmServerTest):
    """The same fit from the CLI (CSV) and from Python (numpy) gives the same model, and the
    model's E-step calls give the CLI's posterior and score."""

    def assert_same_chain(self, model, cli):
        hmm = cli["model"]["hmm"]
        np.testing.assert_array_equal(model.startprob_, hmm["startprob"])
        np.testing.assert_array_equal(model.transmat_, matrix(hmm["transmat"]))
        summary = cli["summary"]
        self.assertEqual(model.n_iter_, summary["iterations"])
        self.assertEqual(model.converged_, summary.get("converged", False))
        self.assertEqual(model.monitor_.history, summary["history"])
        self.assertEqual(model.monitor_.iter, summary["iterations"])
        self.assertEqual(model.summary_.bic, summary["bic"])

    def test_geyser_gaussian_fits_equal_the_clis_for_every_covariance_type(self):
        x = geyser()
        for covariance_type in COVARIANCE_TYPES:
            with self.subTest(covariance_type=covariance_type):
                cli = self.cli_json("fit", "--family=hmm", "--k=3", "--data=" + data("geyser.csv"),
                                    "--covariance=" + covariance_type, "--n_init=5", "--seed=1")
                model = self.hmm(emfit.GaussianHMM, 3, covariance_type, n_init=5,
                                 random_state=1).fit(x)
                self.assert_same_chain(model, cli)
                g = cli["model"]["hmm"]["gaussian"]
                np.testing.assert_array_equal(model.means_, matrix(g["means"]))
                np.testing.assert_array_equal(np.ravel(model._covars_), g["covariances"]["values"])
                # covars_ is (k, d, d) whatever the type, as hmmlearn's.
                self.assertEqual(model.covars_.shape, (3, 2, 2))
                for j in range(3):
                    self.assertTrue(np.all(np.linalg.eigvalsh(model.covars_[j]) > 0))

    def test_empty_cells_are_missing_values_as_in_the_cli(self):
        x = geyser()
        holes = self.path("geyser_holes.csv")
        with open(holes, "w") as f:
            f.write("waiting,duration\n")
            for i, (a, b) in enumerate(x):
                if i % 9 == 4:
                    x[i, 0] = np.nan
                if i % 13 == 6:
                    x[i, 1] = np.nan
                f.write("%s,%s\n" % ("" if np.isnan(x[i, 0]) else repr(a),
                                     "" if np.isnan(x[i, 1]) else repr(b)))
        cli = self.cli_json("fit", "--family=hmm", "--k=2", "--data=" + holes, "--seed=2")
        model = self.hmm(emfit.GaussianHMM, 2, random_state=2).fit(x)
        self.assert_same_chain(model, cli)
        np.testing.assert_array_equal(model.means_,
                                      matrix(cli["model"]["hmm"]["gaussian"]["means"]))
        self.assertEqual(model.summary_.rows_used, np.sum(~np.all(np.isnan(x), axis=1)))
        proba = model.predict_proba(x)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)

    def test_discoveries_poisson_fit_equals_the_clis(self):
        cli = self.cli_json("fit", "--family=hmm", "--emission=poisson", "--k=2",
                            "--data=" + data("discoveries.csv"), "--columns=count",
                            "--n_init=10", "--seed=1")
        events = []
        model = self.hmm(emfit.PoissonHMM, 2, n_init=10, random_state=1,
                         callback=events.append).fit(discoveries())
        self.assert_same_chain(model, cli)
        np.testing.assert_array_equal(model.lambdas_,
                                      matrix(cli["model"]["hmm"]["poisson"]["rates"]))
        self.assertEqual(model.lambdas_.shape, (2, 1))
        # The callback sees the restarts' iterations in order (the server may drop
        # intermediate ones for a reader slower than the fit), each with its log-likelihood.
        self.assertTrue(events)
        self.assertTrue({e.restart for e in events} <= set(range(10)))
        for restart in range(10):
            iterations = [e.iteration for e in events if e.restart == restart]
            self.assertEqual(iterations, sorted(set(iterations)))
        for e in events:
            if e.restart == model.summary_.best_restart:
                self.assertEqual(e.log_likelihood, model.monitor_.history[e.iteration])
        # SQUAREM reaches the same maximum.
        fast = self.hmm(emfit.PoissonHMM, 2, n_init=10, random_state=1,
                        acceleration="squarem").fit(discoveries())
        self.assertAlmostEqual(fast.score(discoveries()), model.score(discoveries()), delta=1e-4)

    def test_predict_is_the_clis_viterbi_column_and_score_the_clis_score(self):
        for name, flags, cls, x in [
                ("geyser", ["--k=3", "--data=" + data("geyser.csv")], emfit.GaussianHMM,
                 geyser()),
                ("discoveries", ["--k=2", "--emission=poisson", "--columns=count",
                                 "--data=" + data("discoveries.csv")], emfit.PoissonHMM,
                 discoveries())]:
            with self.subTest(data=name):
                k = int(flags[0][4:])
                self.cli_json("fit", "--family=hmm", "--n_init=5", "--seed=4", *flags)
                model_path = self.path("cli_fit.json")
                data_flags = [f for f in flags if f.startswith(("--data", "--columns"))]
                rows, sequences = self.cli_posterior(model_path, *data_flags)
                model = self.hmm(cls, k, n_init=5, random_state=4).fit(x)
                states = np.array([int(r["state"]) for r in rows])
                np.testing.assert_array_equal(model.predict(x), states)
                probabilities = np.array([[float(r["p%d" % j]) for j in range(k)] for r in rows])
                np.testing.assert_array_equal(model.predict_proba(x), probabilities)
                log_prob, path = model.decode(x)
                np.testing.assert_array_equal(path, states)
                self.assertEqual(log_prob, float(sequences[0]["viterbi_log_probability"]))
                log_likelihood, posteriors = model.score_samples(x)
                self.assertEqual(log_likelihood, float(sequences[0]["log_likelihood"]))
                np.testing.assert_array_equal(posteriors, probabilities)
                score = self.cli_json("score", "--model=" + model_path, *data_flags)
                self.assertEqual(model.score(x), score["log_likelihood"])
                self.assertEqual(model.bic(x), score["bic"])
                self.assertEqual(model.aic(x), score["aic"])
                # 'map' decodes each step's most probable state.
                _, map_states = model.decode(x, algorithm="map")
                np.testing.assert_array_equal(map_states, np.argmax(probabilities, axis=1))


class HmmSequencesNeverJoined(HmmServerTest):
    def test_a_sets_score_is_the_sum_of_its_sequences_scores(self):
        x = geyser()
        model = self.hmm(emfit.GaussianHMM, 2, random_state=0).fit(x)
        lengths = [100, 120, 79]
        parts = np.split(x, np.cumsum(lengths)[:-1])
        together = model.score(x, lengths)
        self.assertAlmostEqual(together, sum(model.score(p) for p in parts),
                               delta=1e-9 * abs(together))
        # Joined, the steps at the cuts would depend on the steps before them.
        self.assertNotAlmostEqual(together, model.score(x), delta=1e-6)
        # Each sequence's posterior is its own: the first step of the second sequence starts
        # from startprob_, as if it were scored alone.
        _, posteriors = model.score_samples(x, lengths)
        np.testing.assert_allclose(posteriors[100:220], model.predict_proba(parts[1]),
                                   rtol=1e-12, atol=1e-300)
        np.testing.assert_array_equal(model.predict(x, lengths)[100:220],
                                      model.predict(parts[1]))
        log_prob, _ = model.decode(x, lengths)
        self.assertAlmostEqual(log_prob, sum(model.decode(p)[0] for p in parts),
                               delta=1e-9 * abs(log_prob))

    def test_lengths_give_the_clis_sequence_column_fit(self):
        x = geyser()
        path = self.path("geyser_sequences.csv")
        lengths = [120, 100, 79]
        with open(path, "w") as f:
            f.write("day,waiting,duration\n")
            for i, (a, b) in enumerate(x):
                f.write("%d,%r,%r\n" % (int(i >= 120) + int(i >= 220), a, b))
        cli = self.cli_json("fit", "--family=hmm", "--k=2", "--data=" + path,
                            "--sequence_column=day", "--seed=5")
        model = self.hmm(emfit.GaussianHMM, 2, random_state=5).fit(x, lengths)
        np.testing.assert_array_equal(model.transmat_,
                                      matrix(cli["model"]["hmm"]["transmat"]))
        np.testing.assert_array_equal(model.means_,
                                      matrix(cli["model"]["hmm"]["gaussian"]["means"]))
        self.assertEqual(model.monitor_.history, cli["summary"]["history"])
        rows, sequences = self.cli_posterior(self.path("cli_fit.json"), "--data=" + path,
                                             "--sequence_column=day")
        np.testing.assert_array_equal(model.predict(x, lengths),
                                      [int(r["state"]) for r in rows])
        self.assertEqual(model.decode(x, lengths)[0],
                         sum(float(s["viterbi_log_probability"]) for s in sequences))

    def test_a_sequence_weight_equals_repeating_the_sequence(self):
        x = geyser()
        a, b = x[:150], x[150:]
        start = self.hmm(emfit.GaussianHMM, 2, random_state=3).fit(x)

        def from_start():
            model = self.hmm(emfit.GaussianHMM, 2, init_params="", max_iter=20, tol=0)
            model.startprob_, model.transmat_ = start.startprob_, start.transmat_
            model.means_, model.covars_ = start.means_, start._covars_
            return model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emfit.ConvergenceWarning)
            weighted = from_start().fit(x, [150, 149], sample_weight=[1, 2])
            repeated = from_start().fit(np.vstack([a, b, b]), [150, 149, 149])
        np.testing.assert_allclose(weighted.monitor_.history, repeated.monitor_.history,
                                   rtol=1e-12)
        np.testing.assert_allclose(weighted.transmat_, repeated.transmat_, rtol=1e-9)
        np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-9)
        with self.assertRaisesRegex(ValueError, "one weight per sequence \\(2\\), got 3"):
            weighted.fit(x, [150, 149], sample_weight=[1, 2, 3])

    def test_lengths_that_do_not_add_up_are_refused_before_any_call(self):
        model = self.hmm(emfit.GaussianHMM, 2)
        calls = len(self.server.calls())
        with self.assertRaisesRegex(ValueError, "lengths: the 2 lengths add up to 200, but X "
                                                "has 299 rows"):
            model.fit(geyser(), [100, 100])
        with self.assertRaisesRegex(ValueError, "sequence 1 has length 0"):
            model.fit(geyser(), [299, 0])
        self.assertEqual(len(self.server.calls()), calls)


class HmmCategoricalSymbols(HmmServerTest):
    def test_string_symbols_in_sequences_give_the_clis_fit_and_round_trip(self):
        path = self.path("weather.csv")
        symbols, lengths = write_weather(path)
        cli = self.cli_json("fit", "--family=hmm", "--emission=categorical", "--k=2",
                            "--data=" + path, "--sequence_column=station", "--columns=weather",
                            "--seed=2")
        model = self.hmm(emfit.CategoricalHMM, 2, random_state=2).fit(
            np.array(symbols, dtype=object).reshape(-1, 1), lengths)
        c = cli["model"]["hmm"]["categorical"]
        self.assertEqual(c["symbols"], ["fog", "rain", "sun"])
        self.assertEqual(list(model.symbols_), c["symbols"])
        np.testing.assert_array_equal(model.emissionprob_, matrix(c["probabilities"]))
        np.testing.assert_array_equal(model.transmat_, matrix(cli["model"]["hmm"]["transmat"]))
        self.assertEqual(model.n_features_in_, 1)
        # The names travel with the model: the CLI's posterior of the CLI's model equals ours.
        rows, sequences = self.cli_posterior(self.path("cli_fit.json"), "--data=" + path,
                                             "--sequence_column=station", "--columns=weather")
        np.testing.assert_array_equal(model.predict(symbols, lengths),
                                      [int(r["state"]) for r in rows])
        self.assertEqual(model.score_samples(symbols, lengths)[0],
                         sum(float(s["log_likelihood"]) for s in sequences))
        # Sampled symbols are names, which the model reads back.
        X, states = model.sample(50, random_state=7)
        self.assertEqual(X.shape, (50, 1))
        self.assertTrue(set(X[:, 0]) <= {"fog", "rain", "sun"})
        self.assertEqual(model.predict(X).shape, (50,))
        # A symbol the model does not know is an error naming its row.
        with self.assertRaisesRegex(ValueError, "row 2: symbol 'snow' is not one of the "
                                                "model's 3 symbols \\(fog, rain, sun\\)"):
            model.score(["rain", "snow"])
        # init_params='' continues the fit, its names kept.
        last = model.monitor_.history[-1]
        model.set_params(init_params="", max_iter=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emfit.ConvergenceWarning)
            model.fit(symbols, lengths)
        self.assertEqual(model.monitor_.history[0], last)
        self.assertEqual(list(model.symbols_), ["fog", "rain", "sun"])
        # Missing symbols advance the chain: None, NaN and '' alike.
        self.assertEqual(model.score(["rain", None, "sun"]), model.score(["rain", "", "sun"]))
        self.assertEqual(model.score(["rain", float("nan"), "sun"]),
                         model.score(["rain", "", "sun"]))

    def test_integer_symbols_index_emissionprob_as_hmmlearns(self):
        rng = np.random.RandomState(1)
        x = rng.randint(0, 3, size=(400, 1))
        model = self.hmm(emfit.CategoricalHMM, 2, n_features=5, random_state=0).fit(x)
        self.assertEqual(model.emissionprob_.shape, (2, 5))
        np.testing.assert_array_equal(model.symbols_, np.arange(5))
        np.testing.assert_allclose(model.emissionprob_[:, 3:], 0.0, atol=1e-12)
        np.testing.assert_allclose(model.emissionprob_.sum(axis=1), 1.0, rtol=1e-12)
        with self.assertRaisesRegex(ValueError, "row 1: symbol 7 is not one of the model's 5 "
                                                "symbols \\(0..4\\)"):
            model.predict([[7]])
        X, _ = model.sample(20, random_state=0)
        self.assertEqual(X.dtype.kind, "i")
        self.assertTrue(np.all((X >= 0) & (X < 5)))
        # Without n_features, the symbols are 0 .. the largest.
        self.assertEqual(self.hmm(emfit.CategoricalHMM, 2, random_state=0).fit(x)
                         .emissionprob_.shape, (2, 3))

    def test_declared_names_keep_their_order_and_absent_symbols(self):
        dna = list("ACGTTGCAACGGTTAACCGTAGCTAGCTTTAAACCCGGG" * 5)
        model = self.hmm(emfit.CategoricalHMM, 2, n_features=["T", "G", "C", "A", "N"],
                         random_state=0).fit(dna)
        self.assertEqual(list(model.symbols_), ["T", "G", "C", "A", "N"])
        np.testing.assert_allclose(model.emissionprob_[:, 4], 0.0, atol=1e-12)
        with self.assertRaisesRegex(ValueError, "n_features: 4 symbols declared, but the data "
                                                "hold 3 names"):
            self.hmm(emfit.CategoricalHMM, 2, n_features=4).fit(list("ACGACG"))


class HmmParamsAndInitParams(HmmServerTest):
    def test_init_params_empty_continues_from_the_fitted_parameters(self):
        x = geyser()
        model = self.hmm(emfit.GaussianHMM, 2, random_state=0, max_iter=3, tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emfit.ConvergenceWarning)
            model.fit(x)
            last = model.monitor_.history[-1]
            model.set_params(init_params="").fit(x)
        # The second fit starts where the first ended, from one restart.
        self.assertEqual(model.monitor_.history[0], last)
        self.assertEqual(len(model.summary_.restarts), 1)

    def test_parameters_left_out_of_params_stay_fixed_to_the_bit(self):
        x = geyser()
        first = self.hmm(emfit.GaussianHMM, 2, random_state=0, max_iter=5, tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emfit.ConvergenceWarning)
            first.fit(x)
        held = self.hmm(emfit.GaussianHMM, 2, params="smc", init_params="")
        held.startprob_, held.transmat_ = first.startprob_, first.transmat_
        held.means_, held.covars_ = first.means_, first._covars_
        held.fit(x)
        np.testing.assert_array_equal(held.transmat_, first.transmat_)
        self.assertFalse(np.array_equal(held.means_, first.means_))
        emissions_held = self.hmm(emfit.GaussianHMM, 2, params="st", init_params="",
                                  max_iter=50)
        emissions_held.startprob_, emissions_held.transmat_ = first.startprob_, first.transmat_
        emissions_held.means_, emissions_held.covars_ = first.means_, first._covars_
        emissions_held.fit(x)
        np.testing.assert_array_equal(emissions_held.means_, first.means_)
        np.testing.assert_array_equal(emissions_held.covars_, first.covars_)
        with self.assertRaisesRegex(ValueError, "params: emfit holds the emission parameters"):
            self.hmm(emfit.GaussianHMM, 2, params="stm").fit(x)
        with self.assertRaisesRegex(ValueError, "init_params: letters of 'stmc', got 'stx'"):
            self.hmm(emfit.GaussianHMM, 2, init_params="stx").fit(x)

    def test_a_left_right_model_keeps_its_structural_zeros(self):
        # hmmlearn's recipe: set startprob_ and transmat_ with zeros, initialise the emissions
        # from the data (init_params='mc'); the server initialises them, ours are put in.
        x = geyser()
        model = self.hmm(emfit.GaussianHMM, 3, init_params="mc", random_state=0)
        model.startprob_ = np.array([1.0, 0.0, 0.0])
        model.transmat_ = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
        model.fit(x)
        self.assertEqual(list(model.startprob_), [1.0, 0.0, 0.0])
        self.assertEqual(model.transmat_[1, 0], 0.0)
        self.assertEqual(model.transmat_[2, 0], 0.0)
        self.assertEqual(model.transmat_[2, 1], 0.0)
        self.assertEqual(model.transmat_[0, 2], 0.0)
        self.assertTrue(model.converged_)
        history = model.monitor_.history
        self.assertTrue(all(b >= a - 1e-9 * abs(a) for a, b in zip(history, history[1:])))

    def test_initialised_parameters_and_held_attributes_combine(self):
        # init_params='e' with params='e': the user's chain is held, the emissions start from
        # the data (the server's initialisation) and are fitted.
        symbols, lengths = write_weather(self.path("weather.csv"))
        model = self.hmm(emfit.CategoricalHMM, 2, params="e", init_params="e", random_state=1)
        model.startprob_ = np.array([0.5, 0.5])
        model.transmat_ = np.array([[0.85, 0.15], [0.15, 0.85]])
        model.fit(symbols, lengths)
        np.testing.assert_array_equal(model.startprob_, [0.5, 0.5])
        np.testing.assert_array_equal(model.transmat_, [[0.85, 0.15], [0.15, 0.85]])
        self.assertEqual(len(model.summary_.restarts), 1)
        self.assertGreater(model.n_iter_, 1)

    def test_a_model_set_by_hand_decodes_and_samples(self):
        model = self.hmm(emfit.PoissonHMM, 2, random_state=0)
        model.startprob_ = np.array([0.5, 0.5])
        model.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
        model.lambdas_ = np.array([[1.0], [8.0]])
        X, states = model.sample(300)
        np.testing.assert_array_equal(model.sample(300)[0], X)  # the int random_state
        self.assertEqual(X.shape, (300, 1))
        self.assertEqual(X.dtype.kind, "i")
        # The Viterbi path recovers the well separated states.
        self.assertGreater(np.mean(model.predict(X) == states), 0.95)
        # The forward likelihood in numpy.
        alpha, total = model.startprob_, 0.0
        from math import lgamma, log
        for t, (count,) in enumerate(X):
            if t:
                alpha = alpha @ model.transmat_
            alpha = alpha * np.exp(count * np.log(model.lambdas_[:, 0]) - model.lambdas_[:, 0] -
                                   lgamma(count + 1))
            total += log(alpha.sum())
            alpha = alpha / alpha.sum()
        self.assertAlmostEqual(model.score(X), total, delta=1e-9 * abs(total))


class HmmErrorsAndSamples(HmmServerTest):
    def test_a_server_error_is_an_exception_with_its_code_and_field(self):
        with self.assertRaises(ValueError) as raised:
            self.hmm(emfit.GaussianHMM, 400).fit(geyser())
        self.assertIsInstance(raised.exception, emfit.InvalidArgumentError)
        self.assertEqual(raised.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("400", raised.exception.message)
        counts = discoveries()
        counts[5, 0] = -1
        with self.assertRaises(emfit.InvalidArgumentError) as raised:
            self.hmm(emfit.PoissonHMM, 2).fit(counts)
        self.assertIn("row 6", raised.exception.message)

    def test_input_checks_happen_before_any_call(self):
        model = self.hmm(emfit.GaussianHMM, 2)
        with self.assertRaises(emfit.NotFittedError):
            model.predict(geyser())
        with self.assertRaises(emfit.NotFittedError):
            model.sample(3)
        with self.assertRaisesRegex(ValueError, "covariance_type: must be one of"):
            self.hmm(emfit.GaussianHMM, 2, "banded").fit(geyser())
        with self.assertRaisesRegex(ValueError, "init: must be one of 'kmeans', 'random'"):
            self.hmm(emfit.GaussianHMM, 2, init="k-means++").fit(geyser())
        model.fit(geyser())
        with self.assertRaisesRegex(ValueError, "X has 3 features, but GaussianHMM is expecting "
                                                "2 features"):
            model.predict(np.ones((4, 3)))
        with self.assertRaisesRegex(ValueError, "algorithm: must be one of"):
            model.decode(geyser(), algorithm="beam")

    def test_samples_are_repeatable_and_shaped_as_hmmlearns(self):
        model = self.hmm(emfit.GaussianHMM, 3, random_state=11, n_init=3).fit(geyser())
        X, states = model.sample(20000)
        np.testing.assert_array_equal(model.sample(20000)[0], X)
        again, again_states = model.sample(20000, random_state=11)
        np.testing.assert_array_equal(again, X)
        np.testing.assert_array_equal(again_states, states)
        self.assertFalse(np.array_equal(model.sample(50, random_state=12)[0], X[:50]))
        self.assertEqual(X.shape, (20000, 2))
        self.assertEqual(states.shape, (20000,))
        # The draws follow the model: transition frequencies and the states' means.
        for i in range(3):
            after = states[1:][states[:-1] == i]
            frequencies = np.bincount(after, minlength=3) / len(after)
            np.testing.assert_allclose(frequencies, model.transmat_[i], atol=0.03)
            np.testing.assert_allclose(X[states == i].mean(axis=0), model.means_[i], rtol=0.02)
        _, continued = model.sample(5, currstate=int(states[-1]), random_state=1)
        self.assertEqual(continued[0], states[-1])
        for covariance_type in ("diag", "tied", "spherical"):
            m = self.hmm(emfit.GaussianHMM, 2, covariance_type, random_state=0).fit(geyser())
            self.assertEqual(m.sample(7)[0].shape, (7, 2))


class HmmSklearnApi(HmmServerTest):
    @classmethod
    def setUpClass(cls):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("scikit-learn (python3-sklearn) is not installed")
        super().setUpClass()

    def test_clone_copies_the_parameters_and_not_the_fit(self):
        from sklearn.base import clone
        for cls, kwargs in [(emfit.GaussianHMM, dict(covariance_type="diag", params="stmc")),
                            (emfit.CategoricalHMM, dict(n_features=["a", "b"])),
                            (emfit.PoissonHMM, dict(init="random"))]:
            with self.subTest(cls=cls.__name__):
                model = self.hmm(cls, 2, random_state=5, tol=1e-4, **kwargs)
                copy = clone(model)
                self.assertEqual(copy.get_params(), model.get_params())
                self.assertFalse(hasattr(copy, "startprob_"))
        model = self.hmm(emfit.GaussianHMM, 2, "diag", random_state=5).fit(geyser())
        copy = clone(model)
        self.assertFalse(hasattr(copy, "startprob_"))
        self.assertFalse(hasattr(copy, "covars_"))
        self.assertEqual(repr(copy), "GaussianHMM(covariance_type='diag', n_components=2, "
                                     "random_state=5, server='%s')" % self.server.address)
        np.testing.assert_array_equal(copy.fit(geyser()).means_, model.means_)
        with self.assertRaisesRegex(ValueError, "Invalid parameter 'n_iter'"):
            model.set_params(n_iter=10)


class HmmPandasDataFrames(HmmServerTest):
    @classmethod
    def setUpClass(cls):
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("python3-pandas is not installed (scripts/deps installs it)")
        super().setUpClass()

    def test_a_data_frame_keeps_its_column_names_through_fit_and_predict(self):
        import pandas as pd
        frame = pd.read_csv(data("geyser.csv"))
        model = self.hmm(emfit.GaussianHMM, 2, random_state=0).fit(frame)
        self.assertEqual(list(model.feature_names_in_), ["waiting", "duration"])
        np.testing.assert_array_equal(model.predict(frame),
                                      self.hmm(emfit.GaussianHMM, 2, random_state=0)
                                      .fit(frame.to_numpy()).predict(frame.to_numpy()))
        with self.assertRaises(ValueError) as raised:
            model.predict(frame[["duration", "waiting"]])
        self.assertIn("['duration', 'waiting']", str(raised.exception))
        # A categorical column with pandas' NA for missing symbols.
        weather = pd.read_csv(self.path_of_weather(), keep_default_na=False)
        column = weather[["weather"]].replace("", pd.NA)
        lengths = weather.groupby("station", sort=False).size().to_numpy()
        cat = self.hmm(emfit.CategoricalHMM, 2, random_state=2).fit(column, lengths)
        self.assertEqual(list(cat.feature_names_in_), ["weather"])
        self.assertEqual(list(cat.symbols_), ["fog", "rain", "sun"])
        symbols, _ = write_weather(self.path("weather_again.csv"))
        self.assertEqual(cat.score(column, lengths),
                         self.hmm(emfit.CategoricalHMM, 2, random_state=2)
                         .fit(symbols, lengths).score(symbols, lengths))

    def path_of_weather(self):
        path = self.path("weather.csv")
        write_weather(path)
        return path


class HmmReadmeExample(HmmServerTest):
    def test_the_readme_hmm_example_prints_what_the_readme_shows(self):
        with open(os.path.join(base.ARGS.repo, "README.md")) as f:
            text = f.read()
        match = re.search(r"```python\n([^`]*?PoissonHMM[^`]*?)```\n\n?```text\n(.*?)```",
                          text, re.S)
        self.assertIsNotNone(match, "README.md has no PoissonHMM example with its output")
        example, shown = match.groups()
        self.assertIn('"localhost:50051"', example)
        printed = io.StringIO()
        cwd = os.getcwd()
        os.chdir(base.ARGS.repo)  # the example reads data/discoveries.csv
        try:
            with contextlib.redirect_stdout(printed):
                exec(example.replace('"localhost:50051"', repr(self.server.address)), {})
        finally:
            os.chdir(cwd)
        self.assertEqual(printed.getvalue(), shown)


if __name__ == "__main__":
    base.main()
