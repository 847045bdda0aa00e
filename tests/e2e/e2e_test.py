"""End-to-end: the real emfitd and emfit binaries, and a Python gRPC client, on bundled data."""
import argparse
import csv
import json
import os
import re
import resource
import signal
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

    @staticmethod
    def dispatched_builds():
        """Whether emfitd's x86-64-v3 and -v4 builds are beside it (EMFIT_DISPATCH=ON)."""
        here = os.path.dirname(os.path.abspath(ARGS.emfitd))
        return all(os.path.exists(os.path.join(here, "emfitd-x86-64-" + v)) for v in ("v3", "v4"))

    def test_emfitd_starts_the_best_build_this_cpu_runs(self):
        level = self.cpu_level() if self.dispatched_builds() else 0
        want = {4: "x86-64-v4", 3: "x86-64-v3", 0: "portable"}[level]
        self.assertIn("emfitd %s build" % want, self.server.read_log())

    def test_the_portable_and_the_dispatched_builds_agree(self):
        # emfitd hands over to its x86-64-v4 or -v3 build on CPUs that can run them;
        # EMFIT_PORTABLE=1 keeps the portable one. Both must give the same fit up to rounding.
        if self.cpu_level() == 0:
            self.skipTest("this CPU runs no dispatched build (no AVX2 and FMA): there is nothing "
                          "to compare the portable build with")
        if not self.dispatched_builds():
            self.skipTest("emfitd was built without its dispatched builds (EMFIT_DISPATCH=OFF): "
                          "there is nothing to compare the portable build with")
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


def read_simmap_line(line, states):
    """One SIMMAP map: (changes {(from, to): count}, time per state, total length, tip ends
    {label: state}). Branch maps list their segments from the child's end."""
    changes, times, tips = {}, dict.fromkeys(states, 0.0), {}
    total = 0.0
    for m in re.finditer(r"([^(),:{}]*):\{([^}]*)\}", line):
        segments = [seg.split(",") for seg in m.group(2).split(":")]
        for state, length in segments:
            assert state in states, state
            times[state] += float(length)
            total += float(length)
        for later, earlier in zip(segments, segments[1:]):
            assert later[0] != earlier[0]
            key = (earlier[0], later[0])
            changes[key] = changes.get(key, 0) + 1
        if m.group(1):
            tips[m.group(1)] = segments[0][0]
    return changes, times, total, tips


