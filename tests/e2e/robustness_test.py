"""Robustness: seeded random (often malformed) requests against a real emfitd. Every call must
end with a deliberate status (OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, FAILED_PRECONDITION,
CANCELLED, DEADLINE_EXCEEDED), never INTERNAL/UNKNOWN/UNAVAILABLE, and the server must stay up
and answer a normal fit at the end."""
import argparse
import math
import os
import random
import sys
import unittest

import grpc

from emfit_e2e import Emfitd, generate_stubs, wait_ready

ARGS = None
DELIBERATE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION,
              grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}


def status_of(call):
    try:
        for _ in call:
            pass
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


class Robustness(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Emfitd(ARGS.emfitd, "--workers=2", "--queue=8", "--max_rows=5000",
                            "--max_k=20", "--max_iter_limit=200", "--max_n_init=4",
                            "--max_inflight_bytes=4000000")
        try:
            generate_stubs(ARGS.repo, os.path.join(ARGS.repo, "tests/e2e/proto"))
        except Exception:
            cls.server.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, "emfitd exited with %d:\n%s" % (code, cls.server.read_log())

    def random_value(self, rng):
        return rng.choice([rng.gauss(0, 5), rng.gauss(0, 5), rng.gauss(0, 5), float("nan"),
                           float("inf"), -1e308, 0.0, 1e-300])

    def random_fit_requests(self, rng, pb):
        header = pb.FitHeader()
        sane = rng.random() < 0.4  # a well-formed request, to exercise the success paths too
        rows = rng.choice([50, 400] if sane else [0, 1, 2, 3, 50, 400, 6000, 2**40])
        cols = rng.choice([1, 2, 3] if sane else [0, 1, 2, 3, 5, 2000])
        header.shape.rows = rows
        header.shape.cols = cols
        header.shape.weight_column = rng.random() < 0.2
        if sane or rng.random() < 0.9:
            header.spec.gmm.k = rng.choice([1, 2, 3] if sane else [0, 1, 2, 3, 7, 25, 2**31 + 5])
            header.spec.gmm.covariance_type = rng.choice([0, 1, 2, 3, 4] if sane
                                                         else [0, 1, 2, 3, 4, 99])
            if rng.random() < 0.5:
                header.spec.gmm.reg_covar = rng.choice([1e-6, 1e-3] if sane
                                                       else [0.0, 1e-6, -1.0, float("nan")])
            header.spec.gmm.init = rng.choice([0, 1, 2, 3, 4] if sane else [0, 1, 2, 3, 4, 17])
            header.spec.gmm.fix_means = not sane and rng.random() < 0.1
        if rng.random() < 0.5:
            header.options.max_iter = rng.choice([0, 1, 5] if sane else [0, 1, 5, 1000])
        if rng.random() < 0.5:
            header.options.tol = rng.choice([0.0, 1e-3] if sane else [0.0, 1e-3, -1.0, float("inf")])
        header.options.n_init = rng.choice([0, 1, 2] if sane else [0, 1, 2, 9])
        header.options.acceleration = rng.choice([0, 1, 2] if sane else [0, 1, 2, 5])
        # The other streams, declared or not, in amounts that do or do not add up.
        extra = None
        if not sane and rng.random() < 0.15:
            if rng.random() < 0.5:
                header.shape.num_sequences = rng.choice([0, 1, 3, rows, rows + 1, 2**40])
            if rng.random() < 0.5:
                header.shape.newick_bytes = rng.choice([0, 5, 10**9])
            if rng.random() < 0.5:
                header.shape.row_names = True
            extra = pb.DataChunk(
                sequence_lengths=rng.choice([[], [1], [0], [rows], [2**63], [1] * 5]),
                newick=rng.choice([b"", b"(a:1,b:1);", b"\xff" * 7]),
                row_names=rng.choice([[], ["a"], ["x" * 5000], ["r"] * 3]))
        per_row = max(cols, 0) + (1 if header.shape.weight_column else 0)
        total = min(rows * per_row, 20000) + (0 if sane else rng.choice([0, 0, 0, -1, 1, 7]))
        messages = []
        order = 0.5 if sane else rng.random()
        if order < 0.05:
            messages.append(pb.FitRequest(chunk=pb.DataChunk(values=[1.0])))
        if order > 0.02:
            messages.append(pb.FitRequest(header=header))
        if order > 0.97:
            messages.append(pb.FitRequest(header=header))
        values = [self.random_value(rng) if not sane and rng.random() < 0.05
                  else float("nan") if rng.random() < 0.05 else rng.gauss(0, 3)
                  for _ in range(max(total, 0))]
        if header.shape.weight_column and sane:
            for r in range(rows):  # weights must be finite and >= 0
                values[r * per_row + per_row - 1] = rng.choice([0.5, 1.0, 2.0])
        step = rng.choice([1, 7, 100, 5000])
        for i in range(0, len(values), step):
            messages.append(pb.FitRequest(chunk=pb.DataChunk(values=values[i:i + step])))
        if extra is not None:
            messages.insert(rng.randrange(len(messages) + 1), pb.FitRequest(chunk=extra))
        return messages

    def test_random_requests_get_deliberate_statuses_and_the_server_survives(self):
        from emfit.v1 import emfit_pb2 as pb, emfit_pb2_grpc as rpc
        stub = rpc.EmFitServiceStub(wait_ready(self.server.address))
        rng = random.Random(12345)
        seen = {}
        for i in range(150):
            kind = rng.random()
            if kind < 0.7:
                call = stub.Fit(iter(self.random_fit_requests(rng, pb)), timeout=20)
            else:
                header = pb.PosteriorHeader()
                header.shape.rows = rng.choice([0, 1, 10])
                header.shape.cols = rng.choice([0, 1, 2])
                if rng.random() < 0.7:
                    g = header.model.gmm
                    g.covariance_type = rng.choice([1, 2, 3, 4])
                    g.weights.extend([rng.random() for _ in range(rng.choice([0, 1, 2]))])
                    g.means.rows, g.means.cols = rng.choice([0, 1, 2]), rng.choice([0, 1, 2])
                    g.means.values.extend([rng.gauss(0, 1) for _ in range(rng.choice([0, 2, 4]))])
                    g.covariances.rows, g.covariances.cols = rng.choice([1, 2, 4]), rng.choice([1, 2])
                    g.covariances.values.extend([rng.gauss(1, 1) for _ in range(rng.choice([1, 4, 8]))])
                n = header.shape.rows * header.shape.cols
                messages = [pb.PosteriorRequest(header=header)] + [
                    pb.PosteriorRequest(chunk=pb.DataChunk(values=[rng.gauss(0, 1)]))
                    for _ in range(n + rng.choice([0, 0, 1]))]
                call = stub.Posterior(iter(messages), timeout=20)
            code, details = status_of(call)
            self.assertIn(code, DELIBERATE, "request %d: %s %s" % (i, code, details))
            if code != grpc.StatusCode.OK:
                self.assertTrue(details, "request %d: %s without a message" % (i, code))
            seen[code] = seen.get(code, 0) + 1
        print("statuses:", {c.name: n for c, n in seen.items()}, file=sys.stderr)
        self.assertGreater(seen.get(grpc.StatusCode.INVALID_ARGUMENT, 0), 20)
        self.assertGreater(seen.get(grpc.StatusCode.OK, 0), 20)
        self.assertIsNone(self.server.proc.poll(), "emfitd died")
        # Still serving normally.
        header = pb.FitHeader()
        header.spec.gmm.k = 2
        header.shape.rows, header.shape.cols = 100, 2
        values = [(i % 2) * 5 + math.sin(i) for i in range(200)]
        events = list(stub.Fit(iter([pb.FitRequest(header=header),
                                     pb.FitRequest(chunk=pb.DataChunk(values=values))]),
                               timeout=20))
        self.assertTrue(events[-1].HasField("result"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--emfitd", required=True)
    parser.add_argument("--repo", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])
