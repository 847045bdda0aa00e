"""The compose topology without containers: three real emfitd processes behind the real nginx
(Debian's), configured by the very deploy/nginx/emfit.conf rendered by deploy/nginx/render
(templated only for the listen address, the upstreams and grpc_read_timeout), on loopback, with
nginx unprivileged (as nobody when the test runs as root) in a temporary prefix.

One ctest per class (tests/CMakeLists.txt):
  load_balancer_spreads_calls_over_replicas                       SpreadsCalls
  load_balancer_keeps_queued_fits_alive_with_heartbeats           Heartbeats
  load_balancer_drains_replicas_and_the_cli_retries_killed_fits   DrainAndRetry

Run with Debian's /usr/bin/python3 and PYTHONPATH=<build>/client/python."""
import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

from emfit_e2e import Emfitd

import emfit
from emfit.v1 import emfit_pb2 as pb

ARGS = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts_connections(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(predicate, what, timeout=60):
    """Polls predicate() until it is true; fails the test with `what` after timeout seconds."""
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Nginx:
    """Debian's nginx with deploy/nginx/emfit.conf, rendered by deploy/nginx/render."""

    def __init__(self, upstream_ports, read_timeout="300s"):
        self.dir = tempfile.mkdtemp(prefix="emfit-nginx-")
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        env = dict(os.environ, EMFIT_LISTEN=self.address, EMFIT_GRPC_READ_TIMEOUT=read_timeout,
                   EMFIT_UPSTREAMS=" ".join("server 127.0.0.1:%d;" % p for p in upstream_ports))
        config = os.path.join(self.dir, "emfit.conf")
        with open(config, "w") as f:
            subprocess.run([os.path.join(ARGS.repo, "deploy/nginx/render"),
                            os.path.join(ARGS.repo, "deploy/nginx/emfit.conf")],
                           stdout=f, env=env, check=True)
        self.error_log = os.path.join(self.dir, "error.log")
        self.access_log = os.path.join(self.dir, "access.log")
        command = ["nginx", "-p", self.dir, "-c", config, "-e", self.error_log, "-g",
                   "daemon off; pid %s/nginx.pid; error_log %s warn;" % (self.dir,
                                                                          self.error_log)]
        if os.geteuid() == 0:  # never run the balancer as root
            nobody = pwd.getpwnam("nobody")
            for root, dirs, files in os.walk(self.dir):
                for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                    os.chown(name, nobody.pw_uid, nobody.pw_gid)
            command = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                       "--clear-groups", *command]
        self.out = open(self.access_log, "w+")
        if os.geteuid() == 0:
            os.chown(self.access_log, pwd.getpwnam("nobody").pw_uid, -1)
        self.proc = subprocess.Popen(command, stdout=self.out, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: accepts_connections(self.port) or self.proc.poll() is not None,
                       "nginx to listen", 30)
            if self.proc.poll() is not None:
                raise RuntimeError("nginx did not start:\n" + self.logs())
        except Exception:
            self.stop()
            raise

    def logs(self):
        text = ""
        for path in (self.error_log, self.access_log):
            if os.path.exists(path):
                with open(path) as f:
                    text += "== %s\n%s" % (path, f.read())
        return text

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def fits_served(server):
    """Fit calls the replica's log says it ended successfully."""
    return [c for c in server.calls() if c["job_id"].startswith("fit-") and c["outcome"] == "OK"]


def upstreams(nginx, method="Fit"):
    """The port of the replica that served each call of the method, from nginx's access log
    (the last of the upstreams it tried)."""
    with open(nginx.access_log) as f:
        return [int(p) for p in re.findall(
            r"/emfit\.v1\.EmFitService/%s HTTP/2\.0\" 200 [0-9.]+ s "
            r"upstream=(?:[0-9.:]+, )*127\.0\.0\.1:(\d+) " % method, f.read())]


def faithful():
    return np.loadtxt(os.path.join(ARGS.repo, "data/faithful.csv"), delimiter=",", skiprows=1)


def long_fit_iterations():
    """Iterations of a long fit: tens of seconds, in a sanitizer build too (ten times slower)."""
    return 300 if ARGS.sanitized else 3000


def long_fit_csv(directory, rows=20000):
    """A CSV on which a fit with tol=0 runs one short iteration after another (many events)."""
    rng = np.random.RandomState(3)
    x = rng.normal(size=(rows, 4)) + rng.randint(0, 4, size=(rows, 1)) * 3
    path = os.path.join(directory, "long.csv")
    np.savetxt(path, x, delimiter=",", header="a,b,c,d", comments="")
    return path, x