def have_phytools():
    try:
        return subprocess.run(["Rscript", "-e", "suppressMessages(library(phytools))"],
                              capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Anoles(unittest.TestCase):
    """The Mk family end to end on the bundled anoles (data/anole_tree.nwk, 82 tips; ecomorphs in
    data/anole_ecomorph.csv, 6 states) against phytools' values
    (tests/fixtures/phytools_anoles.json, made by tools/make_phytools_fixtures.R)."""

    @classmethod
    def setUpClass(cls):
        cls.server = Emfitd(ARGS.emfitd, "--workers=2", "--queue=8")
        cls.tree = os.path.join(ARGS.repo, "data/anole_tree.nwk")
        cls.tips = os.path.join(ARGS.repo, "data/anole_ecomorph.csv")
        with open(os.path.join(ARGS.repo, "tests/fixtures/phytools_anoles.json")) as f:
            cls.fixture = json.load(f)
        cls.states = cls.fixture["states"]
        with open(cls.tips) as f:
            cls.tip_states = dict(line.strip().split(",") for line in list(f)[1:] if line.strip())

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, "emfitd exited with %d:\n%s" % (code, cls.server.read_log())

    def run_cli(self, *flags):
        return subprocess.run([ARGS.emfit, *flags, "--server=" + self.server.address],
                              capture_output=True, text=True, timeout=300)

    def fit(self, name, *flags):
        out = os.path.join(self.server.dir, name + ".json")
        r = self.run_cli("fit", "--family=mk", "--tree=" + self.tree, "--tips=" + self.tips,
                         "--out=" + out, *flags)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            return r, out, json.load(f)

    def test_cli_fits_er_and_ard_to_phytools_values(self):
        for rates in ("ER", "ARD"):
            want = self.fixture["fitMk"][rates]
            r, _, result = self.fit("anoles_" + rates, "--rates=" + rates, "--progress=none")
            summary = result["summary"]
            self.assertEqual(summary["reason"], "TERMINATION_REASON_CONVERGED")
            # The same maximum: vanishing rates sit at q_min (~1e-10), not 0 (docs/mk.md).
            self.assertAlmostEqual(summary["log_likelihood"], want["log_likelihood"], delta=1e-6)
            self.assertAlmostEqual(summary["aic"], want["aic"], delta=2e-6)
            np.testing.assert_allclose(result["mk"]["rates"], want["rates"], atol=2e-5)
            self.assertEqual(result["model"]["mk"]["state_names"], self.states)
            # The printed report: the rate matrix with the state names, ancestral states.
            self.assertIn("rate matrix Q", r.stdout)
            self.assertIn("Tw", r.stdout.split("rate matrix Q")[1].splitlines()[1])
            self.assertIn("ancestral states", r.stdout)
            tree = result["mk"]["tree"]
            self.assertEqual(tree["num_tips"], 82)
            self.assertEqual(len(tree["node_labels"]), 163)

    def test_cli_select_prefers_er_by_both_criteria(self):
        for criterion in ("bic", "aic"):
            out = os.path.join(self.server.dir, "select_%s.json" % criterion)
            r = self.run_cli("select", "--family=mk", "--tree=" + self.tree,
                             "--tips=" + self.tips, "--rates=ER,SYM,ARD",
                             "--criterion=" + criterion, "--progress=none", "--out=" + out)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out) as f:
                sel = json.load(f)
            self.assertEqual([c["spec"]["mk"]["rate_model"] for c in sel["candidates"]],
                             ["RATE_MODEL_ER", "RATE_MODEL_SYM", "RATE_MODEL_ARD"])
            for c in sel["candidates"]:
                name = c["spec"]["mk"]["rate_model"][len("RATE_MODEL_"):]
                self.assertAlmostEqual(c["summary"]["aic"], self.fixture["fitMk"][name]["aic"],
                                       delta=2e-6)
            self.assertEqual(sel["best"], 0)
            self.assertRegex(r.stdout, r"ER .*<- best")

    def test_cli_streams_a_monte_carlo_fit_with_growing_sample_sizes(self):
        r, _, result = self.fit("anoles_mcem", "--rates=SYM", "--estep=monte-carlo", "--seed=3",
                                "--progress=log")
        sizes = [int(m) for m in re.findall(r"histories (\d+)", r.stderr)]
        self.assertGreater(len(sizes), 5)
        self.assertEqual(sizes, sorted(sizes))
        self.assertGreater(sizes[-1], sizes[0])
        # Within MCEM's tolerance of the exact (phytools') maximum.
        self.assertAlmostEqual(result["summary"]["log_likelihood"],
                               self.fixture["fitMk"]["SYM"]["log_likelihood"], delta=0.01)
        self.assertEqual(len(result["mk"]["rate_standard_errors"]), 15)
        self.assertIn("Monte Carlo standard errors of the rates", r.stdout)

    def test_cli_posterior_writes_every_node(self):
        _, model, _ = self.fit("anoles_er_post", "--rates=ER", "--progress=none")
        nodes = os.path.join(self.server.dir, "nodes.csv")
        r = self.run_cli("posterior", "--model=" + model, "--tree=" + self.tree,
                         "--tips=" + self.tips, "--out=" + nodes)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("posteriors of 163 nodes (82 tips, 81 internal)", r.stderr)
        with open(nodes) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 163)
        for row in rows:
            p = np.array([float(row[s]) for s in self.states])
            self.assertAlmostEqual(p.sum(), 1.0, places=12)
            self.assertEqual(row["state"], self.states[int(np.argmax(p))])
        for row in rows[:82]:  # the tips, observed: their own state
            self.assertEqual(row["state"], self.tip_states[row["label"]])
        self.assertEqual(rows[82]["parent"], "-1")  # the root is node 82 (ape's 83)

    def test_cli_simmap_writes_maps_that_add_up_and_phytools_reads(self):
        _, model, result = self.fit("anoles_er_maps", "--rates=ER", "--progress=none")
        maps = os.path.join(self.server.dir, "maps.txt")
        summary_path = os.path.join(self.server.dir, "maps_summary.json")
        r = self.run_cli("simmap", "--model=" + model, "--tree=" + self.tree,
                         "--tips=" + self.tips, "--n=200", "--seed=1", "--out=" + maps,
                         "--summary_out=" + summary_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("200 stochastic maps", r.stdout)
        with open(maps) as f:
            lines = f.read().splitlines()
        with open(summary_path) as f:
            summary = json.load(f)
        self.assertEqual(len(lines), 200)
        tree_length = sum(t for t in result["mk"]["tree"]["expected_times"])
        k = len(self.states)
        changes = np.zeros((k, k))
        times = np.zeros(k)
        parsed = []
        for line in lines:
            ch, tm, total, tips = read_simmap_line(line, self.states)
            parsed.append((ch, tm))
            self.assertAlmostEqual(total, tree_length, delta=1e-9)
            self.assertEqual(tips, self.tip_states)
            for (a, b), n in ch.items():
                changes[self.states.index(a), self.states.index(b)] += n
            times += [tm[s] for s in self.states]
        np.testing.assert_allclose(np.array(summary["mean_transitions"]["values"]).reshape(k, k),
                                   changes / 200, atol=1e-12)
        np.testing.assert_allclose(summary["mean_times"], times / 200, rtol=1e-9)
        # The same seed, the same maps.
        again = os.path.join(self.server.dir, "maps_again.txt")
        r = self.run_cli("simmap", "--model=" + model, "--tree=" + self.tree,
                         "--tips=" + self.tips, "--n=200", "--seed=1", "--out=" + again,
                         "--progress=none")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(again) as f:
            self.assertEqual(f.read().splitlines(), lines)
        if not have_phytools():
            self.skipTest("R with phytools is not installed (apt-get install -y r-cran-phytools): "
                          "the maps were checked, phytools' read-back did not run")
        script = os.path.join(self.server.dir, "read_maps.R")
        counts = os.path.join(self.server.dir, "phytools_counts.txt")
        with open(script, "w") as f:
            f.write("""args <- commandArgs(trailingOnly = TRUE)
suppressMessages(library(phytools))
trees <- read.simmap(file = args[1], format = "phylip")
out <- character(0)
for (t in trees) {
  tr <- countSimmap(t, message = FALSE)$Tr
  cells <- c()
  for (a in rownames(tr)) for (b in colnames(tr)) if (a != b) cells <- c(cells, paste0(a, ">", b, "=", tr[a, b]))
  times <- colSums(t$mapped.edge)
  out <- c(out, paste(Ntip(t), paste(cells, collapse = " "),
                      paste(paste0(names(times), "@", sprintf("%.15g", times)), collapse = " ")))
}
writeLines(out, args[2])
""")
        rr = subprocess.run(["Rscript", script, maps, counts], capture_output=True, text=True,
                            timeout=600)
        self.assertEqual(rr.returncode, 0, rr.stderr)
        with open(counts) as f:
            got = f.read().splitlines()
        self.assertEqual(len(got), 200)
        for i, (line, (ch, tm)) in enumerate(zip(got, parsed)):
            fields = line.split()
            self.assertEqual(fields[0], "82")
            for cell in fields[1:]:
                if ">" in cell:
                    pair, n = cell.split("=")
                    a, b = pair.split(">")
                    self.assertEqual(int(n), ch.get((a, b), 0), "map %d %s" % (i, pair))
                else:
                    state, t = cell.split("@")
                    self.assertAlmostEqual(float(t), tm[state], delta=1e-9)

    def test_cli_simmap_cancels_the_call_when_the_maps_cannot_be_written(self):
        _, model, _ = self.fit("anoles_er_cancel", "--rates=ER", "--progress=none")
        maps = os.path.join(self.server.dir, "big_maps.txt")
        summary_path = os.path.join(self.server.dir, "big_maps_summary.json")

        def small_files():  # writes past 64 KiB fail (EFBIG) instead of killing the process
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

        before = len(self.server.calls())
        r = subprocess.run([ARGS.emfit, "simmap", "--model=" + model, "--tree=" + self.tree,
                            "--tips=" + self.tips, "--n=100000", "--seed=1", "--out=" + maps,
                            "--summary_out=" + summary_path, "--progress=none",
                            "--server=" + self.server.address],
                           capture_output=True, text=True, timeout=300, preexec_fn=small_files)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("--out: cannot write '%s': File too large" % maps, r.stderr)
        self.assertFalse(os.path.exists(maps))
        self.assertFalse(os.path.exists(summary_path))
        self.assertEqual([f for f in os.listdir(self.server.dir) if ".partial" in f], [])
        # The server saw the call cancelled, not run to its 100,000 maps.
        ended = self.server.wait_for_call({"CANCELLED", "OK"}, after=before)
        self.assertEqual(ended["outcome"], "CANCELLED")
        # Maps and their summary on standard output at once is a usage error.
        r = self.run_cli("simmap", "--model=" + model, "--tree=" + self.tree,
                         "--tips=" + self.tips, "--summary_out=-")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--summary_out=-", r.stderr)
        # A summary on standard output with the maps in a file: the report goes to standard
        # error.
        r = self.run_cli("simmap", "--model=" + model, "--tree=" + self.tree,
                         "--tips=" + self.tips, "--n=5", "--out=" + maps, "--summary_out=-")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(int(json.loads(r.stdout)["count"]), 5)
        self.assertIn("5 stochastic maps", r.stderr)

    def test_cli_reads_rate_and_root_files_with_the_delimiter_and_header_flags(self):
        k = len(self.states)
        d = self.server.dir
        tips, rates, root = (os.path.join(d, n) for n in ("tips.ssv", "rates.ssv", "root.ssv"))
        with open(tips, "w") as f:
            for label, state in self.tip_states.items():
                f.write("%s;%s\n" % (label, state))
        # ER as an index matrix, and the equal root prior as a file: phytools' ER maximum.
        with open(rates, "w") as f:
            f.write("\n".join(";".join("0" if i == j else "1" for j in range(k))
                              for i in range(k)) + "\n")
        with open(root, "w") as f:
            f.write(";".join(self.states) + "\n" + ";".join(["%r" % (1 / k)] * k) + "\n")
        out = os.path.join(d, "anoles_semicolons.json")
        r = self.run_cli("fit", "--family=mk", "--tree=" + self.tree, "--tips=" + tips,
                         "--rates=" + rates, "--root=" + root, "--delimiter=;",
                         "--progress=none", "--out=" + out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            result = json.load(f)
        self.assertEqual(result["model"]["mk"]["state_names"], self.states)
        self.assertAlmostEqual(result["summary"]["log_likelihood"],
                               self.fixture["fitMk"]["ER"]["log_likelihood"], delta=1e-6)
        # --header=no (the tips file has none): the root file's header line is data, and not
        # numbers.
        r = self.run_cli("fit", "--family=mk", "--tree=" + self.tree, "--tips=" + tips,
                         "--rates=" + rates, "--root=" + root, "--delimiter=;", "--header=no")
        self.assertEqual(r.returncode, 1)
        self.assertIn(root, r.stderr)

    def test_cli_reports_bad_tips_and_trees_with_where(self):
        r = self.run_cli("fit", "--family=mk", "--tree=" + self.tree, "--tips=" + self.tips,
                         "--states=CG,GB,TC,TG,Tr")
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        self.assertIn("state 'Tw' is not one of the declared states", r.stderr)
        bad = os.path.join(self.server.dir, "bad.nwk")
        with open(bad, "w") as f:
            f.write("((ahli:1,allogus:-2):1,imias:3);")
        r = self.run_cli("fit", "--family=mk", "--tree=" + bad, "--tips=" + self.tips)
        self.assertEqual(r.returncode, 1)
        self.assertIn("negative branch length -2 for 'allogus' at byte 17", r.stderr)
        r = self.run_cli("fit", "--family=mk", "--tree=" + self.tree, "--tips=" + self.tips,
                         "--rates=ARD", "--estep=monte-carlo", "--acceleration=squarem")
        self.assertEqual(r.returncode, 1)
        self.assertIn("options.acceleration", r.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--emfitd", required=True)
    parser.add_argument("--emfit", required=True)
    parser.add_argument("--repo", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])
