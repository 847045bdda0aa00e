"""End-to-end: the real emfitd and emfit binaries, and a Python gRPC client, on bundled data."""
import argparse
import json
import os
import subprocess
import sys
import unittest

import numpy as np

from emfit_e2e import Emfitd, generate_stubs, wait_ready

ARGS = None


class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Emfitd(ARGS.emfitd, "--workers=2", "--queue=4")
        try:
            generate_stubs(ARGS.repo, os.path.join(ARGS.repo, "tests/e2e/proto"))
        except Exception:
            cls.server.stop()  # tearDownClass does not run when setUpClass fails
            raise

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, "emfitd exited with %d:\n%s" % (code, cls.server.read_log())

    def run_cli(self, *flags):
        return subprocess.run([ARGS.emfit, *flags], capture_output=True, text=True, timeout=120)

    def test_cli_fits_old_faithful_to_the_known_maximum(self):
        out = os.path.join(self.server.dir, "model.json")
        r = self.run_cli("fit", "--server=" + self.server.address,
                         "--data=" + os.path.join(ARGS.repo, "data/faithful.csv"), "--k=2",
                         "--covariance=full", "--tol=1e-8", "--max_iter=500", "--n_init=3",
                         "--seed=1", "--progress=log", "--out=" + out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            result = json.load(f)
        summary = result["summary"]
        # The maximum mclust and scikit-learn report (data/README.md).
        self.assertAlmostEqual(summary["log_likelihood"], -1130.264, delta=1e-3)
        self.assertAlmostEqual(summary["bic"], 2322.19, delta=1e-2)
        self.assertEqual(summary["reason"], "TERMINATION_REASON_CONVERGED")
        self.assertTrue(summary["converged"])
        self.assertEqual(len(summary["restarts"]), 3)
        gmm = result["model"]["gmm"]
        self.assertEqual(gmm["covariance_type"], "COVARIANCE_TYPE_FULL")
        self.assertAlmostEqual(sum(gmm["weights"]), 1.0, places=12)
        self.assertEqual((gmm["means"]["rows"], gmm["means"]["cols"]), (2, 2))
        self.assertEqual((gmm["covariances"]["rows"], gmm["covariances"]["cols"]), (4, 2))
        # Live progress: iteration lines, then the report.
        self.assertIn("accepted as fit-", r.stderr)
        self.assertIn("iter    1", r.stderr)
        self.assertIn("component 1: weight", r.stdout)
        self.assertIn("waiting", r.stdout)  # column names from the CSV header
        history = summary["history"]
        self.assertTrue(all(b >= a - 1e-9 * abs(a) for a, b in zip(history, history[1:])))

    def test_cli_posterior_score_and_select_on_the_bundled_data(self):
        data = os.path.join(ARGS.repo, "data/faithful.csv")
        model = os.path.join(self.server.dir, "fit.json")
        r = self.run_cli("fit", "--server=" + self.server.address, "--data=" + data, "--k=2",
                         "--tol=1e-8", "--progress=none", "--out=" + model)
        self.assertEqual(r.returncode, 0, r.stderr)
        posteriors = os.path.join(self.server.dir, "post.csv")
        r = self.run_cli("posterior", "--server=" + self.server.address, "--model=" + model,
                         "--data=" + data, "--out=" + posteriors)
        self.assertEqual(r.returncode, 0, r.stderr)
        post = np.loadtxt(posteriors, delimiter=",", skiprows=1)
        self.assertEqual(post.shape, (272, 4))
        np.testing.assert_allclose(post[:, :2].sum(axis=1), 1.0, atol=1e-12)
        with open(model) as f:
            fit = json.load(f)
        self.assertAlmostEqual(post[:, 2].sum(), fit["summary"]["log_likelihood"], places=6)
        r = self.run_cli("score", "--server=" + self.server.address, "--model=" + model,
                         "--data=" + data)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("BIC 2322.19", r.stdout)
        selection = os.path.join(self.server.dir, "select.json")
        r = self.run_cli("select", "--server=" + self.server.address, "--data=" + data,
                         "--k=1..3", "--covariance=full,diag", "--progress=none",
                         "--out=" + selection)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(selection) as f:
            sel = json.load(f)
        self.assertEqual(len(sel["candidates"]), 6)
        best = sel["candidates"][sel["best"]]
        self.assertEqual((best["k"], best["covariance_type"]), (2, "COVARIANCE_TYPE_FULL"))
        self.assertIn("<- best", r.stdout)

    def test_cli_fits_data_with_missing_cells_and_weights(self):
        x = np.loadtxt(os.path.join(ARGS.repo, "data/faithful.csv"), delimiter=",", skiprows=1)
        path = os.path.join(self.server.dir, "holes.csv")
        with open(path, "w") as f:
            f.write("eruptions,waiting,w\n")
            for i, (a, b) in enumerate(x):
                cells = ["NA" if i % 5 == 0 else repr(a), "" if i % 7 == 0 else repr(b),
                         str(1 + i % 2)]
                f.write(",".join(cells) + "\n")
        out = os.path.join(self.server.dir, "holes.json")
        r = self.run_cli("fit", "--server=" + self.server.address, "--data=" + path, "--k=2",
                         "--weights=w", "--progress=none", "--out=" + out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            summary = json.load(f)["summary"]
        # 64-bit counts are JSON strings (protobuf's JSON mapping). Rows 0, 35, 70, ... have
        # both cells missing.
        self.assertEqual(int(summary["rows_skipped"]), 8)
        self.assertEqual(int(summary["rows_used"]), 264)

    @staticmethod
    def cpu_level():
        """The x86-64 level this CPU runs (4, 3 or 0), as emfitd's dispatch decides it."""
        with open("/proc/cpuinfo") as f:
            flags = set(next((l for l in f if l.startswith("flags")), "").split())
        if not {"avx2", "fma"} <= flags:
            return 0
        return 4 if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags else 3

    def test_emfitd_starts_the_best_build_this_cpu_runs(self):
        level = self.cpu_level()
        want = {4: "x86-64-v4", 3: "x86-64-v3", 0: "portable"}[level]
        self.assertIn("emfitd %s build" % want, self.server.read_log())

    def test_the_portable_and_the_dispatched_builds_agree(self):
        # emfitd hands over to its x86-64-v4 or -v3 build on CPUs that can run them;
        # EMFIT_PORTABLE=1 keeps the portable one. Both must give the same fit up to rounding.
        if self.cpu_level() == 0:
            self.skipTest("this CPU runs no dispatched build (no AVX2 and FMA): there is nothing "
                          "to compare the portable build with")
        env = dict(os.environ, EMFIT_PORTABLE="1")
        portable = Emfitd(ARGS.emfitd, "--workers=1", env=env)
        try:
            self.assertIn("emfitd portable build", portable.read_log())
            self.assertNotIn("emfitd portable build", self.server.read_log())
            results = []
            for server in (portable, self.server):
                out = os.path.join(portable.dir, "variant.json")
                r = self.run_cli("fit", "--server=" + server.address,
                                 "--data=" + os.path.join(ARGS.repo, "data/faithful.csv"),
                                 "--k=3", "--covariance=full", "--tol=0", "--max_iter=50",
                                 "--progress=none", "--out=" + out)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(out) as f:
                    results.append(json.load(f)["summary"]["log_likelihood"])
            self.assertAlmostEqual(results[0], results[1], delta=1e-9 * abs(results[0]))
        finally:
            self.assertEqual(portable.stop(), 0)

    def test_cli_reports_server_errors_with_the_field(self):
        r = self.run_cli("fit", "--server=" + self.server.address,
                         "--data=" + os.path.join(ARGS.repo, "data/faithful.csv"), "--k=500")
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        self.assertIn("spec.gmm.k", r.stderr)

    def test_cli_reports_a_missing_file(self):
        r = self.run_cli("fit", "--server=" + self.server.address, "--data=/nonexistent.csv")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot open", r.stderr)

    def test_python_client_fits_and_health_is_serving(self):
        from emfit.v1 import emfit_pb2, emfit_pb2_grpc
        from health_check import health_pb2, health_pb2_grpc
        channel = wait_ready(self.server.address)
        health = health_pb2_grpc.HealthStub(channel)
        self.assertEqual(health.Check(health_pb2.HealthCheckRequest()).status,
                         health_pb2.HealthCheckResponse.SERVING)

        from reflection_check import reflection_pb2, reflection_pb2_grpc
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in answers[0].list_services_response.service}
        self.assertIn("emfit.v1.EmFitService", names)
        self.assertIn("grpc.health.v1.Health", names)

        x = np.loadtxt(os.path.join(ARGS.repo, "data/faithful.csv"), delimiter=",", skiprows=1)

        def requests():
            header = emfit_pb2.FitHeader()
            header.spec.gmm.k = 2
            header.spec.gmm.covariance_type = emfit_pb2.COVARIANCE_TYPE_DIAG
            header.shape.rows, header.shape.cols = x.shape
            header.options.seed = 3
            yield emfit_pb2.FitRequest(header=header)
            flat = x.ravel()
            for start in range(0, flat.size, 100):
                yield emfit_pb2.FitRequest(
                    chunk=emfit_pb2.DataChunk(values=flat[start:start + 100]))

        stub = emfit_pb2_grpc.EmFitServiceStub(channel)
        kinds = [e.WhichOneof("kind") for e in stub.Fit(requests())]
        self.assertEqual(kinds[0], "accepted")
        self.assertEqual(kinds[-1], "result")
        self.assertGreater(kinds.count("iteration"), 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--emfitd", required=True)
    parser.add_argument("--emfit", required=True)
    parser.add_argument("--repo", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])
