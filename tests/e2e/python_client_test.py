"""The Python package `emfit` (client/python) against a real emfitd, and against the real emfit
CLI as its oracle. One ctest per class (tests/CMakeLists.txt):

  python_client_matches_the_cli        parameters equal the CLI's for the same data and seed
  python_client_progress_and_cancel    progress events, KeyboardInterrupt and timeouts
  python_client_errors_are_exceptions  gRPC statuses as exceptions with the code
  python_client_resends_busy_refusals  busy refusals sent again after the server's retry hint
  python_client_pandas_dataframes      DataFrames keep and check their column names
  python_client_sklearn_api            clone, GridSearchCV, scikit-learn's own E-step on our
                                       attributes, sample() draws what scikit-learn draws
  python_client_samples_the_mixture    sample() without scikit-learn: the fitted moments
  python_docs_examples_run             README's example, and docs/api.md's raw stubs on a CSV
                                       with empty cells
  python_package_installs_with_pip     pip install client/python from a checkout
  python_client_mk_model               emfit.MkModel: the CLI's Mk fit, posteriors and maps

Run with Debian's /usr/bin/python3 and PYTHONPATH=<build>/client/python. A class whose optional
dependency (pandas, scikit-learn) is absent is skipped with a message (exit code 77)."""
import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
import warnings

import grpc
import numpy as np

from emfit_e2e import Emfitd

import emfit
from emfit.v1 import emfit_pb2 as pb

ARGS = None
COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")


def faithful_path():
    return os.path.join(ARGS.repo, "data/faithful.csv")


def faithful():
    return np.loadtxt(faithful_path(), delimiter=",", skiprows=1)


def write_csv_with_holes(path, weight_column=True):
    """Faithful with empty cells (rows with both cells empty included) and a weight column;
    returns the values as read by numpy (NaN for empty) and the weights."""
    x = faithful()
    values, weights = x.copy(), 1.0 + np.arange(len(x)) % 3
    with open(path, "w") as f:
        f.write("eruptions,waiting,w\n" if weight_column else "eruptions,waiting\n")
        for i, (a, b) in enumerate(x):
            first = "" if i % 5 == 0 else repr(a)
            second = "" if i % 7 == 0 else repr(b)
            values[i, 0] = np.nan if i % 5 == 0 else a
            values[i, 1] = np.nan if i % 7 == 0 else b
            f.write("%s,%s,%r\n" % (first, second, weights[i]) if weight_column
                    else "%s,%s\n" % (first, second))
    read = np.genfromtxt(path, delimiter=",", skip_header=1)
    np.testing.assert_array_equal(read[:, :2], values)  # numpy reads empty cells as NaN
    return read[:, :2], weights


def long_fit_data():
    """Data on which a fit with tol=0 and a large max_iter runs for minutes: it is stopped by
    the test (cancel, timeout) long before."""
    rng = np.random.RandomState(5)
    return rng.normal(size=(60000, 4)) + rng.randint(0, 4, size=(60000, 1))


