"""Load and faults against a real emfitd (issue 12, "Tests that attack it").

LoadAndFaults: 200 valid fits from 32 concurrent clients, mixed in a seeded random order with
oversized, malformed, over-the-limit, idle, silent, slow, stalled, abandoned and disconnected
calls and connections that do not speak HTTP/2. Every valid fit must return the model of a
reference fit of the same data and seed made before the load (byte for byte), a slow reader
the reference's posteriors, every bad call its status and message; the server stays up, its log
has no INTERNAL or UNKNOWN outcome, and its memory (VmRSS) returns to within 10% of its baseline
once the load is over.

SixIdleStreams: the attack issue 12 opened with, against the real process: six Fit streams that
send only a header declaring a sixth of an 8 GiB budget each; a normal fit must still be served
within a second (the call's deadline).

Run with Debian's /usr/bin/python3 and PYTHONPATH=<build>/client/python. Prints the figures
docs/reliability.md quotes."""
import argparse
import collections
import concurrent.futures
import os
import random
import re
import socket
import sys
import threading
import time
import unittest
import urllib.request

import grpc
import numpy as np

from emfit_e2e import Emfitd, wait_for

from emfit.v1 import emfit_pb2 as pb
from emfit.v1 import emfit_pb2_grpc as pb_grpc

ARGS = None
CLIENTS = 32
VALID_FITS = 200
SLOW_UPLOADS = 8  # of the valid fits
MAX_MESSAGE_BYTES = 1 << 20
# Generous enough that a valid upload is never cut on a loaded 2-core CI machine.
UPLOAD_TIMEOUT_S = 3
MAX_STALL_S = 2
SERVER_FLAGS = ("--workers=2", "--queue=256", "--compute_threads=1",
                "--max_message_bytes=%d" % MAX_MESSAGE_BYTES, "--max_rows=1000000",
                "--max_calls_per_peer=256", "--upload_timeout=%ds" % UPLOAD_TIMEOUT_S,
                "--min_upload_rate=100000", "--max_stall=%ds" % MAX_STALL_S,
                "--log_level=debug")  # says when it has given freed memory back
CHUNK_VALUES = 8192
POSTERIOR_BLOCK_ROWS = 32768  # the server's block (a response) for a mixture's posteriors


def datasets():
    """Four seeded datasets and their specs (full, diag, tied with missing values, spherical),
    overlapping enough that EM takes tens of iterations."""
    rng = np.random.RandomState(12)
    out = []
    for rows, cols, k, cov, missing in [(2000, 3, 3, pb.COVARIANCE_TYPE_FULL, 0.0),
                                        (5000, 2, 2, pb.COVARIANCE_TYPE_DIAG, 0.0),
                                        (1500, 4, 2, pb.COVARIANCE_TYPE_TIED, 0.05),
                                        (3000, 5, 4, pb.COVARIANCE_TYPE_SPHERICAL, 0.0)]:
        x = rng.normal(size=(rows, cols)) + rng.randint(0, k, size=(rows, 1)) * 2.0
        if missing:
            x[rng.rand(rows, cols) < missing] = np.nan
        out.append((x, k, cov))
    return out


def fit_header(x, k, cov, seed, **options):
    header = pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=k, covariance_type=cov)),
                          options=pb.FitOptions(seed=seed, n_init=2, **options))
    header.shape.rows, header.shape.cols = x.shape
    return header


def chunks(values, size=CHUNK_VALUES):
    flat = np.ascontiguousarray(values, dtype=np.float64).ravel()
    for begin in range(0, flat.size, size):
        yield pb.DataChunk(values=flat[begin:begin + size])


def requests(request_type, header, x, chunk_values=CHUNK_VALUES, pace=None, stop_after=None,
             reached=None, hold=None):
    """The header, then x's chunks. `pace`: an Event waited on for 5 ms before each chunk (a
    slow client's pacing). `stop_after`: after that many chunks, set `reached` and wait on
    `hold`, then end without half-closing the stream's data (the call is cut or cancelled)."""
    yield request_type(header=header)
    for i, chunk in enumerate(chunks(x, chunk_values)):
        if stop_after is not None and i >= stop_after:
            break
        if pace is not None:
            pace.wait(0.005)
        yield request_type(chunk=chunk)
    if stop_after is not None:
        if reached is not None:
            reached.set()
        hold.wait()