class Topology(unittest.TestCase):
    """Three replicas behind nginx, started for each test."""
    REPLICA_FLAGS = ("--workers=1", "--queue=8")
    READ_TIMEOUT = "300s"

    def setUp(self):
        self.replicas = []
        self.nginx = None
        try:
            for _ in range(3):
                self.replicas.append(Emfitd(ARGS.emfitd, *self.REPLICA_FLAGS))
            self.nginx = Nginx([r.port for r in self.replicas], self.READ_TIMEOUT)
        except Exception:
            self.tearDown()
            raise

    def tearDown(self):
        if self.nginx is not None:
            self.nginx.stop()
        for r in self.replicas:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()
        if self.nginx is not None:  # shown by ctest --output-on-failure
            sys.stderr.write(self.nginx.logs())
            self.nginx.remove()

    def gmm(self, *args, **kwargs):
        return emfit.GaussianMixture(*args, server=self.nginx.address, **kwargs)

    def run_cli(self, *flags):
        return subprocess.run([ARGS.emfit, *flags, "--server=" + self.nginx.address,
                               "--progress=none"], capture_output=True, text=True, timeout=300)


class SpreadsCalls(Topology):
    def test_calls_on_one_connection_are_spread_over_the_replicas(self):
        x = faithful()
        reference = None
        # One client, one HTTP/2 connection to the balancer: nginx balances each call.
        with emfit.Client(self.nginx.address) as client:
            for i in range(9):
                header = pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2)),
                                      options=pb.FitOptions(seed=1, tol=1e-8))
                result = client.fit(header, x)
                if reference is None:
                    reference = result.model
                self.assertEqual(result.model, reference)  # every replica fits alike
        served = [len(fits_served(r)) for r in self.replicas]
        print("fits per replica:", served, file=sys.stderr)
        self.assertEqual(sum(served), 9, served)
        self.assertTrue(all(n >= 2 for n in served), "calls per replica: %s" % served)
        # The balancer's log agrees.
        ports = upstreams(self.nginx)
        self.assertEqual([ports.count(r.port) for r in self.replicas], served)

    def test_the_python_client_spreads_calls_itself_over_several_addresses(self):
        # What a Kubernetes headless Service gives a client: several addresses for one name.
        # The package's round_robin policy spreads the calls without the balancer.
        target = "ipv4:" + ",".join("127.0.0.1:%d" % r.port for r in self.replicas)
        x = faithful()
        with emfit.Client(target) as client:
            for _ in range(9):
                header = pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2)))
                client.fit(header, x)
        served = [len(fits_served(r)) for r in self.replicas]
        self.assertEqual(sum(served), 9)
        self.assertTrue(all(n >= 2 for n in served), "calls per replica: %s" % served)
        with open(self.nginx.access_log) as f:
            self.assertNotIn("EmFitService", f.read())

    def test_every_rpc_passes_through_the_balancer(self):
        x = faithful()
        gm = self.gmm(2, random_state=0, tol=1e-8).fit(x)
        proba = gm.predict_proba(x)  # Posterior: a response stream
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
        self.assertAlmostEqual(gm.bic(x), 2322.19, delta=0.01)  # Score: one response
        selection = emfit.select_model(x, [1, 2, 3], ["full"], server=self.nginx.address,
                                       random_state=0)
        self.assertEqual(selection.best_estimator.n_components, 2)
        out = os.path.join(self.nginx.dir, "cli.json")
        r = self.run_cli("fit", "--data=" + os.path.join(ARGS.repo, "data/faithful.csv"),
                         "--k=2", "--tol=1e-8", "--out=" + out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            cli = json.load(f)
        np.testing.assert_allclose(gm.means_.ravel(), cli["model"]["gmm"]["means"]["values"],
                                   rtol=1e-14)
        with open(self.nginx.access_log) as f:
            log = f.read()
        for method in ("Fit", "Posterior", "Score", "SelectModel"):
            self.assertIn("/emfit.v1.EmFitService/%s HTTP/2.0\" 200" % method, log)

    def test_a_killed_replica_gets_no_new_calls_and_loses_none(self):
        killed = self.replicas[0]
        killed.proc.kill()
        killed.proc.wait()
        before = len(fits_served(killed))
        x = faithful()
        with emfit.Client(self.nginx.address) as client:
            for _ in range(6):
                header = pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2)))
                self.assertEqual(len(client.fit(header, x).model.gmm.weights), 2)
        self.assertEqual(len(fits_served(killed)), before)
        self.assertEqual(sum(len(fits_served(r)) for r in self.replicas[1:]), 6)


