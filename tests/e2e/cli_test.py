"""The emfit CLI's habits (issue 9) against a real emfitd: help and version, exit statuses,
standard input and output, column selection, delimiters, warnings, feature names, and the
right answer with default settings on Old Faithful."""
import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import unittest

import numpy as np

from emfit_e2e import Emfitd

ARGS = None


def data(name):
    return os.path.join(ARGS.repo, "data", name)


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Emfitd(ARGS.emfitd, "--workers=2", "--queue=8")

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, "emfitd exited with %d:\n%s" % (code, cls.server.read_log())

    def emfit(self, *flags, stdin=None, server=True):
        extra = ["--server=" + self.server.address] if server else []
        return subprocess.run([ARGS.emfit, *flags, *extra], capture_output=True, text=True,
                              input=stdin, timeout=120)

    def path(self, name):
        return os.path.join(self.server.dir, name)

    # --- help, version, usage errors ---

    def test_help_prints_usage_and_exits_zero(self):
        r = self.emfit("--help", server=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        for command in ("fit", "posterior", "score", "select", "health"):
            self.assertIn(command, r.stdout)
        r = self.emfit("fit", "--help", server=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("emfit fit --data=FILE.csv", r.stdout)
        self.assertIn("--covariance=full", r.stdout)  # the family's flags, with defaults
        self.assertIn("--tls_ca", r.stdout)
        self.assertNotIn("--criterion", r.stdout)  # select's, not fit's
        r = self.emfit("select", "-h", server=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--criterion=bic", r.stdout)

    def test_help_of_the_model_commands_lists_every_familys_flags(self):
        r = self.emfit("simmap", "--help", server=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        for flag in ("--tree", "--tips", "--state_column", "--allow_missing_tips", "--n=100",
                     "--summary_out"):
            self.assertIn(flag, r.stdout)
        self.assertNotIn("Flags for hmm models", r.stdout)  # maps are drawn from Mk models
        self.assertRegex(r.stdout, r"--model\n.*simmap")
        for command, families in (("posterior", {"hmm": ["--sequence_column", "--summary_out"],
                                                 "mk": ["--tree", "--tips", "--state_column"]}),
                                  ("score", {"hmm": ["--sequence_column"],
                                             "mk": ["--tree", "--tips"]})):
            r = self.emfit(command, "--help", server=False)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"--model\n.*posterior, score, simmap")
            for family, flags in families.items():
                with self.subTest(command=command, family=family):
                    section = r.stdout.split("Flags for %s models:\n" % family)[1]
                    section = section.split("\n\n")[0]
                    for flag in flags:
                        self.assertIn(flag, section)
        # --family narrows the list to its own.
        r = self.emfit("posterior", "--family=hmm", "--help", server=False)
        self.assertIn("Flags for hmm models", r.stdout)
        self.assertNotIn("--tips", r.stdout)

    def test_version_names_the_version_and_the_build(self):
        r = self.emfit("--version", server=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^emfit \d+\.\d+\.\d+ \(portable build; emfitd on this CPU "
                                   r"starts its (x86-64-v4|x86-64-v3|portable) build\)")

    def test_usage_errors_exit_two_before_reading_any_file(self):
        missing = self.path("not-there.csv")  # a usage error must be found before this is read
        cases = [
            ("fit", "--covariance=bogus", "--data=" + missing),
            ("fit", "--no_such_flag", "--data=" + missing),
            ("fit",),
            ("select", "--k=1,,2", "--data=" + missing),
            ("fit", "--chunk_bytes=0", "--data=" + missing),
            ("fit", "--timeout=-1", "--data=" + missing),
            ("fit", "--retries=11", "--data=" + missing),
            ("fit", "--retries=-1", "--data=" + missing),
            ("fit", "--k=x", "--data=" + missing),
            ("fit", "--max_iter=abc", "--data=" + missing),
            ("fit", "--criterion=bic", "--data=" + missing),  # select's flag
            ("posterior", "--data=" + missing),  # no --model
            ("fit", "--family=nope", "--data=" + missing),
            ("frobnicate",),
        ]
        for flags in cases:
            with self.subTest(flags=flags):
                r = self.emfit(*flags)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertNotIn("cannot open", r.stderr)
                self.assertTrue(r.stderr.startswith("emfit: "), r.stderr)

    # --- files, standard input and output ---

    def test_out_dash_writes_the_json_to_standard_output(self):
        r = self.emfit("fit", "--data=" + data("faithful.csv"), "--k=2", "--progress=none",
                       "--out=-")
        self.assertEqual(r.returncode, 0, r.stderr)
        result = json.loads(r.stdout)  # only the JSON on standard output
        self.assertIn("gmm", result["model"])
        self.assertIn("component 1: weight", r.stderr)  # the report moved to standard error

    def test_data_is_read_from_standard_input_and_from_a_named_pipe(self):
        with open(data("faithful.csv")) as f:
            text = f.read()
        r = self.emfit("fit", "--data=-", "--k=2", "--seed=4", "--progress=none", "--out=-",
                       stdin=text)
        self.assertEqual(r.returncode, 0, r.stderr)
        from_stdin = json.loads(r.stdout)["summary"]["log_likelihood"]
        fifo = self.path("faithful.fifo")
        if os.path.exists(fifo):
            os.unlink(fifo)
        os.mkfifo(fifo)
        def write():
            with open(fifo, "w") as f:
                f.write(text)

        writer = threading.Thread(target=write)
        writer.start()
        r = self.emfit("fit", "--data=" + fifo, "--k=2", "--seed=4", "--progress=none", "--out=-")
        writer.join(timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["summary"]["log_likelihood"], from_stdin)
        r = self.emfit("fit", "--data=" + data("faithful.csv"), "--k=2", "--seed=4",
                       "--progress=none", "--out=-")
        self.assertEqual(json.loads(r.stdout)["summary"]["log_likelihood"], from_stdin)

    def test_a_directory_as_data_is_a_clear_error(self):
        r = self.emfit("fit", "--data=" + self.server.dir, "--k=2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("is a directory", r.stderr)

    def test_a_failed_write_of_out_is_an_error_about_the_file(self):
        target = "/nonexistent-dir/result.json"
        r = self.emfit("fit", "--data=" + data("faithful.csv"), "--k=2", "--progress=none",
                       "--out=" + target)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--out: cannot write '%s'" % target, r.stderr)
        self.assertNotIn("UNAVAILABLE", r.stderr)
        r = self.emfit("posterior", "--model=" + self.fitted(), "--data=" + data("faithful.csv"),
                       "--out=" + target)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--out: cannot write '%s'" % target, r.stderr)
        r = self.emfit("score", "--model=" + self.fitted(), "--data=" + data("faithful.csv"),
                       "--out=" + self.server.dir)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--out: cannot write '%s': Is a directory" % self.server.dir, r.stderr)

    def test_a_json_result_that_cannot_be_written_whole_leaves_the_old_file(self):
        out = self.path("kept.json")
        with open(out, "w") as f:
            f.write("old\n")

        def small_files():  # writes past 512 bytes fail (EFBIG) instead of killing the process
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

        r = subprocess.run([ARGS.emfit, "fit", "--data=" + data("faithful.csv"), "--k=2",
                            "--progress=none", "--out=" + out, "--server=" + self.server.address],
                           capture_output=True, text=True, timeout=120, preexec_fn=small_files)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("--out: cannot write '%s': File too large" % out, r.stderr)
        with open(out) as f:
            self.assertEqual(f.read(), "old\n")
        self.assertEqual([f for f in os.listdir(self.server.dir) if ".partial" in f], [])

    # --- CSV ---

    def test_another_delimiter_is_hinted_and_tab_works(self):
        x = np.loadtxt(data("faithful.csv"), delimiter=",", skiprows=1)
        semi, tab = self.path("semi.csv"), self.path("tab.tsv")
        np.savetxt(semi, x, delimiter=";", header="eruptions;waiting", comments="", fmt="%.10g")
        np.savetxt(tab, x, delimiter="\t", header="eruptions\twaiting", comments="", fmt="%.10g")
        r = self.emfit("fit", "--data=" + semi, "--k=2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--delimiter=';'", r.stderr)
        self.assertIn("line 2, column 1", r.stderr)  # 1-based, as every CSV message
        r = self.emfit("fit", "--data=" + tab, "--delimiter=tab", "--k=2", "--seed=2",
                       "--progress=none", "--out=-")
        self.assertEqual(r.returncode, 0, r.stderr)
        r2 = self.emfit("fit", "--data=" + semi, "--delimiter=;", "--k=2", "--seed=2",
                        "--progress=none", "--out=-")
        self.assertEqual(json.loads(r.stdout)["summary"]["log_likelihood"],
                         json.loads(r2.stdout)["summary"]["log_likelihood"])

    def test_columns_and_drop_select_and_order_the_columns(self):
        x = np.loadtxt(data("faithful.csv"), delimiter=",", skiprows=1)
        wide = self.path("wide.csv")
        with open(wide, "w") as f:
            f.write("id,eruptions,note,waiting\n")
            for i, (a, b) in enumerate(x):
                f.write("%d,%r,%d,%r\n" % (i + 1, a, 7 * i, b))
        plain = self.emfit("fit", "--data=" + data("faithful.csv"), "--k=2", "--seed=5",
                           "--progress=none", "--out=-")
        dropped = self.emfit("fit", "--data=" + wide, "--drop=id,note", "--k=2", "--seed=5",
                             "--progress=none", "--out=-")
        chosen = self.emfit("fit", "--data=" + wide, "--columns=eruptions,4", "--k=2",
                            "--seed=5", "--progress=none", "--out=-")
        for r in (plain, dropped, chosen):
            self.assertEqual(r.returncode, 0, r.stderr)
        want = json.loads(plain.stdout)
        for r in (dropped, chosen):
            got = json.loads(r.stdout)
            self.assertEqual(got["summary"]["log_likelihood"], want["summary"]["log_likelihood"])
            self.assertEqual(got["model"]["feature_names"], ["eruptions", "waiting"])
        reordered = self.emfit("fit", "--data=" + wide, "--columns=waiting,eruptions", "--k=2",
                               "--progress=none", "--out=-")
        self.assertEqual(json.loads(reordered.stdout)["model"]["feature_names"],
                         ["waiting", "eruptions"])
        r = self.emfit("fit", "--data=" + wide, "--columns=nope", "--k=2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("column 'nope' is neither a name of the header", r.stderr)

    # --- outcomes ---

    def fitted(self):
        model = self.path("faithful-model.json")
        if not os.path.exists(model):
            r = self.emfit("fit", "--data=" + data("faithful.csv"), "--k=2", "--progress=none",
                           "--out=" + model)
            self.assertEqual(r.returncode, 0, r.stderr)
        return model

    def test_a_fit_that_stops_at_max_iter_warns_even_without_progress(self):
        out = self.path("short.json")
        r = self.emfit("fit", "--data=" + data("faithful.csv"), "--k=3", "--max_iter=2",
                       "--progress=none", "--out=" + out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("warning [max_iter]", r.stderr)
        self.assertIn("max_iter after 2 iterations", r.stdout)
        with open(out) as f:
            summary = json.load(f)["summary"]
        self.assertFalse(summary["converged"])
        self.assertIn("max_iter", [w["code"] for w in summary["warnings"]])

    def test_a_model_is_refused_on_data_whose_columns_differ_unless_told(self):
        # geyser.csv has faithful's two measurements the other way round.
        r = self.emfit("score", "--model=" + self.fitted(), "--data=" + data("geyser.csv"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        self.assertIn("[eruptions, waiting]", r.stderr)
        self.assertIn("[waiting, duration]", r.stderr)
        r = self.emfit("score", "--model=" + self.fitted(), "--data=" + data("geyser.csv"),
                       "--ignore_feature_names")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.emfit("score", "--model=" + self.fitted(), "--data=" + data("geyser.csv"),
                       "--columns=duration,waiting", "--ignore_feature_names")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_select_with_default_flags_picks_tied_three_as_mclust_does(self):
        out = self.path("select.json")
        r = self.emfit("select", "--data=" + data("faithful.csv"), "--k=1..9",
                       "--covariance=full,diag,tied,spherical", "--progress=none",
                       "--out=" + out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            selection = json.load(f)
        best = selection["candidates"][selection["best"]]
        self.assertEqual((best["k"], best["covariance_type"]), (3, "COVARIANCE_TYPE_TIED"))
        self.assertAlmostEqual(best["summary"]["bic"], 2314.30, delta=5e-3)
        self.assertIn("best by bic: 3     tied", r.stdout)

    def test_tied_three_on_faithful_reaches_its_maximum_for_every_seed_with_defaults(self):
        for seed in range(10):
            with self.subTest(seed=seed):
                r = self.emfit("fit", "--data=" + data("faithful.csv"), "--k=3",
                               "--covariance=tied", "--seed=%d" % seed, "--progress=none",
                               "--out=-")
                self.assertEqual(r.returncode, 0, r.stderr)
                ll = json.loads(r.stdout)["summary"]["log_likelihood"]
                self.assertEqual("%.3f" % ll, "-1126.316")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--emfitd", required=True)
    parser.add_argument("--emfit", required=True)
    parser.add_argument("--repo", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])
