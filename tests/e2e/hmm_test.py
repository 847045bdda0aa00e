"""Hidden Markov models end to end (issue 10): the real emfitd and emfit binaries on the bundled
data. The fitted models' log-likelihoods are checked against an independent forward pass in
numpy; sequences, string symbols, the posterior CSV and its per-sequence summary, selection
over k, fixed parameters and the CLI's errors."""
import argparse
import csv
import json
import math
import os
import random
import subprocess
import sys
import unittest

import numpy as np

from emfit_e2e import Emfitd

ARGS = None


def data(name):
    return os.path.join(ARGS.repo, "data", name)


def matrix(m):
    return np.array(m.get("values", []), dtype=float).reshape(m.get("rows", 0), m.get("cols", 0))


def log_densities(model, x):
    """ln f_j(x_t) of each step and state (T x k) for a model's JSON."""
    hmm = model["hmm"]
    if "poisson" in hmm:
        rates = matrix(hmm["poisson"]["rates"])
        return np.array([[sum(c * math.log(r) - r - math.lgamma(c + 1) for c, r in zip(row, rate))
                          for rate in rates] for row in x])
    if "categorical" in hmm:
        p = matrix(hmm["categorical"]["probabilities"])
        return np.log(p[:, x.astype(int)].T)
    g = hmm["gaussian"]
    means = matrix(g["means"])
    k, d = means.shape
    covs = matrix(g["covariances"]).reshape(k, d, d)  # full covariances
    out = np.empty((len(x), k))
    for j in range(k):
        diff = x - means[j]
        inv = np.linalg.inv(covs[j])
        _, logdet = np.linalg.slogdet(covs[j])
        out[:, j] = -0.5 * (np.einsum("ti,ij,tj->t", diff, inv, diff) + logdet +
                            d * math.log(2 * math.pi))
    return out


def forward_log_likelihood(model, x):
    """ln p(x) of one sequence by the forward recursion in log space."""
    hmm = model["hmm"]
    with np.errstate(divide="ignore"):
        log_start = np.log(np.array(hmm["startprob"]))
        log_a = np.log(matrix(hmm["transmat"]))
    g = log_densities(model, x)
    alpha = log_start + g[0]
    for t in range(1, len(x)):
        m = alpha[:, None] + log_a
        top = m.max(axis=0)
        alpha = top + np.log(np.exp(m - top).sum(axis=0)) + g[t]
    top = alpha.max()
    return top + math.log(np.exp(alpha - top).sum())


class HmmEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Emfitd(ARGS.emfitd, "--workers=2", "--queue=8")
        cls.weather = os.path.join(cls.server.dir, "weather.csv")
        rng = random.Random(3)
        with open(cls.weather, "w") as f:
            f.write("day,station,weather\n")
            for station in ["north", "south", "east"]:
                state = 0
                for day in range(80):
                    state = state if rng.random() < 0.85 else 1 - state
                    weights = [0.7, 0.1, 0.2] if state == 0 else [0.1, 0.8, 0.1]
                    symbol = rng.choices(["rain", "sun", "fog"], weights)[0]
                    f.write("%d,%s,%s\n" % (day, station, "" if rng.random() < 0.03 else symbol))

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, "emfitd exited with %d:\n%s" % (code, cls.server.read_log())

    def emfit(self, *flags):
        return subprocess.run([ARGS.emfit, *flags, "--server=" + self.server.address],
                              capture_output=True, text=True, timeout=120)

    def path(self, name):
        return os.path.join(self.server.dir, name)

    def test_geyser_gaussian_hmm_reaches_its_forward_likelihood(self):
        out = self.path("geyser.json")
        r = self.emfit("fit", "--family=hmm", "--k=2", "--data=" + data("geyser.csv"),
                       "--n_init=3", "--seed=1", "--tol=1e-8", "--max_iter=500",
                       "--progress=none", "--out=" + out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            result = json.load(f)
        summary = result["summary"]
        self.assertTrue(summary["converged"])
        history = summary["history"]
        self.assertTrue(all(b >= a - 1e-9 * abs(a) for a, b in zip(history, history[1:])))
        x = np.loadtxt(data("geyser.csv"), delimiter=",", skiprows=1)
        self.assertAlmostEqual(forward_log_likelihood(result["model"], x),
                               summary["log_likelihood"], delta=1e-6)
        self.assertEqual(result["model"]["feature_names"], ["waiting", "duration"])
        for text in ["Hidden Markov model, k=2, Gaussian emissions", "start probabilities",
                     "transition probabilities", "state 1 emits", "waiting"]:
            self.assertIn(text, r.stdout)
        # Score agrees; posterior gives each step's states and the sequence's figures.
        r = self.emfit("score", "--model=" + out, "--data=" + data("geyser.csv"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("log-likelihood %.6f" % summary["log_likelihood"], r.stdout)
        states, per_sequence = self.path("geyser_states.csv"), self.path("geyser_seq.csv")
        r = self.emfit("posterior", "--model=" + out, "--data=" + data("geyser.csv"),
                       "--out=" + states, "--summary_out=" + per_sequence)
        self.assertEqual(r.returncode, 0, r.stderr)
        post = np.loadtxt(states, delimiter=",", skiprows=1)
        self.assertEqual(post.shape, (299, 5))  # sequence, step, p0, p1, state
        np.testing.assert_allclose(post[:, 2:4].sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_array_equal(post[:, 1], np.arange(1, 300))
        with open(per_sequence) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 1)
        self.assertAlmostEqual(float(rows[0]["log_likelihood"]), summary["log_likelihood"],
                               delta=1e-6)
        self.assertLessEqual(float(rows[0]["viterbi_log_probability"]),
                             float(rows[0]["log_likelihood"]))

    def test_discoveries_poisson_hmm_selects_two_states(self):
        out = self.path("discoveries.json")
        r = self.emfit("select", "--family=hmm", "--emission=poisson", "--k=1..4",
                       "--data=" + data("discoveries.csv"), "--columns=count", "--n_init=5",
                       "--seed=1", "--progress=none", "--out=" + out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            sel = json.load(f)
        self.assertEqual([c["k"] for c in sel["candidates"]], [1, 2, 3, 4])
        best = sel["candidates"][sel["best"]]
        self.assertEqual(best["k"], 2)
        self.assertIn("best by bic: 2", r.stdout)
        self.assertIn("Poisson rates", r.stdout)
        counts = np.loadtxt(data("discoveries.csv"), delimiter=",", skiprows=1)[:, 1:]
        model = sel["best_fit"]["model"]
        self.assertAlmostEqual(forward_log_likelihood(model, counts),
                               sel["best_fit"]["summary"]["log_likelihood"], delta=1e-6)
        # One state is the Poisson mixture of one rate: the mean count.
        one = sel["candidates"][0]["summary"]
        mean = counts.mean()
        want = sum(c * math.log(mean) - mean - math.lgamma(c + 1) for c in counts[:, 0])
        self.assertAlmostEqual(one["log_likelihood"], want, delta=1e-8)

    def test_string_symbols_in_sequences(self):
        out = self.path("weather.json")
        r = self.emfit("fit", "--family=hmm", "--emission=categorical", "--k=2",
                       "--data=" + self.weather, "--sequence_column=station",
                       "--columns=weather", "--seed=2", "--max_iter=1000", "--progress=log",
                       "--out=" + out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("240 rows in 3 sequences", r.stderr)
        with open(out) as f:
            result = json.load(f)
        cat = result["model"]["hmm"]["categorical"]
        self.assertEqual(cat["symbols"], ["fog", "rain", "sun"])
        # The sum over the three sequences, each from its own start (never joined).
        index = {s: i for i, s in enumerate(cat["symbols"])}
        with open(self.weather) as f:
            rows = list(csv.DictReader(f))
        total = 0.0
        for station in ["north", "south", "east"]:
            # A missing symbol (-1) is a factor 1: the chain advances over it.
            steps = [index[row["weather"]] if row["weather"] else -1
                     for row in rows if row["station"] == station]
            total += self.forward_with_gaps(result["model"], steps)
        self.assertAlmostEqual(total, result["summary"]["log_likelihood"], delta=1e-6)
        # Posterior: the stations' names in the CSV, the per-sequence summary.
        states, per_sequence = self.path("weather_states.csv"), self.path("weather_seq.csv")
        r = self.emfit("posterior", "--model=" + out, "--data=" + self.weather,
                       "--sequence_column=station", "--columns=weather", "--out=" + states,
                       "--summary_out=" + per_sequence)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(states) as f:
            post = list(csv.DictReader(f))
        self.assertEqual(len(post), 240)
        self.assertEqual((post[0]["sequence"], post[0]["step"]), ("north", "1"))
        self.assertEqual((post[80]["sequence"], post[80]["step"]), ("south", "1"))
        with open(per_sequence) as f:
            seqs = list(csv.DictReader(f))
        self.assertEqual([s["sequence"] for s in seqs], ["north", "south", "east"])
        self.assertAlmostEqual(sum(float(s["log_likelihood"]) for s in seqs),
                               result["summary"]["log_likelihood"], delta=1e-6)
        # A symbol the model does not know is a clear error.
        unseen = self.path("unseen.csv")
        with open(unseen, "w") as f:
            f.write("station,weather\nnorth,rain\nnorth,snow\n")
        r = self.emfit("score", "--model=" + out, "--data=" + unseen,
                       "--sequence_column=station", "--columns=weather")
        self.assertEqual(r.returncode, 1)
        self.assertIn("row 2: symbol 'snow' is not one of the model's 3 symbols", r.stderr)
        # Holding the transitions of a warm start keeps them to the bit.
        warm = self.path("weather_warm.json")
        r = self.emfit("fit", "--family=hmm", "--emission=categorical", "--k=2",
                       "--data=" + self.weather, "--sequence_column=station",
                       "--columns=weather", "--init_model=" + out, "--fix=transitions",
                       "--progress=none", "--out=" + warm)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(warm) as f:
            again = json.load(f)
        self.assertEqual(again["model"]["hmm"]["transmat"], result["model"]["hmm"]["transmat"])

    @staticmethod
    def forward_with_gaps(model, steps):
        hmm = model["hmm"]
        p = matrix(hmm["categorical"]["probabilities"])
        a = matrix(hmm["transmat"])
        alpha = np.array(hmm["startprob"])
        ll = 0.0
        for t, s in enumerate(steps):
            if t > 0:
                alpha = alpha @ a
            if s >= 0:
                alpha = alpha * p[:, s]
            c = alpha.sum()
            ll += math.log(c)
            alpha = alpha / c
        return ll

    def test_sequences_must_be_consecutive_and_flags_belong_to_their_family(self):
        shuffled = self.path("shuffled.csv")
        with open(shuffled, "w") as f:
            f.write("id,x\na,1\na,2\nb,3\na,4\n")
        r = self.emfit("fit", "--family=hmm", "--k=1", "--data=" + shuffled,
                       "--sequence_column=id")
        self.assertEqual(r.returncode, 1)
        self.assertIn("sequence 'a' starts at row 1 and appears again at row 4", r.stderr)
        r = self.emfit("fit", "--family=hmm", "--emission=weibull", "--data=" + shuffled)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--emission: must be one of gaussian, categorical, poisson", r.stderr)
        r = self.emfit("fit", "--family=gmm", "--emission=poisson", "--data=" + shuffled)
        self.assertEqual(r.returncode, 2)
        r = self.emfit("fit", "--family=hmm", "--fix=transitions", "--data=" + shuffled)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--fix: parameters are held at the values of a starting model: give "
                      "--init_model", r.stderr)
        r = self.emfit("fit", "--family=gmm", "--fix=means", "--data=" + shuffled)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--fix: parameters are held at the values of a starting model: give "
                      "--init_model", r.stderr)
        r = subprocess.run([ARGS.emfit, "fit", "--family=hmm", "--help"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0)
        for flag in ["--emission", "--sequence_column", "--fix"]:
            self.assertIn(flag, r.stdout)

    def fitted_geyser(self):
        out = self.path("geyser_for_outputs.json")
        if not os.path.exists(out):
            r = self.emfit("fit", "--family=hmm", "--k=2", "--data=" + data("geyser.csv"),
                           "--seed=1", "--progress=none", "--out=" + out)
            self.assertEqual(r.returncode, 0, r.stderr)
        return out

    def test_posterior_writes_its_summary_only_after_a_good_call_and_keeps_the_posteriors(self):
        model = self.fitted_geyser()
        states, per_sequence = self.path("out_states.csv"), self.path("out_seq.csv")
        # The server refuses the data (faithful's columns are geyser's the other way round):
        # neither output is written, not even a header.
        r = self.emfit("posterior", "--model=" + model, "--data=" + data("faithful.csv"),
                       "--out=" + states, "--summary_out=" + per_sequence)
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        self.assertFalse(os.path.exists(states))
        self.assertFalse(os.path.exists(per_sequence))
        # A summary path that cannot be opened is refused before the call, naming its flag.
        missing = self.path("no-such-dir/seq.csv")
        r = self.emfit("posterior", "--model=" + model, "--data=" + data("geyser.csv"),
                       "--out=" + states, "--summary_out=" + missing)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--summary_out: cannot write '%s'" % missing, r.stderr)
        self.assertNotIn("--out:", r.stderr)
        self.assertFalse(os.path.exists(states))
        # A summary that fails once written (renamed onto a directory): the error names
        # --summary_out and the good posteriors are kept, whole.
        taken = self.path("taken_dir")
        os.makedirs(taken, exist_ok=True)
        r = self.emfit("posterior", "--model=" + model, "--data=" + data("geyser.csv"),
                       "--out=" + states, "--summary_out=" + taken)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--summary_out: cannot write '%s': Is a directory" % taken, r.stderr)
        post = np.loadtxt(states, delimiter=",", skiprows=1)
        self.assertEqual(post.shape, (299, 5))
        self.assertEqual([f for f in os.listdir(self.server.dir) if ".partial" in f], [])
        # Two outputs on standard output are a usage error; one of them in a file is fine.
        r = self.emfit("posterior", "--model=" + model, "--data=" + data("geyser.csv"),
                       "--out=-", "--summary_out=-")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--summary_out=-", r.stderr)
        r = self.emfit("posterior", "--model=" + model, "--data=" + data("geyser.csv"),
                       "--summary_out=-")
        self.assertEqual(r.returncode, 2)
        r = self.emfit("posterior", "--model=" + model, "--data=" + data("geyser.csv"),
                       "--out=" + states, "--summary_out=-")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("sequence,steps,log_likelihood,"), r.stdout)

    def test_flags_that_the_emission_does_not_use_and_a_missing_data_are_usage_errors(self):
        missing = self.path("not-there.csv")  # found before any file is read
        cases = [
            (("fit", "--emission=poisson", "--covariance=diag"), "--covariance"),
            (("fit", "--emission=categorical", "--reg_covar=0.1"), "--reg_covar"),
            (("select", "--emission=poisson", "--k=1..3", "--covariance=full,diag"),
             "--covariance"),
            (("select", "--emission=categorical", "--reg_covar=0"), "--reg_covar"),
        ]
        for flags, named in cases:
            with self.subTest(flags=flags):
                r = self.emfit(*flags, "--family=hmm", "--data=" + missing)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("%s: does not apply to --family=hmm --emission=" % named, r.stderr)
        # Gaussian emissions take both.
        r = self.emfit("fit", "--family=hmm", "--covariance=diag", "--reg_covar=0.1",
                       "--data=" + missing)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(missing, r.stderr)
        for command in ("fit", "select"):
            r = self.emfit(command, "--family=hmm", "--k=2")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("--data: a CSV file is required", r.stderr)
        r = subprocess.run([ARGS.emfit, "fit", "--family=hmm", "--emission=poisson", "--help"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0)
        self.assertNotIn("--covariance", r.stdout)
        self.assertIn("--sequence_column", r.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--emfitd", required=True)
    parser.add_argument("--emfit", required=True)
    parser.add_argument("--repo", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])