def run_stream(call):
    """(code, details, responses) of a response stream, read to its end."""
    responses = []
    try:
        for r in call:
            responses.append(r)
        return grpc.StatusCode.OK, "", responses
    except grpc.RpcError as e:
        return e.code(), e.details(), responses


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/%d/status" % pid)


def posteriors(responses):
    """A Posterior call's responsibilities, row log-likelihoods and labels, concatenated."""
    r = np.concatenate([np.reshape(m.responsibilities.values,
                                   (m.responsibilities.rows, m.responsibilities.cols))
                        for m in responses])
    return (r, np.concatenate([m.log_likelihood for m in responses]),
            np.concatenate([m.labels for m in responses]))


def channel_options():
    # No BDP probing: the transport's window stays small, so a reader that stops is seen to.
    return [("grpc.max_receive_message_length", 64 << 20), ("grpc.http2.bdp_probe", 0)]


class LoadAndFaults(unittest.TestCase):
    def setUp(self):
        self.server = Emfitd(ARGS.emfitd, *SERVER_FLAGS)
        self.local = threading.local()
        self.channels = []
        self.channels_lock = threading.Lock()
        self.data = datasets()
        self.release = threading.Event()  # lets the generators of cut calls end
        self.stalled_lock = threading.Lock()

    def tearDown(self):
        self.close_channels()
        code = self.server.stop()
        self.assertEqual(code, 0, self.server.read_log()[-4000:])

    def close_channels(self):
        """Closes every client's connection; the next calls open new ones."""
        self.release.set()  # the generators of cut calls end
        self.release = threading.Event()
        with self.channels_lock:
            for channel in self.channels:
                channel.close()
            self.channels = []
        self.local = threading.local()

    def new_channel(self):
        channel = grpc.insecure_channel(self.server.address, options=channel_options())
        with self.channels_lock:
            self.channels.append(channel)
        return channel

    def stub(self):
        """One channel (one connection) per client thread."""
        if not hasattr(self.local, "stub"):
            self.local.channel = self.new_channel()
            self.local.stub = pb_grpc.EmFitServiceStub(self.local.channel)
        return self.local.stub

    # ---- the calls: each returns (kind, ok, detail) ----

    def valid_fit(self, i):
        x, k, cov = self.data[i % len(self.data)]
        code, details, events = run_stream(self.stub().Fit(
            requests(pb.FitRequest, fit_header(x, k, cov, seed=i % len(self.data)), x),
            timeout=300))
        return self.check_fit("valid fit", i, code, details, events)

    def slow_upload(self, i):
        """A valid fit uploaded in small chunks, 5 ms apart."""
        x, k, cov = self.data[i % len(self.data)]
        code, details, events = run_stream(self.stub().Fit(
            requests(pb.FitRequest, fit_header(x, k, cov, seed=i % len(self.data)), x,
                     chunk_values=2048, pace=threading.Event()), timeout=300))
        return self.check_fit("slow upload", i, code, details, events)

    def check_fit(self, kind, i, code, details, events):
        if code != grpc.StatusCode.OK:
            return kind, False, "%s: %s" % (code.name, details)
        want = self.references[i % len(self.data)]
        same = events[-1].result.model.SerializeToString() == want.model.SerializeToString()
        return kind, same, "" if same else "the model differs from the reference fit"

    def slow_reader(self, i):
        """A Posterior call read one response every 50 ms: slowed down, not cut (--max_stall is
        40 times that), and the posteriors of the reference call."""
        pace = threading.Event()
        responses = []
        call = self.stub().Posterior(requests(pb.PosteriorRequest, self.posterior_header(
            self.slow_posterior_data), self.slow_posterior_data), timeout=300)
        try:
            for r in call:
                responses.append(r)
                pace.wait(0.05)
        except grpc.RpcError as e:
            return "slow reader", False, "%s: %s" % (e.code().name, e.details())
        got = posteriors(responses)
        same = all(np.array_equal(a, b) for a, b in zip(got, self.reference_posteriors))
        return "slow reader", same, "" if same else "the posteriors differ from the reference"

    def expect(self, kind, call, code, substring):
        got, details, _ = run_stream(call)
        ok = got == code and substring in details
        return kind, ok, "" if ok else "%s: %s (expected %s with '%s')" % (
            got.name, details, code.name, substring)

    def oversized_message(self, i):
        """One chunk larger than --max_message_bytes: refused by gRPC before it is parsed."""
        big = np.zeros((MAX_MESSAGE_BYTES // 8 + 1000, 1))
        header = fit_header(big, 1, pb.COVARIANCE_TYPE_FULL, seed=0)
        return self.expect("oversized message", self.stub().Fit(
            iter([pb.FitRequest(header=header),
                  pb.FitRequest(chunk=pb.DataChunk(values=big.ravel()))]), timeout=60),
            grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max")

    def over_a_limit(self, i):
        x, k, cov = self.data[1]
        header = fit_header(x, k, cov, seed=0)
        if i % 2 == 0:
            header.shape.rows = 1000001
            code, text = grpc.StatusCode.RESOURCE_EXHAUSTED, "(--max_rows), got 1000001"
        else:  # the 5 KB request that held a worker for half an hour
            header.options.n_init, header.options.max_iter = 1000, 100000
            code, text = grpc.StatusCode.RESOURCE_EXHAUSTED, "exceed --max_total_iter=100000"
        return self.expect("over a limit", self.stub().Fit(
            requests(pb.FitRequest, header, x), timeout=60), code, text)

    def malformed(self, i):
        x, k, cov = self.data[i % len(self.data)]
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        variant = i % 8
        if variant == 0:  # a chunk first
            messages = iter([pb.FitRequest(chunk=pb.DataChunk(values=[1.0]))])
            return self.expect("malformed", self.stub().Fit(messages, timeout=60), invalid,
                               "the first message must be a header")
        if variant == 1:  # k = 0
            return self.expect("malformed", self.stub().Fit(requests(
                pb.FitRequest, fit_header(x, 0, cov, seed=0), x), timeout=60), invalid,
                "spec.gmm.k")
        if variant == 2:  # an infinite value
            bad = np.array(x)
            bad[7, 0] = np.inf
            return self.expect("malformed", self.stub().Fit(requests(
                pb.FitRequest, fit_header(bad, k, cov, seed=0), bad), timeout=60), invalid,
                "row 8, column 1")
        if variant == 3:  # fewer values than declared
            header = fit_header(x, k, cov, seed=0)
            header.shape.rows = x.shape[0] + 10
            return self.expect("malformed", self.stub().Fit(
                requests(pb.FitRequest, header, x), timeout=60), invalid, "received")
        if variant == 4:  # more values than declared
            header = fit_header(x, k, cov, seed=0)
            header.shape.rows = x.shape[0] - 1
            return self.expect("malformed", self.stub().Fit(
                requests(pb.FitRequest, header, x), timeout=60), invalid,
                "more values than the header's shape declares")
        if variant == 5:  # a second header
            header = fit_header(x, k, cov, seed=0)
            messages = iter([pb.FitRequest(header=header), pb.FitRequest(header=header)])
            return self.expect("malformed", self.stub().Fit(messages, timeout=60), invalid,
                               "after the header only data chunks")
        if variant == 6:  # a Score whose model's weights do not sum to 1
            model = pb.Model()
            model.CopyFrom(self.references[i % len(self.data)].model)
            model.gmm.weights[0] = -1
            header = pb.PosteriorHeader(model=model)
            header.shape.rows, header.shape.cols = x.shape
            try:
                self.stub().Score(requests(pb.PosteriorRequest, header, x), timeout=60)
                got, details = grpc.StatusCode.OK, ""
            except grpc.RpcError as e:
                got, details = e.code(), e.details()
            ok = got == invalid and "header.model.gmm.weights" in details
            return "malformed", ok, "" if ok else "%s: %s" % (got.name, details)
        # Bytes that are no protobuf message.
        self.stub()
        raw = self.local.channel.stream_stream("/emfit.v1.EmFitService/Fit")
        return self.expect("malformed", raw(iter([b"\xff\xff\xff\xff\x0fnot a message"]),
                                            timeout=60), invalid, "request stream")

    def idle(self, i):
        """The header and one chunk, then nothing: cut at its upload deadline."""
        x, k, cov = self.data[1]
        return self.expect("idle upload", self.stub().Fit(requests(
            pb.FitRequest, fit_header(x, k, cov, seed=0), x, stop_after=1, hold=self.release),
            timeout=120), grpc.StatusCode.DEADLINE_EXCEEDED, "--upload_timeout")

    def silent(self, i):
        """A stream that sends nothing at all: cut when its header has not come in time."""
        def nothing():
            self.release.wait()
            yield from ()
        return self.expect("silent stream", self.stub().Fit(nothing(), timeout=120),
                           grpc.StatusCode.DEADLINE_EXCEEDED,
                           "header did not arrive within --upload_timeout")

    def stalled_reader(self, i):
        """A Posterior call whose reader reads nothing until the server says (in its log) that
        it stopped the job for --max_stall; then it reads what was sent before the cut and the
        status. The status cannot come earlier: it waits behind the responses the reader has
        not read. One at a time, so that the log's count tells whose job stopped."""
        with self.stalled_lock:
            before = self.stalled_jobs()
            call = self.stub().Posterior(requests(pb.PosteriorRequest, self.posterior_header(
                self.stalled_posterior_data), self.stalled_posterior_data), timeout=300)
            try:
                wait_for(lambda: self.stalled_jobs() > before, timeout=120,
                         what="the server to stop the stalled reader's job")
            except AssertionError as e:
                call.cancel()
                return "stalled reader", False, str(e)
            kind, ok, detail = self.expect("stalled reader", call,
                                           grpc.StatusCode.DEADLINE_EXCEEDED, "--max_stall")
            return kind, ok, detail

    def stalled_jobs(self):
        return len(re.findall(r"job stopped job_id=posterior-\d+ outcome=DEADLINE_EXCEEDED "
                              r'message="the client read no response', self.server.read_log()))

    def abandoned_fit(self, i):
        """Cancels a running fit after its first iteration."""
        x, k, cov = self.data[0]
        header = fit_header(x, k, cov, seed=0, tol=0, max_iter=50000)
        call = self.stub().Fit(requests(pb.FitRequest, header, x), timeout=120)
        for event in call:
            if event.WhichOneof("kind") == "iteration":
                call.cancel()
                break
        ok = call.code() == grpc.StatusCode.CANCELLED
        return "abandoned fit", ok, "" if ok else str(call.code())

    def abandoned_upload(self, i):
        """Cancels a call halfway through its upload."""
        x, k, cov = self.data[1]
        sent = threading.Event()
        call = self.stub().Fit(requests(pb.FitRequest, fit_header(x, k, cov, seed=0), x,
                                        stop_after=1, reached=sent, hold=self.release),
                               timeout=120)
        sent.wait(60)  # the header and a chunk have been handed to gRPC
        call.cancel()
        ok = call.code() == grpc.StatusCode.CANCELLED
        return "abandoned upload", ok, "" if ok else str(call.code())

    def disconnected(self, i):
        """Closes the client's connection halfway through an upload (a client that died)."""
        x, k, cov = self.data[1]
        channel = self.new_channel()
        sent = threading.Event()
        call = pb_grpc.EmFitServiceStub(channel).Fit(requests(
            pb.FitRequest, fit_header(x, k, cov, seed=0), x, stop_after=1, reached=sent,
            hold=self.release), timeout=120)
        sent.wait(60)
        channel.close()
        ok = call.code() == grpc.StatusCode.CANCELLED
        return "disconnected client", ok, "" if ok else str(call.code())

    def not_http2(self, i):
        """A TCP connection that sends bytes that are not HTTP/2: the server closes it."""
        rng = random.Random(i)
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as s:
            s.sendall(bytes(rng.randrange(256) for _ in range(1024)))
            try:
                while s.recv(4096):
                    pass
                ok, detail = True, ""
            except OSError as e:  # a reset is a close too; a timeout is not
                ok, detail = not isinstance(e, socket.timeout), repr(e)
        return "not HTTP/2", ok, detail

    def wait_for_trim(self):
        """Waits until the server, quiet for a second, has trimmed its heap (its log says so).
        A call refused at once starts the quiet spell after the count is taken (the last one
        may have ended long before), on a connection closed right after it."""
        trims = lambda: self.server.read_log().count("memory trimmed: no call for a while")
        before = trims()
        self.assertEqual(self.malformed(0)[1:], (True, ""))
        self.close_channels()
        wait_for(lambda: trims() > before, timeout=30, what="the server to trim its memory")

    def posterior_header(self, x):
        header = pb.PosteriorHeader(model=self.references[1].model)
        header.shape.rows, header.shape.cols = x.shape
        return header

    def test_valid_fits_are_right_and_bad_calls_get_their_status_under_load(self):
        rng = random.Random(2024)
        self.slow_posterior_data = np.random.RandomState(5).normal(
            size=(4 * POSTERIOR_BLOCK_ROWS + 100, 2))
        # Enough blocks to fill the client's window, the transport and the server's outbox.
        self.stalled_posterior_data = np.random.RandomState(6).normal(
            size=(16 * POSTERIOR_BLOCK_ROWS, 2))
        # Reference fits and posteriors, one at a time, before any load.
        self.references = []
        for i, (x, k, cov) in enumerate(self.data):
            code, details, events = run_stream(self.stub().Fit(
                requests(pb.FitRequest, fit_header(x, k, cov, seed=i), x), timeout=300))
            self.assertEqual(code, grpc.StatusCode.OK, details)
            self.references.append(events[-1].result)
        code, details, responses = run_stream(self.stub().Posterior(requests(
            pb.PosteriorRequest, self.posterior_header(self.slow_posterior_data),
            self.slow_posterior_data), timeout=300))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.reference_posteriors = posteriors(responses)
        # Each kind of call once, so that the baseline includes what the first of each
        # allocates for good (gRPC's and glibc's pools, the threads).
        warm_up = [self.valid_fit, self.slow_upload, self.slow_reader, self.oversized_message,
                   self.over_a_limit, self.malformed, self.idle, self.silent,
                   self.stalled_reader, self.abandoned_fit, self.abandoned_upload,
                   self.disconnected, self.not_http2]
        with concurrent.futures.ThreadPoolExecutor(len(warm_up)) as pool:
            for kind, ok, detail in pool.map(lambda call: call(0), warm_up):
                self.assertTrue(ok, "warm-up %s: %s" % (kind, detail))
        # The baseline: the server without clients, as after the load, once it has given the
        # memory freed since its last call back.
        self.wait_for_trim()
        pid = self.server.proc.pid
        baseline = rss_bytes(pid)

        calls = [lambda i=i: self.valid_fit(i) for i in range(VALID_FITS - SLOW_UPLOADS)]
        calls += [lambda i=i: self.slow_upload(i) for i in range(SLOW_UPLOADS)]
        faults = ([self.oversized_message] * 6 + [self.over_a_limit] * 6 +
                  [self.malformed] * 24 + [self.idle] * 6 + [self.silent] * 2 +
                  [self.slow_reader] * 4 + [self.stalled_reader] * 2 +
                  [self.abandoned_fit] * 8 + [self.abandoned_upload] * 8 +
                  [self.disconnected] * 4 + [self.not_http2] * 4)
        calls += [lambda f=f, i=i: f(i) for i, f in enumerate(faults)]
        rng.shuffle(calls)
        start = time.time()
        peak = [baseline]
        done = threading.Event()

        def sample_rss():
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(pid))
                done.wait(0.05)
        sampler = threading.Thread(target=sample_rss)
        sampler.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                outcomes = list(pool.map(lambda call: call(), calls))
        finally:
            done.set()
            sampler.join()
        elapsed = time.time() - start
        self.assertIsNone(self.server.proc.poll(), "emfitd died:\n" + self.server.read_log())

        tally = collections.Counter(kind for kind, _, _ in outcomes)
        failed = [(kind, detail) for kind, ok, detail in outcomes if not ok]
        print("load: %d calls from %d clients in %.1f s: %s; server RSS baseline %.1f MB, "
              "peak %.1f MB" % (len(calls), CLIENTS, elapsed, ", ".join(
                  "%d %s" % (n, kind) for kind, n in sorted(tally.items())),
                  baseline / 1e6, peak[0] / 1e6), file=sys.stderr)
        self.assertEqual(failed, [])
        self.assertEqual(tally["valid fit"] + tally["slow upload"], VALID_FITS)

        # The memory comes back once the clients have gone (their calls' data were freed and
        # trimmed; their connections' buffers go with the connections).
        self.wait_for_trim()
        after = rss_bytes(pid)
        print("memory: RSS %.1f MB after the load, %.3f x the baseline" % (
            after / 1e6, after / baseline), file=sys.stderr)
        if ARGS.sanitized:
            print("memory: not compared in a sanitizer build (its allocator keeps freed memory "
                  "in quarantine)", file=sys.stderr)
        else:
            self.assertLessEqual(after, 1.1 * baseline)

        # And the server still serves.
        self.assertEqual(self.valid_fit(0)[1:], (True, ""))
        # Its own account: every call ended with a deliberate status (the log is complete once
        # it has stopped), and it served every valid fit.
        self.close_channels()
        self.assertEqual(self.server.stop(), 0)
        outcomes = collections.Counter(c["outcome"] for c in self.server.calls())
        print("server outcomes: %s" % dict(outcomes), file=sys.stderr)
        self.assertEqual(outcomes["INTERNAL"] + outcomes["UNKNOWN"], 0, self.server.read_log())
        fits_ok = sum(1 for c in self.server.calls()
                      if c["job_id"].startswith("fit-") and c["outcome"] == "OK")
        self.assertEqual(fits_ok, len(self.data) + 2 + VALID_FITS + 1)


class SixIdleStreams(unittest.TestCase):
    BUDGET = 8 << 30

    def setUp(self):
        self.server = Emfitd(ARGS.emfitd, "--max_inflight_bytes=%d" % self.BUDGET,
                             "--max_inflight_bytes_per_peer=%d" % self.BUDGET,
                             "--metrics_port=-1")
        self.release = threading.Event()
        self.channel = grpc.insecure_channel(self.server.address)
        self.idle_channel = grpc.insecure_channel(self.server.address)

    def tearDown(self):
        self.release.set()
        self.channel.close()
        self.idle_channel.close()
        self.assertEqual(self.server.stop(), 0, self.server.read_log()[-4000:])

    def metric(self, text, name, labels=""):
        m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
        return float(m.group(1)) if m else 0.0

    def scrape(self):
        port = int(re.search(r"metrics_port=(\d+)", self.server.read_log()).group(1))
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
            return r.read().decode()

    def test_six_streams_that_declare_data_they_never_send_lock_nobody_out(self):
        # Each declares 8,947,848 rows x 20 columns (1.43 GB): together all but 512 bytes of
        # the 8 GiB budget, had declared bytes been reserved.
        header = pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2)))
        header.shape.rows, header.shape.cols = 8947848, 20
        self.assertLessEqual(6 * header.shape.rows * header.shape.cols * 8, self.BUDGET)

        def header_only():
            yield pb.FitRequest(header=header)
            self.release.wait()
        stub = pb_grpc.EmFitServiceStub(self.idle_channel)
        idle = [stub.Fit(header_only(), timeout=120) for _ in range(6)]
        header_bytes = pb.FitRequest(header=header).ByteSize()
        # The six headers have arrived and were accepted: they hold their calls open.
        text = wait_for(lambda: (lambda t: t if self.metric(
            t, "emfit_received_bytes_total", '{method="Fit"}') >= 6 * header_bytes else None)(
                self.scrape()), timeout=30, what="the six headers")
        self.assertEqual(self.metric(text, "emfit_active_calls"), 6)
        self.assertEqual(self.metric(text, "emfit_inflight_bytes"), 0)  # declared is not held
        # A normal fit (Old Faithful, k=2) is served within a second: the call's deadline.
        x = np.loadtxt(os.path.join(ARGS.repo, "data", "faithful.csv"), delimiter=",",
                       skiprows=1)
        fit = fit_header(x, 2, pb.COVARIANCE_TYPE_FULL, seed=0)
        code, details, events = run_stream(pb_grpc.EmFitServiceStub(self.channel).Fit(
            requests(pb.FitRequest, fit, x), timeout=1.0))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertAlmostEqual(events[-1].result.summary.log_likelihood, -1130.264, places=3)
        for call in idle:  # still open: their uploads have not timed out
            self.assertTrue(call.is_active())
        for call in idle:
            call.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--emfitd", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--sanitized", action="store_true",
                        help="emfitd is a sanitizer build: its memory is not compared")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])