class Heartbeats(unittest.TestCase):
    """A fit that waits in a replica's queue longer than nginx's grpc_read_timeout (1s here)
    survives on the replica's heartbeat events (every 0.2s); without heartbeats the balancer
    cuts it."""
    READ_TIMEOUT_SECONDS = 1.0
    HEARTBEAT_SECONDS = 0.2

    def wait_behind_a_running_fit(self, heartbeat_flag):
        """One replica with one worker behind nginx: a long fit runs, a second fit waits
        behind it until it has seen 2x the read timeout in heartbeats (or fails); then the
        long fit is cancelled. Returns (heartbeats seen, the waiting fit's result or error)."""
        replica = Emfitd(ARGS.emfitd, "--workers=1", "--queue=4", heartbeat_flag)
        nginx = None
        try:
            nginx = Nginx([replica.port], "%gs" % self.READ_TIMEOUT_SECONDS)
            path, x = long_fit_csv(replica.dir, rows=5000)
            running, stop_long = threading.Event(), threading.Event()
            outcome = {}

            class Stop(Exception):
                pass

            def on_long_event(event):
                running.set()
                if stop_long.is_set():
                    raise Stop()  # cancels the long fit on the server

            def long_fit():
                header = pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=4)),
                                      options=pb.FitOptions(tol=0, max_iter=100000))
                try:
                    with emfit.Client(nginx.address, timeout=120, retries=0) as client:
                        client.fit(header, x, on_event=on_long_event)
                except Stop:
                    pass
                except emfit.EmfitError as e:
                    outcome["long"] = e

            thread = threading.Thread(target=long_fit)
            thread.start()
            try:
                self.assertTrue(running.wait(60), "the long fit did not start")
                beats = []
                needed = int(2 * self.READ_TIMEOUT_SECONDS / self.HEARTBEAT_SECONDS)

                def on_wait_event(event):
                    if event.WhichOneof("kind") == "heartbeat":
                        beats.append(event.heartbeat.queue_position)
                        if len(beats) >= needed:
                            stop_long.set()

                header = pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2)))
                try:
                    # No re-send: what the balancer does to the one call is the subject.
                    with emfit.Client(nginx.address, timeout=60, retries=0) as client:
                        result = client.fit(header, faithful(), on_event=on_wait_event)
                except emfit.EmfitError as e:
                    result = e
            finally:
                stop_long.set()
                thread.join()
            self.assertNotIn("long", outcome)
            return beats, result
        finally:
            if nginx is not None:
                nginx.stop()
                nginx.remove()
            self.assertEqual(replica.stop(), 0)

    def test_a_queued_fit_outlives_the_read_timeout_on_heartbeats(self):
        beats, result = self.wait_behind_a_running_fit("--heartbeat=%gs" % self.HEARTBEAT_SECONDS)
        self.assertIsInstance(result, pb.FitResult, result)
        # It waited for at least twice the read timeout: 10 heartbeats 0.2s apart.
        self.assertGreaterEqual(len(beats), 10)
        self.assertEqual(len(result.model.gmm.weights), 2)

    def test_without_heartbeats_the_balancer_cuts_the_queued_fit(self):
        beats, result = self.wait_behind_a_running_fit("--heartbeat=inf")
        self.assertEqual(beats, [])
        self.assertIsInstance(result, emfit.EmfitError)
        print("without heartbeats the waiting fit ended with", repr(result), file=sys.stderr)
        # nginx's timeout, not the client's own 60 s deadline.
        self.assertNotEqual(result.code.name, "DEADLINE_EXCEEDED", result)


