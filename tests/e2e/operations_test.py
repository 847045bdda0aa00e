"""Operations end to end, with real emfitd processes on loopback: JSON logs, metrics scraped
over HTTP during a fit, the drain on SIGTERM (health watcher, running fit, calls during and
after the drain delay, exit code), TLS + mTLS + tokens with the CLI, token reload on SIGHUP, and
`emfit health` for probes. No fixed sleeps: every wait is for an observable event, bounded."""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc
import numpy as np

from emfit_e2e import (Emfitd, generate_stubs, json_log_records, port_open, wait_for,
                       wait_ready)

ARGS = None
SERVICE = "emfit.v1.EmFitService"


def scrape(port):
    """The samples of http://127.0.0.1:port/metrics: {'name{labels}': value}."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def listening(server):
    """The `emfitd listening` record of a JSON-logging server."""
    return wait_for(lambda: next((r for r in json_log_records(server)
                                  if r["msg"] == "emfitd listening"), None),
                    what="emfitd listening")


def logged(server, msg):
    return any(r["msg"] == msg for r in json_log_records(server))


def sample_data(rows, cols, seed):
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=4, size=(3, cols))
    return centres[rng.randint(3, size=rows)] + rng.normal(size=(rows, cols))


class Fit:
    """A Fit call on a thread through the Python stubs; records its events as they come."""

    def __init__(self, channel, x, k=3, max_iter=100000, metadata=()):
        from emfit.v1 import emfit_pb2 as pb, emfit_pb2_grpc as rpc
        header = pb.FitHeader()
        header.spec.gmm.k = k
        header.spec.gmm.covariance_type = pb.COVARIANCE_TYPE_FULL
        header.shape.rows, header.shape.cols = x.shape
        header.options.tol = 0
        header.options.max_iter = max_iter
        flat = x.ravel()
        requests = [pb.FitRequest(header=header)] + [
            pb.FitRequest(chunk=pb.DataChunk(values=flat[i:i + 32768]))
            for i in range(0, flat.size, 32768)]
        self.call = rpc.EmFitServiceStub(channel).Fit(iter(requests), metadata=metadata)
        self.iterations = 0
        self.result = None
        self.result_time = None
        self.error = None
        self.iterating = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for event in self.call:
                if event.HasField("iteration"):
                    self.iterations += 1
                    self.iterating.set()
                elif event.HasField("result"):
                    self.result = event.result
                    self.result_time = time.monotonic()
        except grpc.RpcError as e:
            self.error = e

    def join(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the fit did not end"


class Operations(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        generate_stubs(ARGS.repo, os.path.join(ARGS.repo, "tests/e2e/proto"))
        cls.certs = tempfile.mkdtemp(prefix="emfit-certs-")
        subprocess.run(["sh", os.path.join(ARGS.repo, "tests/testing/make_test_certs.sh"),
                        cls.certs], check=True)
        cls.data = os.path.join(ARGS.repo, "data/faithful.csv")

    def cert(self, name):
        return os.path.join(self.certs, name)

    def emfit(self, *flags):
        return subprocess.run([ARGS.emfit, *flags], capture_output=True, text=True, timeout=120)

    def stop(self, server):
        code = server.stop()
        self.assertEqual(code, 0, "emfitd exited with %d:\n%s" % (code, server.read_log()))

    def write(self, path, text):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)  # readers see the old or the new file, never half
        return path

    def test_json_logs_are_one_object_per_line_with_a_record_per_call(self):
        tokens = self.write(os.path.join(self.certs, "log-tokens"), "alice:s3cret-json\n")
        server = Emfitd(ARGS.emfitd, "--log_format=json", "--token_file=" + tokens)
        try:
            common = ["--server=" + server.address, "--token_file=" + tokens, "--data=" + self.data]
            model = os.path.join(server.dir, "fit.json")
            for command in (["fit", "--k=2", "--progress=none", "--out=" + model],
                            ["posterior", "--model=" + model,
                             "--out=" + os.path.join(server.dir, "post.csv")],
                            ["score", "--model=" + model],
                            ["select", "--k=1..2", "--progress=none"]):
                r = self.emfit(command[0], *common, *command[1:])
                self.assertEqual(r.returncode, 0, r.stderr)
            r = self.emfit("fit", *common, "--k=500")
            self.assertEqual(r.returncode, 1)
            self.assertIn("INVALID_ARGUMENT", r.stderr)
        finally:
            self.stop(server)
        records = json_log_records(server)  # fails if any line is not a JSON object
        self.assertTrue(all(isinstance(r, dict) and {"time", "level", "msg"} <= r.keys()
                            for r in records))
        calls = [r for r in records if r["msg"] == "call"]
        self.assertEqual([c["method"] for c in calls],
                         ["Fit", "Posterior", "Score", "SelectModel", "Fit"])
        for call, prefix in zip(calls, ["fit", "posterior", "score", "select", "fit"]):
            self.assertRegex(call["job_id"], "^%s-[0-9]{6}$" % prefix)
            self.assertTrue(call["peer"].startswith("ipv4:127.0.0.1:"), call)
            self.assertEqual(call["identity"], "alice")
            self.assertGreaterEqual(call["duration_s"], 0)
        for call in calls[:4]:
            self.assertEqual((call["rows"], call["cols"]), (272, 2))
            self.assertGreater(call["received_bytes"], 272 * 2 * 8)
            self.assertEqual(call["outcome"], "OK")
            self.assertEqual(call["rejected"], "")
            self.assertGreater(call["run_s"], 0)
            self.assertGreaterEqual(call["queue_wait_s"], 0)
        self.assertGreater(calls[0]["iterations"], 0)
        self.assertEqual(calls[4]["outcome"], "INVALID_ARGUMENT")
        self.assertEqual(calls[4]["rejected"], "invalid_argument")
        self.assertIn("spec.gmm.k", calls[4]["message"])
        self.assertNotIn("s3cret-json", server.read_log())  # the identity, never the token

    def test_metrics_are_scraped_over_http_and_move_during_a_fit(self):
        server = Emfitd(ARGS.emfitd, "--log_format=json", "--metrics_port=-1", "--workers=1")
        try:
            port = listening(server)["metrics_port"]
            self.assertGreater(port, 0)
            x = sample_data(20000, 4, seed=7)
            fit = Fit(wait_ready(server.address), x)
            self.assertTrue(fit.iterating.wait(60))
            first = scrape(port)
            self.assertEqual(first["emfit_workers_busy"], 1)
            self.assertEqual(first["emfit_active_calls"], 1)
            self.assertEqual(first["emfit_serving"], 1)
            self.assertEqual(first["emfit_inflight_bytes"], x.size * 8)
            self.assertGreaterEqual(first['emfit_received_bytes_total{method="Fit"}'], x.size * 8)
            self.assertEqual(first['emfit_queue_wait_seconds_count{method="Fit"}'], 1)
            seen = fit.iterations
            wait_for(lambda: fit.iterations >= seen + 3, what="more iterations")
            second = scrape(port)
            self.assertGreater(second['emfit_em_iterations_total{method="Fit"}'],
                               first['emfit_em_iterations_total{method="Fit"}'])
            fit.call.cancel()
            fit.join()
            # The call ends at once; its job stops within a row block, then releases its data.
            def settled():
                s = scrape(port)
                return (s.get('emfit_calls_total{code="CANCELLED",method="Fit"}') == 1 and
                        s['emfit_job_duration_seconds_count{method="Fit"}'] == 1 and
                        s["emfit_active_calls"] == 0 and s["emfit_inflight_bytes"] == 0 and
                        s["emfit_workers_busy"] == 0)
            wait_for(settled, what="the cancelled call and its job in the metrics")
        finally:
            self.stop(server)

    def test_sigterm_drains_health_first_then_the_listener_then_running_fits(self):
        from health_check import health_pb2, health_pb2_grpc
        from emfit.v1 import emfit_pb2 as pb
        server = Emfitd(ARGS.emfitd, "--log_format=json", "--workers=2", "--drain_delay=3s",
                        "--shutdown_grace=300s")
        try:
            channel = wait_ready(server.address)
            x = sample_data(20000, 4, seed=11)
            # Size the running fit from this machine's speed (measured by the server) so that it
            # outlasts the drain delay by far: the assertions below depend on order, not time.
            probe = Fit(channel, x, max_iter=200)
            probe.join()
            self.assertIsNotNone(probe.result, probe.error)
            per_iteration = probe.result.summary.elapsed_seconds / 200
            max_iter = int((2 * 3 + 6) / max(per_iteration, 1e-4))

            statuses = []  # (status, port open when it arrived)
            def watch():
                health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
                try:
                    for r in health.Watch(health_pb2.HealthCheckRequest(service=SERVICE)):
                        statuses.append((r.status, port_open(server.port)))
                except grpc.RpcError:
                    pass  # the server ends the stream when it stops
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            wait_for(lambda: statuses, what="the first health status")
            self.assertEqual(statuses[0][0], health_pb2.HealthCheckResponse.SERVING)

            running = Fit(channel, x, max_iter=max_iter)
            self.assertTrue(running.iterating.wait(60))
            server.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: any(s == health_pb2.HealthCheckResponse.NOT_SERVING
                                 for s, _ in statuses), what="NOT_SERVING")
            # The watcher saw NOT_SERVING while the listener was still open.
            self.assertTrue(next(open_ for s, open_ in statuses
                                 if s == health_pb2.HealthCheckResponse.NOT_SERVING))
            # During the drain delay a new call is still served.
            during = Fit(channel, sample_data(300, 2, seed=1), k=2, max_iter=5)
            during.join()
            self.assertIsNotNone(during.result, during.error)
            self.assertFalse(logged(server, "stopping: new calls are refused"),
                             "the drain delay ended before the call; nothing was tested")
            # Then the listener closes and new calls are refused.
            wait_for(lambda: not port_open(server.port), what="the listener to close")
            closed = time.monotonic()
            self.assertTrue(logged(server, "stopping: new calls are refused"))
            after = Fit(grpc.insecure_channel(server.address), sample_data(300, 2, seed=2), k=2)
            after.join()
            self.assertEqual(after.error.code(), grpc.StatusCode.UNAVAILABLE)
            # The running fit finishes within the grace period, after the listener closed.
            running.join(timeout=300)
            self.assertIsNotNone(running.result, running.error)
            self.assertEqual(running.result.summary.iterations, max_iter)
            self.assertGreater(running.result_time, closed)
            self.assertEqual(server.proc.wait(timeout=60), 0)
        finally:
            self.stop(server)

    def test_a_second_sigterm_cancels_running_fits_at_once_saying_why(self):
        server = Emfitd(ARGS.emfitd, "--log_format=json", "--drain_delay=600s",
                        "--shutdown_grace=600s")
        try:
            running = Fit(wait_ready(server.address), sample_data(20000, 4, seed=3))
            self.assertTrue(running.iterating.wait(60))
            server.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: logged(server, "draining: health is NOT_SERVING, calls are still "
                                            "accepted"), what="the drain to start")
            server.proc.send_signal(signal.SIGTERM)
            running.join()
            self.assertEqual(running.error.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("the server is shutting down", running.error.details())
            self.assertEqual(server.proc.wait(timeout=60), 0)
        finally:
            self.stop(server)

    def test_tls_mtls_and_tokens_work_end_to_end_with_the_cli(self):
        from reflection_check import reflection_pb2, reflection_pb2_grpc
        tokens = self.write(os.path.join(self.certs, "tls-tokens"), "# team\nalice:first-token\n")
        server = Emfitd(ARGS.emfitd, "--log_format=json",
                        "--tls_cert=" + self.cert("server.pem"),
                        "--tls_key=" + self.cert("server.key"),
                        "--tls_client_ca=" + self.cert("ca.pem"),
                        "--token_file=" + tokens, "--token_poll=1h")  # SIGHUP reloads
        try:
            tls = ["--server=" + server.address, "--tls_ca=" + self.cert("ca.pem"),
                   "--tls_cert=" + self.cert("client.pem"), "--tls_key=" + self.cert("client.key")]
            client_token = self.write(os.path.join(self.certs, "client-token"), "first-token\n")
            r = self.emfit("fit", *tls, "--token_file=" + client_token, "--data=" + self.data,
                           "--k=2", "--progress=none")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = self.emfit("fit", *tls, "--data=" + self.data, "--k=2", "--progress=none")
            self.assertEqual(r.returncode, 1)
            self.assertIn("UNAUTHENTICATED", r.stderr)
            r = self.emfit("fit", "--server=" + server.address, "--tls_ca=" + self.cert("ca.pem"),
                           "--tls_cert=" + self.cert("other-client.pem"),
                           "--tls_key=" + self.cert("other-client.key"),
                           "--token_file=" + client_token, "--retries=0", "--data=" + self.data)
            self.assertEqual(r.returncode, 1)
            self.assertIn("UNAVAILABLE", r.stderr)
            r = self.emfit("fit", "--server=" + server.address, "--retries=0",
                           "--data=" + self.data)  # plaintext against TLS
            self.assertEqual(r.returncode, 1)
            self.assertIn("UNAVAILABLE", r.stderr)
            # Probes need no token.
            r = self.emfit("health", *tls)
            self.assertEqual((r.returncode, r.stdout), (0, "SERVING\n"), r.stderr)

            # Reflection requires the token too.
            pem = {}
            for name in ("ca.pem", "client.key", "client.pem"):
                with open(self.cert(name), "rb") as f:
                    pem[name] = f.read()
            credentials = grpc.ssl_channel_credentials(pem["ca.pem"], pem["client.key"],
                                                       pem["client.pem"])
            channel = grpc.secure_channel("localhost:%d" % server.port, credentials)
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            with self.assertRaises(grpc.RpcError) as refused:
                list(reflection.ServerReflectionInfo(iter([request])))
            self.assertEqual(refused.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            answers = list(reflection.ServerReflectionInfo(
                iter([request]), metadata=[("authorization", "Bearer first-token")]))
            self.assertIn(SERVICE, {s.name for s in answers[0].list_services_response.service})

            # A new token file, reloaded on SIGHUP.
            self.write(tokens, "alice:second-token\n")
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: logged(server, "tokens reloaded"), what="the reload")
            r = self.emfit("fit", *tls, "--token_file=" + client_token, "--data=" + self.data,
                           "--k=2", "--progress=none")
            self.assertEqual(r.returncode, 1)
            self.assertIn("UNAUTHENTICATED", r.stderr)
            self.write(client_token, "second-token\n")
            r = self.emfit("fit", *tls, "--token_file=" + client_token, "--data=" + self.data,
                           "--k=2", "--progress=none")
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            self.stop(server)
        calls = [r for r in json_log_records(server) if r["msg"] == "call"]
        self.assertEqual({c["identity"] for c in calls}, {"alice"})
        self.assertNotIn("first-token", server.read_log())

    def test_emfit_health_exits_zero_only_when_serving(self):
        server = Emfitd(ARGS.emfitd, "--log_format=json", "--drain_delay=600s")
        try:
            at = "--server=" + server.address
            r = self.emfit("health", at)
            self.assertEqual((r.returncode, r.stdout), (0, "SERVING\n"), r.stderr)
            r = self.emfit("health", at, "--service=")
            self.assertEqual((r.returncode, r.stdout), (0, "SERVING\n"), r.stderr)
            r = self.emfit("health", at, "--service=no.such.Service")
            self.assertEqual((r.returncode, r.stdout), (1, "SERVICE_UNKNOWN\n"))
            server.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: logged(server, "draining: health is NOT_SERVING, calls are still "
                                            "accepted"), what="the drain to start")
            r = self.emfit("health", at)
            self.assertEqual((r.returncode, r.stdout), (1, "NOT_SERVING\n"))
            server.proc.send_signal(signal.SIGTERM)  # a second one: stop now
            self.assertEqual(server.proc.wait(timeout=60), 0)
            r = self.emfit("health", at, "--timeout=5")
            self.assertEqual(r.returncode, 1)
            self.assertIn("UNAVAILABLE", r.stderr)
        finally:
            self.stop(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--emfitd", required=True)
    parser.add_argument("--emfit", required=True)
    parser.add_argument("--repo", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])