class ServerTest(unittest.TestCase):
    FLAGS = ("--workers=2", "--queue=4")

    @classmethod
    def setUpClass(cls):
        cls.server = Emfitd(ARGS.emfitd, *cls.FLAGS)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, "emfitd exited with %d:\n%s" % (code, cls.server.read_log())

    def gmm(self, *args, **kwargs):
        return emfit.GaussianMixture(*args, server=self.server.address, **kwargs)

    def run_cli(self, *flags):
        r = subprocess.run([ARGS.emfit, *flags, "--server=" + self.server.address,
                            "--progress=none"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r


class MatchesTheCli(ServerTest):
    """The same fit from the CLI (CSV) and from Python (numpy) gives the same parameters."""

    def cli_fit(self, data, *flags):
        out = os.path.join(self.server.dir, "cli.json")
        self.run_cli("fit", "--data=" + data, "--out=" + out, *flags)
        with open(out) as f:
            return json.load(f)

    def assert_same_fit(self, gm, cli, covariance_type):
        g = cli["model"]["gmm"]
        k, d = g["means"]["rows"], g["means"]["cols"]
        np.testing.assert_allclose(gm.weights_, g["weights"], rtol=1e-14, atol=0)
        np.testing.assert_allclose(gm.means_, np.reshape(g["means"]["values"], (k, d)),
                                   rtol=1e-14, atol=0)
        shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
        np.testing.assert_allclose(
            gm.covariances_, np.reshape(g["covariances"]["values"], shape[covariance_type]),
            rtol=1e-14, atol=0)
        summary = cli["summary"]
        self.assertEqual(gm.n_iter_, summary["iterations"])
        self.assertEqual(gm.converged_, summary.get("converged", False))
        self.assertAlmostEqual(gm.lower_bound_, summary["mean_log_likelihood"], delta=1e-12)

    def test_every_covariance_type_gives_the_cli_parameters(self):
        x = faithful()
        for covariance_type in COVARIANCE_TYPES:
            with self.subTest(covariance_type=covariance_type):
                cli = self.cli_fit(faithful_path(), "--k=3", "--covariance=" + covariance_type,
                                   "--n_init=2", "--seed=7", "--tol=1e-6", "--max_iter=300",
                                   "--init=k-means++")
                gm = self.gmm(3, covariance_type=covariance_type, n_init=2, random_state=7,
                              tol=1e-6, max_iter=300, init_params="k-means++").fit(x)
                self.assert_same_fit(gm, cli, covariance_type)

    def test_empty_cells_and_weights_give_the_cli_parameters(self):
        path = os.path.join(self.server.dir, "holes.csv")
        x, w = write_csv_with_holes(path)
        cli = self.cli_fit(path, "--k=2", "--weights=w", "--seed=3", "--tol=1e-8",
                           "--max_iter=500")
        gm = self.gmm(2, random_state=3, tol=1e-8, max_iter=500).fit(x, sample_weight=w)
        self.assert_same_fit(gm, cli, "full")
        # Rows 0, 35, 70, ... have nothing observed.
        self.assertEqual(gm.summary_.rows_skipped, 8)
        self.assertEqual(int(cli["summary"]["rows_skipped"]), 8)
        # The E-step on rows with missing cells uses their observed coordinates.
        proba = gm.predict_proba(x)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
        # A row with nothing observed has likelihood 1 (log 0, up to rounding) and the weights
        # as its responsibilities.
        np.testing.assert_allclose(gm.score_samples(x)[::35], 0.0, atol=1e-12)
        np.testing.assert_allclose(proba[::35], np.tile(gm.weights_, (8, 1)), rtol=1e-12)

    def test_posterior_and_score_equal_the_cli(self):
        x = faithful()
        model = os.path.join(self.server.dir, "model.json")
        self.run_cli("fit", "--data=" + faithful_path(), "--k=2", "--seed=1", "--tol=1e-8",
                     "--out=" + model)
        gm = self.gmm(2, random_state=1, tol=1e-8).fit(x)
        posteriors = os.path.join(self.server.dir, "post.csv")
        self.run_cli("posterior", "--model=" + model, "--data=" + faithful_path(),
                     "--out=" + posteriors)
        post = np.loadtxt(posteriors, delimiter=",", skiprows=1)
        np.testing.assert_allclose(gm.predict_proba(x), post[:, :2], rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(gm.score_samples(x), post[:, 2], rtol=1e-12)
        np.testing.assert_array_equal(gm.predict(x), post[:, 3].astype(int))
        score = os.path.join(self.server.dir, "score.json")
        self.run_cli("score", "--model=" + model, "--data=" + faithful_path(), "--out=" + score)
        with open(score) as f:
            s = json.load(f)
        self.assertAlmostEqual(gm.bic(x), s["bic"], delta=1e-9)
        self.assertAlmostEqual(gm.aic(x), s["aic"], delta=1e-9)
        self.assertAlmostEqual(gm.score(x), s["mean_log_likelihood"], delta=1e-12)
        self.assertAlmostEqual(gm.score(x), gm.score_samples(x).mean(), delta=1e-12)

    def test_precisions_invert_the_covariances(self):
        x = faithful()
        for covariance_type in COVARIANCE_TYPES:
            gm = self.gmm(2, covariance_type=covariance_type, random_state=0).fit(x)
            if covariance_type == "full":
                for cov, prec, u in zip(gm.covariances_, gm.precisions_,
                                        gm.precisions_cholesky_):
                    np.testing.assert_allclose(cov @ prec, np.eye(2), atol=1e-10)
                    np.testing.assert_allclose(u @ u.T, prec, rtol=1e-12)
                    self.assertEqual(u[1, 0], 0.0)  # upper triangular, as scikit-learn's
            elif covariance_type == "tied":
                np.testing.assert_allclose(gm.covariances_ @ gm.precisions_, np.eye(2),
                                           atol=1e-10)
            else:
                np.testing.assert_allclose(gm.covariances_ * gm.precisions_, 1.0, rtol=1e-12)

    def test_select_model_equals_the_cli(self):
        x = faithful()
        out = os.path.join(self.server.dir, "select.json")
        self.run_cli("select", "--data=" + faithful_path(), "--k=1..3",
                     "--covariance=full,diag", "--seed=2", "--out=" + out)
        with open(out) as f:
            cli = json.load(f)
        events = []
        selection = emfit.select_model(x, range(1, 4), ["full", "diag"], random_state=2,
                                       server=self.server.address, callback=events.append)
        self.assertEqual(selection.best_index, cli["best"])
        self.assertEqual([c.bic for c in selection.candidates],
                         [c["summary"]["bic"] for c in cli["candidates"]])
        best = selection.best_estimator
        self.assertEqual((best.n_components, best.covariance_type), (2, "full"))
        np.testing.assert_allclose(
            best.means_.ravel(), cli["best_fit"]["model"]["gmm"]["means"]["values"], rtol=1e-14)
        self.assertEqual({e.candidate for e in events}, set(range(6)))
        np.testing.assert_array_equal(best.predict(x), self.gmm(2, random_state=2).fit(x)
                                      .predict(x))

    def test_a_pickled_estimator_predicts_the_same(self):
        import pickle
        x = faithful()
        gm = self.gmm(2, random_state=0, credentials=None).fit(x)
        copy = pickle.loads(pickle.dumps(gm))
        np.testing.assert_array_equal(copy.predict_proba(x), gm.predict_proba(x))
        self.assertEqual(copy.summary_, gm.summary_)

    def test_warm_start_continues_from_the_fitted_parameters(self):
        x = faithful()
        gm = self.gmm(2, random_state=0, max_iter=2, tol=0, warm_start=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emfit.ConvergenceWarning)
            gm.fit(x)
            first = gm.summary_.history[-1]
            gm.fit(x)
        # The second fit starts where the first ended (iteration 0 = the first's last).
        self.assertEqual(gm.summary_.history[0], first)
        self.assertEqual(len(gm.summary_.restarts), 1)


class ProgressAndCancel(ServerTest):
    # One worker and no queue: a second fit while a fit runs is RESOURCE_EXHAUSTED, so a fit
    # that succeeds proves the worker is free.
    FLAGS = ("--workers=1", "--queue=0")

    def assert_worker_is_free(self):
        gm = self.gmm(2, random_state=0, retries=0).fit(faithful())
        self.assertTrue(gm.converged_)

    def test_callback_receives_every_iteration_event(self):
        events = []
        gm = self.gmm(2, n_init=3, random_state=1, tol=1e-8, callback=events.append)
        gm.fit(faithful())
        self.assertTrue(all(isinstance(e, emfit.IterationEvent) for e in events))
        self.assertEqual({e.restart for e in events}, {0, 1, 2})
        for restart in gm.summary_.restarts:
            mine = [e for e in events if e.restart == restart.restart]
            self.assertEqual([e.iteration for e in mine], list(range(restart.iterations + 1)))
        best = [e.log_likelihood for e in events if e.restart == gm.summary_.best_restart]
        self.assertEqual(best, list(gm.summary_.history))

    def test_verbose_draws_a_progress_bar_on_stderr(self):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            self.gmm(2, random_state=1, tol=1e-8, verbose=1).fit(faithful())
        text = stderr.getvalue()
        self.assertIn("fit 100%|####################|", text)
        self.assertIn("it/s, ll=-1130.26", text)
        self.assertTrue(text.endswith("\n"))
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            self.gmm(2, random_state=1, tol=1e-8, verbose=2).fit(faithful())
        self.assertIn("restart 0 iter 1 log-likelihood", stderr.getvalue())

    def test_keyboard_interrupt_cancels_the_fit_on_the_server(self):
        x = long_fit_data()
        calls_before = len(self.server.calls())
        started, control = threading.Event(), []

        def interrupt():
            started.wait(60)
            # While the long fit runs, the only worker is busy: the control fit is refused.
            try:
                self.gmm(2, retries=0).fit(faithful())
                control.append("served")
            except emfit.ResourceExhaustedError as e:
                control.append(e.code)
            os.kill(os.getpid(), signal.SIGINT)

        helper = threading.Thread(target=interrupt)
        helper.start()
        gm = self.gmm(4, tol=0, max_iter=100000, random_state=0,
                      callback=lambda e: started.set())
        try:
            with self.assertRaises(KeyboardInterrupt):
                gm.fit(x)
        finally:
            started.set()
            helper.join()
        self.assertEqual(control, [grpc.StatusCode.RESOURCE_EXHAUSTED])
        # The server stops the job (CANCELLED) and frees its worker.
        self.server.wait_for_call({"CANCELLED"}, after=calls_before)
        self.assert_worker_is_free()

    def test_timeout_is_a_deadline_exceeded_error_and_frees_the_worker(self):
        calls_before = len(self.server.calls())
        gm = self.gmm(4, tol=0, max_iter=100000, random_state=0, timeout=3.0)
        with self.assertRaises(emfit.DeadlineExceededError) as raised:
            gm.fit(long_fit_data())
        self.assertIsInstance(raised.exception, TimeoutError)
        self.assertEqual(raised.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
        # The deadline ends the call; the server stops the job (CANCELLED or DEADLINE_EXCEEDED).
        self.server.wait_for_call({"CANCELLED", "DEADLINE_EXCEEDED"}, after=calls_before)
        self.assert_worker_is_free()


class ErrorsAreExceptions(ServerTest):
    def test_invalid_argument_is_a_value_error_with_the_code_and_field(self):
        with self.assertRaises(ValueError) as raised:
            self.gmm(500).fit(faithful())
        e = raised.exception
        self.assertIsInstance(e, emfit.InvalidArgumentError)
        self.assertIsInstance(e, emfit.EmfitError)
        self.assertEqual(e.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("spec.gmm.k", e.message)
        self.assertIn("500", str(e))

    def test_infinite_values_are_refused_by_the_server(self):
        x = faithful()
        x[3, 1] = np.inf
        with self.assertRaises(emfit.InvalidArgumentError) as raised:
            self.gmm(2).fit(x)
        self.assertEqual(raised.exception.code, grpc.StatusCode.INVALID_ARGUMENT)

    def test_a_server_limit_is_resource_exhausted(self):
        limited = Emfitd(ARGS.emfitd, "--max_rows=100")
        try:
            with self.assertRaises(emfit.ResourceExhaustedError) as raised:
                emfit.GaussianMixture(2, server=limited.address).fit(faithful())
            self.assertIn("--max_rows", raised.exception.message)
        except emfit.InvalidArgumentError as e:  # the server's choice of code is its own
            self.assertIn("--max_rows", e.message)
        finally:
            self.assertEqual(limited.stop(), 0)

    def test_an_unreachable_server_is_unavailable(self):
        with socket.socket() as s:  # a port that nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(emfit.UnavailableError) as raised:
            emfit.GaussianMixture(2, server="127.0.0.1:%d" % port, timeout=20).fit(faithful())
        self.assertIsInstance(raised.exception, ConnectionError)
        self.assertEqual(raised.exception.code, grpc.StatusCode.UNAVAILABLE)

    def test_input_checks_happen_before_any_call(self):
        gm = self.gmm(2)
        with self.assertRaises(emfit.NotFittedError):
            gm.predict(faithful())
        with self.assertRaisesRegex(ValueError, "covariance_type: must be one of"):
            self.gmm(2, covariance_type="banded").fit(faithful())
        with self.assertRaisesRegex(ValueError, "2-D"):
            gm.fit(faithful()[:, 0])
        gm.fit(faithful())
        with self.assertRaisesRegex(ValueError, "X has 3 features, but GaussianMixture is "
                                                "expecting 2 features"):
            gm.predict(np.ones((4, 3)))

    def test_small_chunks_stream_the_same_data(self):
        x = faithful()
        gm = self.gmm(2, random_state=4).fit(x)
        with emfit.Client(self.server.address, chunk_bytes=24) as client:  # 3 values a chunk
            result = client.fit(pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2)),
                                             options=pb.FitOptions(seed=4)), x)
        self.assertEqual(list(result.model.gmm.weights), list(gm.weights_))


class Resends(ServerTest):
    """A call refused as busy is sent again after the server's retry hint (emfit.Client's
    retries, the rule of the C++ FitClient). One worker and no queue: a fit while another runs
    is refused with RESOURCE_EXHAUSTED and a 50 ms hint."""
    FLAGS = ("--workers=1", "--queue=0", "--retry_after=50ms")

    def start_long_fit(self):
        """A long fit on a thread of its own; returns (started, stop, thread): it runs until
        stop is set (its event callback then raises, which cancels it on the server)."""
        started, stop = threading.Event(), threading.Event()

        class Stop(Exception):
            pass

        def on_event(event):
            started.set()
            if stop.is_set():
                raise Stop()

        def run():
            header = pb.FitHeader()
            header.spec.gmm.k = 4
            header.options.tol = 0
            header.options.max_iter = 100000
            try:
                with emfit.Client(self.server.address, retries=0) as client:
                    client.fit(header, long_fit_data(), on_event=on_event)
            except Stop:
                pass
        thread = threading.Thread(target=run)
        thread.start()
        self.assertTrue(started.wait(60))
        return started, stop, thread

    def test_a_busy_refusal_is_sent_again_and_served_once_the_worker_is_free(self):
        alone = self.gmm(2, random_state=0).fit(faithful())
        calls_before = len(self.server.calls())
        _, stop, long_fit = self.start_long_fit()
        served = []

        stderr = io.StringIO()

        def control_fit():
            try:
                with contextlib.redirect_stderr(stderr):  # verbose: says when it re-sends
                    served.append(self.gmm(2, random_state=0, retries=10, timeout=120,
                                           verbose=1).fit(faithful()))
            except Exception as e:  # noqa: BLE001 (reported below)
                served.append(e)
        control = threading.Thread(target=control_fit)
        control.start()
        try:
            # Refused at least once while the long fit holds the worker; then the worker is freed.
            self.server.wait_for_call({"RESOURCE_EXHAUSTED"}, after=calls_before)
        finally:
            stop.set()
            long_fit.join()
            control.join()
        self.assertEqual(len(served), 1)
        self.assertIsInstance(served[0], emfit.GaussianMixture, served[0])
        np.testing.assert_array_equal(served[0].means_, alone.means_)
        outcomes = [c["outcome"] for c in self.server.calls()[calls_before:]]
        self.assertIn("RESOURCE_EXHAUSTED", outcomes)  # the control fit's refused attempts
        self.assertEqual(outcomes.count("OK"), 1)  # and its last, served
        self.assertIn("emfit: sending the call again (attempt 2 of 11) after RESOURCE_EXHAUSTED: "
                      "the job queue is full", stderr.getvalue())

    def test_without_retries_the_busy_refusal_is_raised_at_once(self):
        _, stop, long_fit = self.start_long_fit()
        try:
            with self.assertRaises(emfit.ResourceExhaustedError) as raised:
                self.gmm(2, retries=0).fit(faithful())
            self.assertIn("queue is full", raised.exception.message)
        finally:
            stop.set()
            long_fit.join()

    def test_the_wait_before_a_resend_follows_the_status_and_the_retry_hint(self):
        class Error(grpc.RpcError):
            def __init__(self, code, details="", trailers=()):
                self._code, self._details, self._trailers = code, details, trailers

            def code(self):
                return self._code

            def details(self):
                return self._details

            def trailing_metadata(self):
                return self._trailers

        class Largest:  # the longest wait of each random range
            @staticmethod
            def uniform(a, b):
                return b

        busy = Error(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue is full",
                     (("grpc-retry-pushback-ms", "250"),))
        self.assertAlmostEqual(emfit.resend_after(busy, 1, Largest), 0.25 + 0.2)
        self.assertAlmostEqual(emfit.resend_after(busy, 3, Largest), 0.25 + 0.8)
        self.assertAlmostEqual(emfit.resend_after(busy, 9, Largest), 0.25 + 5.0)
        lost = Error(grpc.StatusCode.UNAVAILABLE, "Socket closed")
        self.assertAlmostEqual(emfit.resend_after(lost, 2, Largest), 0.4)
        reset = Error(grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2")
        self.assertAlmostEqual(emfit.resend_after(reset, 1, Largest), 0.2)
        limit = Error(grpc.StatusCode.RESOURCE_EXHAUSTED, "--max_rows",
                      (("grpc-retry-pushback-ms", "-1"),))
        self.assertIsNone(emfit.resend_after(limit, 1, Largest))
        self.assertIsNone(emfit.resend_after(
            Error(grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than max"), 1, Largest))
        self.assertIsNone(emfit.resend_after(
            Error(grpc.StatusCode.INTERNAL, "the server ended the call without a result"), 1,
            Largest))
        self.assertIsNone(emfit.resend_after(
            Error(grpc.StatusCode.INVALID_ARGUMENT, "spec.gmm.k"), 1, Largest))
        with self.assertRaisesRegex(ValueError, "retries: must be an int from 0 to 10"):
            emfit.Client(self.server.address, retries=11)
        self.assertEqual(emfit.Client(self.server.address, retries=np.int64(3)).retries, 3)
        # The package's channels leave retrying to it: gRPC's own retries are off.
        self.assertIn(("grpc.enable_retries", 0), emfit._client._CHANNEL_OPTIONS)

    def test_an_rpc_error_raised_by_the_callback_ends_the_call_and_is_not_retried(self):
        class Mine(grpc.RpcError):
            def code(self):
                return grpc.StatusCode.UNAVAILABLE  # would be re-sent, were it the call's

            def details(self):
                return "the callback's own"

        calls_before = len(self.server.calls())
        attempts = []

        def on_event(event):
            attempts.append(event)
            raise Mine() from KeyError("the cause")
        header = pb.FitHeader()  # a fit that runs for minutes unless cancelled
        header.spec.gmm.k = 4
        header.options.tol = 0
        header.options.max_iter = 100000
        with emfit.Client(self.server.address, retries=4) as client:
            with self.assertRaises(Mine) as raised:
                client.fit(header, long_fit_data(), on_event=on_event)
        # The first event of the only attempt (each attempt's would come here); the exception
        # as raised, its chain included; the call cancelled on the server.
        self.assertEqual(len(attempts), 1)
        self.assertIsInstance(raised.exception.__cause__, KeyError)
        self.server.wait_for_call({"CANCELLED"}, after=calls_before)


class PandasDataFrames(ServerTest):
    @classmethod
    def setUpClass(cls):
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("python3-pandas is not installed (scripts/deps installs it)")
        super().setUpClass()

    def test_a_data_frame_keeps_its_column_names_through_fit_and_predict(self):
        import pandas as pd
        frame = pd.read_csv(faithful_path())
        gm = self.gmm(2, random_state=0).fit(frame)
        self.assertEqual(list(gm.feature_names_in_), ["eruptions", "waiting"])
        self.assertEqual(gm.n_features_in_, 2)
        with self.assertWarnsRegex(UserWarning, "does not have valid feature names"):
            np.testing.assert_array_equal(gm.predict(frame), gm.predict(frame.to_numpy()))
        with self.assertRaises(ValueError) as raised:
            gm.predict(frame[["waiting", "eruptions"]])
        self.assertIn("['waiting', 'eruptions']", str(raised.exception))
        self.assertIn("['eruptions', 'waiting']", str(raised.exception))
        plain = self.gmm(2, random_state=0).fit(frame.to_numpy())
        self.assertFalse(hasattr(plain, "feature_names_in_"))
        np.testing.assert_array_equal(plain.means_, gm.means_)

    def test_missing_cells_of_a_data_frame_are_missing_values(self):
        import pandas as pd
        path = os.path.join(self.server.dir, "holes.csv")
        x, w = write_csv_with_holes(path)
        frame = pd.read_csv(path)  # empty cells -> NaN
        frame["waiting"] = frame["waiting"].astype("Float64")  # pandas' NA, not NaN
        self.assertTrue(frame["waiting"].isna().sum() > 0)
        from_frame = self.gmm(2, random_state=3).fit(frame[["eruptions", "waiting"]],
                                                      sample_weight=frame["w"])
        from_numpy = self.gmm(2, random_state=3).fit(x, sample_weight=w)
        np.testing.assert_array_equal(from_frame.means_, from_numpy.means_)
        np.testing.assert_array_equal(from_frame.covariances_, from_numpy.covariances_)


class SklearnApi(ServerTest):
    @classmethod
    def setUpClass(cls):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("scikit-learn (python3-sklearn) is not installed")
        super().setUpClass()

    def test_clone_copies_the_parameters_and_not_the_fit(self):
        from sklearn.base import clone
        gm = self.gmm(3, covariance_type="diag", tol=1e-4, random_state=5, token=None,
                      credentials=emfit.TlsFiles(ca="/nonexistent/ca.pem"))
        gm.set_params(credentials=None)
        gm.fit(faithful())
        copy = clone(gm)
        self.assertEqual(copy.get_params(), gm.get_params())
        self.assertFalse(hasattr(copy, "means_"))
        self.assertEqual(repr(copy), "GaussianMixture(covariance_type='diag', n_components=3, "
                                     "random_state=5, server='%s', tol=0.0001)"
                         % self.server.address)
        with self.assertRaisesRegex(ValueError, "Invalid parameter 'n_clusters'"):
            gm.set_params(n_clusters=2)

    def test_grid_search_picks_n_components_by_held_out_likelihood(self):
        from sklearn.model_selection import GridSearchCV, KFold
        x = faithful()
        search = GridSearchCV(self.gmm(random_state=0),
                              {"n_components": [1, 2, 3], "covariance_type": ["full", "diag"]},
                              cv=KFold(3, shuffle=True, random_state=0), n_jobs=2)
        search.fit(x)
        scores = search.cv_results_["mean_test_score"]
        self.assertEqual(len(scores), 6)
        self.assertTrue(np.all(np.isfinite(scores)))
        self.assertEqual(search.best_params_["n_components"] > 1, True)
        self.assertIsInstance(search.best_estimator_, emfit.GaussianMixture)
        np.testing.assert_allclose(search.score(x), search.best_estimator_.score(x))

    def test_scikit_learns_e_step_on_our_attributes_matches_the_server(self):
        from sklearn.mixture import GaussianMixture as SkGaussianMixture
        from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
        x = faithful()
        for covariance_type in COVARIANCE_TYPES:
            with self.subTest(covariance_type=covariance_type):
                gm = self.gmm(3, covariance_type=covariance_type, random_state=0).fit(x)
                np.testing.assert_allclose(
                    gm.precisions_cholesky_,
                    _compute_precision_cholesky(gm.covariances_, covariance_type), rtol=1e-10)
                sk = SkGaussianMixture(3, covariance_type=covariance_type)
                sk._set_parameters((gm.weights_, gm.means_, gm.covariances_,
                                    gm.precisions_cholesky_))
                np.testing.assert_allclose(sk.precisions_, gm.precisions_, rtol=1e-10)
                np.testing.assert_allclose(sk.score_samples(x), gm.score_samples(x),
                                           rtol=1e-10)
                np.testing.assert_allclose(sk.predict_proba(x), gm.predict_proba(x),
                                           rtol=1e-8, atol=1e-14)
                np.testing.assert_allclose(sk.score(x), gm.score(x), rtol=1e-12)
                np.testing.assert_allclose(sk.bic(x), gm.bic(x), rtol=1e-12)
                np.testing.assert_allclose(sk.aic(x), gm.aic(x), rtol=1e-12)
                # Client-side sampling draws exactly what scikit-learn draws.
                sk.random_state = gm.random_state
                for got, want in zip(gm.sample(50), sk.sample(50)):
                    np.testing.assert_array_equal(got, want)


class SampleWithoutSklearn(ServerTest):
    def test_samples_have_the_fitted_weights_means_and_covariances(self):
        gm = self.gmm(2, random_state=11).fit(faithful())
        X, y = gm.sample(200000)
        np.testing.assert_array_equal(gm.sample(10)[0], gm.sample(10)[0])  # int random_state
        self.assertEqual(X.shape, (200000, 2))
        for j in range(2):
            rows = X[y == j]
            self.assertAlmostEqual(len(rows) / len(X), gm.weights_[j], delta=0.005)
            np.testing.assert_allclose(rows.mean(axis=0), gm.means_[j],
                                       atol=0.02 * np.sqrt(np.diag(gm.covariances_[j])).max())
            np.testing.assert_allclose(np.cov(rows.T), gm.covariances_[j], rtol=0.03, atol=0.01)


class MkModelMatchesTheCli(ServerTest):
    """emfit.MkModel on the bundled anoles gives the CLI's fit, node posteriors and maps."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tree = os.path.join(ARGS.repo, "data/anole_tree.nwk")
        cls.tips_csv = os.path.join(ARGS.repo, "data/anole_ecomorph.csv")
        with open(cls.tips_csv) as f:
            cls.tips = dict(line.strip().split(",") for line in list(f)[1:] if line.strip())

    def mk(self, *args, **kwargs):
        return emfit.MkModel(*args, server=self.server.address, **kwargs)

    def cli(self, command, *flags):
        out = os.path.join(self.server.dir, "cli_mk_%s" % command)
        self.run_cli(command, "--tree=" + self.tree, "--tips=" + self.tips_csv, "--out=" + out,
                     *flags)
        return out

    def test_fit_posterior_and_maps_equal_the_clis(self):
        for rates in ("ER", "ARD"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", emfit.ServerWarning)  # rates at their bound
                m = self.mk(rates).fit(self.tree, self.tips)
            with open(self.cli("fit", "--family=mk", "--rates=" + rates)) as f:
                cli = json.load(f)
            self.assertEqual(m.loglik_, cli["summary"]["log_likelihood"])
            self.assertEqual(m.aic_, cli["summary"]["aic"])
            np.testing.assert_array_equal(m.rates_, cli["mk"]["rates"])
            np.testing.assert_array_equal(m.q_.ravel(), cli["model"]["mk"]["q"]["values"])
            self.assertEqual(m.states_, ["CG", "GB", "TC", "TG", "Tr", "Tw"])
            self.assertEqual(m.node_posteriors_.probabilities.shape, (163, 6))
        model = os.path.join(self.server.dir, "cli_mk_fit")  # the ARD fit
        post = m.posterior(self.tree, self.tips)
        self.cli("posterior", "--model=" + model)
        nodes = np.genfromtxt(os.path.join(self.server.dir, "cli_mk_posterior"), delimiter=",",
                              names=True, dtype=None, encoding="utf-8")
        np.testing.assert_array_equal(
            post.probabilities, np.column_stack([nodes[s] for s in m.states_]))
        self.assertEqual(post.states, list(nodes["state"]))
        np.testing.assert_array_equal(post.probabilities, m.node_posteriors_.probabilities)
        self.assertEqual(post.log_likelihood, m.loglik_)
        self.assertEqual(m.score(self.tree, self.tips), m.loglik_)
        maps = m.sample_histories(self.tree, self.tips, n=40, random_state=3)
        self.cli("simmap", "--model=" + model, "--n=40", "--seed=3")
        with open(os.path.join(self.server.dir, "cli_mk_simmap")) as f:
            self.assertEqual(maps.maps, f.read().splitlines())
        self.assertAlmostEqual(maps.mean_times.sum(), m.node_posteriors_.expected_times.sum())

    def test_missing_and_ambiguous_tips_and_unknown_states(self):
        tips = dict(self.tips)
        tips["ahli"], tips["allogus"] = "?", "TG|TC"
        m = self.mk("ER").fit(self.tree, tips)
        self.assertEqual(m.summary_.rows_used, 82)
        self.assertLess(m.loglik_, 0)
        with self.assertRaisesRegex(ValueError, "state 'XX' is not one of the declared states"):
            self.mk("ER", states=["CG", "GB", "TC", "TG", "Tr", "Tw"]).fit(
                self.tree, dict(tips, ahli="XX"))
        fewer = {k: v for k, v in list(self.tips.items())[2:]}
        with self.assertRaisesRegex(emfit.InvalidArgumentError, "2 tips of the tree have no row"):
            self.mk("ER").fit(self.tree, fewer)
        with self.assertWarnsRegex(emfit.ServerWarning, "missing_tips"):
            m = self.mk("ER", allow_missing_tips=True).fit(self.tree, fewer)
        self.assertEqual(m.summary_.rows_used, 80)


def python_blocks(doc):
    import re
    with open(os.path.join(ARGS.repo, doc)) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


class DocsExamples(ServerTest):
    def test_the_raw_stub_example_of_docs_api_runs_on_a_csv_with_empty_cells(self):
        [example] = [b for b in python_blocks("docs/api.md") if "emfit_pb2_grpc" in b]
        path = os.path.join(self.server.dir, "holes.csv")
        x, _ = write_csv_with_holes(path, weight_column=False)
        line = 'path, server = "data/faithful.csv", "localhost:50051"'
        self.assertIn(line, example)
        namespace = {}
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            exec(example.replace(line, "path, server = %r, %r" % (path, self.server.address)),
                 namespace)
        self.assertIn(" 1 ", printed.getvalue())  # iterations were printed
        gm = self.gmm(2, n_init=3, random_state=0).fit(x)
        np.testing.assert_array_equal(namespace["means"], gm.means_)
        np.testing.assert_array_equal(namespace["covariances"], gm.covariances_)

    def test_the_readme_example_runs(self):
        example = [b for b in python_blocks("README.md") if "GaussianMixture" in b][0]
        self.assertLessEqual(len(example.strip().splitlines()), 3)
        namespace = {"X": faithful()}
        exec(example.replace('"localhost:50051"', repr(self.server.address)), namespace)
        self.assertEqual(namespace["gm"].means_.shape, (3, 2))


class PipInstall(unittest.TestCase):
    def test_pip_installs_the_package_from_a_checkout(self):
        with tempfile.TemporaryDirectory(prefix="emfit-pip-") as tmp:
            checkout = os.path.join(tmp, "checkout")  # pip's build writes next to setup.py
            shutil.copytree(os.path.join(ARGS.repo, "client/python"),
                            os.path.join(checkout, "client/python"),
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            shutil.copytree(os.path.join(ARGS.repo, "proto"), os.path.join(checkout, "proto"))
            site = os.path.join(tmp, "site")
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                                "--no-index", "--no-deps", "--target", site,
                                os.path.join(checkout, "client/python")],
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = subprocess.run(
                [sys.executable, "-c", "import emfit, emfit.v1.emfit_pb2_grpc as g; "
                 "print(emfit.__file__); print(g.EmFitServiceStub.__name__)"],
                capture_output=True, text=True, cwd=tmp, env=dict(os.environ, PYTHONPATH=site))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.split(), [os.path.join(site, "emfit", "__init__.py"),
                                                "EmFitServiceStub"])


def main():
    """Runs the test classes named on the command line of the __main__ module (this one, or
    another Python client test that imports it, e.g. python_hmm_test.py)."""
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--emfitd")
    parser.add_argument("--emfit")
    parser.add_argument("--repo", required=True)
    ARGS, rest = parser.parse_known_args()
    program = unittest.main(argv=[sys.argv[0], "-v", *rest], exit=False)
    result = program.result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.skipped and result.testsRun <= len(result.skipped):
        sys.exit(77)  # ctest's SKIP_RETURN_CODE: every test was skipped, with the reason above


if __name__ == "__main__":
    main()