class LongCliFit:
    """`emfit fit` through the balancer on long.csv (tol=0: a few seconds), its stderr read
    as it comes so that the test knows when the fit runs."""

    def __init__(self, nginx, path, index):
        self.out = os.path.join(nginx.dir, "long%d.json" % index)
        self.proc = subprocess.Popen(
            [ARGS.emfit, "fit", "--server=" + nginx.address, "--data=" + path, "--k=4",
             "--tol=0", "--max_iter=%d" % long_fit_iterations(), "--seed=%d" % index,
             "--progress=log",
             "--out=" + self.out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr = []
        self.running = threading.Event()
        self.reader = threading.Thread(target=self.read)
        self.reader.start()

    def read(self):
        for line in self.proc.stderr:
            self.stderr.append(line)
            if re.search(r"iter\s+1\b", line):
                self.running.set()

    def finish(self, test):
        test.assertEqual(self.proc.wait(timeout=300), 0, "".join(self.stderr[-20:]))
        self.reader.join()
        with open(self.out) as f:
            test.assertEqual(int(json.load(f)["summary"]["iterations"]), long_fit_iterations())


class DrainAndRetry(Topology):
    """emfitd's drain (--drain_delay, health per service), and the CLI's re-send of a fit whose
    replica died after accepting it (FitClient: a gRPC retry policy cannot repeat a call whose
    first event has arrived)."""
    REPLICA_FLAGS = ("--workers=1", "--queue=8", "--drain_delay=1s", "--shutdown_grace=120s")

    def start_long_cli_fits(self):
        """Three long fits through the balancer; least_conn gives each replica one (checked in
        nginx's access log at the end). Returns once all three run."""
        path, _ = long_fit_csv(self.nginx.dir)
        fits = [LongCliFit(self.nginx, path, i) for i in range(3)]
        wait_until(lambda: all(f.running.is_set() for f in fits), "three running fits")
        return fits

    def test_a_draining_replica_finishes_its_fit_while_new_calls_go_elsewhere(self):
        import grpc
        from health_check import health_pb2, health_pb2_grpc
        fits = self.start_long_cli_fits()
        draining = self.replicas[0]
        draining.proc.send_signal(signal.SIGTERM)
        # Once the signal is handled (asynchronously): health NOT_SERVING for the service,
        # while the replica still accepts connections (--drain_delay).
        with grpc.insecure_channel(draining.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def not_serving():
                return health.Check(health_pb2.HealthCheckRequest(
                    service="emfit.v1.EmFitService"), timeout=10).status == \
                    health_pb2.HealthCheckResponse.NOT_SERVING
            wait_until(not_serving, "the draining replica's health to be NOT_SERVING")
        # After --drain_delay the replica refuses connections; calls then go elsewhere.
        wait_until(lambda: not accepts_connections(draining.port), "the drain to close")
        x = faithful()
        with emfit.Client(self.nginx.address) as client:
            for _ in range(6):
                header = pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2)))
                self.assertEqual(len(client.fit(header, x).model.gmm.weights), 2)
        for f in fits:
            f.finish(self)
        # The draining replica served its long fit to the end, after the signal, and nothing
        # else; it exited 0. The other two served their long fits and the six new ones.
        self.assertEqual(draining.proc.wait(timeout=120), 0)
        log = draining.read_log()
        after_signal = [c for c in draining.calls() if c["offset"] > log.index("received signal")]
        self.assertEqual([c["outcome"] for c in after_signal], ["OK"], log)
        self.assertEqual(sum(len(fits_served(r)) for r in self.replicas[1:]), 2 + 6)
        # nginx sent the long fits to all three replicas.
        self.assertEqual(set(upstreams(self.nginx)), {r.port for r in self.replicas})

    def test_a_replica_killed_mid_fit_loses_no_fit_the_cli_retries(self):
        fits = self.start_long_cli_fits()
        killed = self.replicas[0]
        killed.proc.kill()
        killed.proc.wait()
        for f in fits:
            f.finish(self)  # every CLI run ends with its result, the killed one's retried
        self.assertEqual(sum(len(fits_served(r)) for r in self.replicas[1:]), 3)


def generate_health_stubs():
    out = tempfile.mkdtemp(prefix="emfit-health-")
    # grpc.health.v1's proto: in proto/health_check/ once issue 12 has moved it there.
    root = next(r for r in (os.path.join(ARGS.repo, "proto"),
                            os.path.join(ARGS.repo, "tests/e2e/proto"))
                if os.path.exists(os.path.join(r, "health_check/health.proto")))
    subprocess.run(["protoc", "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                    "-I" + root, "--python_out=" + out, "--grpc_python_out=" + out,
                    os.path.join(root, "health_check/health.proto")], check=True)
    sys.path.append(out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--emfitd", required=True)
    parser.add_argument("--emfit", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--sanitized", action="store_true",
                        help="the binaries are a sanitizer build: long fits are shorter")
    ARGS, rest = parser.parse_known_args()
    if shutil.which("nginx") is None:
        sys.exit("nginx is not installed (scripts/deps installs it)")
    stubs = generate_health_stubs()
    import atexit
    atexit.register(shutil.rmtree, stubs, True)
    import warnings
    warnings.simplefilter("ignore", ResourceWarning)  # the replicas' log files stay open
    unittest.main(argv=[sys.argv[0], "-v", *rest])
