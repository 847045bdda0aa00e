"""Shared helpers of the end-to-end tests: a real emfitd process and generated Python stubs.

Run under Debian's /usr/bin/python3 (python3-grpcio, python3-grpc-tools, python3-numpy).
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc


class Emfitd:
    """Starts `emfitd --port=0` and reads the port it bound from --port_file. Stops without a
    drain delay unless `flags` set --drain_delay."""

    def __init__(self, binary, *flags, env=None):
        self.dir = tempfile.mkdtemp(prefix="emfit-e2e-")
        port_file = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "emfitd.log"), "w+")
        self.proc = subprocess.Popen(
            [binary, "--host=127.0.0.1", "--port=0", "--port_file=" + port_file,
             "--drain_delay=0s", *flags],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("emfitd did not start:\n" + self.read_log())
            time.sleep(0.05)
        with open(port_file) as f:
            self.port = int(f.read())
        self.address = "127.0.0.1:%d" % self.port

    def read_log(self):
        # Through a file object of its own: emfitd writes through the same open file as
        # self.log, so seeking self.log would move emfitd's write offset too.
        with open(self.log.name) as f:
            return f.read()

    def calls(self):
        """The calls the log says have ended, in order: dicts with job_id, outcome (a status
        code name) and offset (where in the log). Reads both log formats: the record per call
        (`call method=Fit job_id=fit-000001 ... outcome=OK ...`) and the older lines
        (`job fit-000001: finished in 0.1 s: 0 ...`, `job fit-000002: rejected: CODE: ...`)."""
        names = {code.value[0]: code.name for code in grpc.StatusCode}
        found = []
        for m in re.finditer(r"call method=\w+ job_id=(\S+) .*?outcome=(\w+)"
                             r"|job (\S+): finished in [0-9.]+ s: (\d+)"
                             r"|job (\S+): rejected: ([A-Z_]+)", self.read_log()):
            if m.group(1):
                found.append(dict(job_id=m.group(1), outcome=m.group(2), offset=m.start()))
            elif m.group(3):
                found.append(dict(job_id=m.group(3), outcome=names[int(m.group(4))],
                                  offset=m.start()))
            else:
                found.append(dict(job_id=m.group(5), outcome=m.group(6), offset=m.start()))
        return found

    def wait_for_call(self, outcomes, after=0, timeout=60):
        """Polls the log until a call after the first `after` ended with one of the status
        names in outcomes; returns it (or raises AssertionError with the log after timeout
        seconds)."""
        deadline = time.time() + timeout
        while True:
            ended = [c for c in self.calls()[after:] if c["outcome"] in outcomes]
            if ended:
                return ended[0]
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("no call ended with %s in the log of emfitd:\n%s"
                                     % (sorted(outcomes), self.read_log()))
            time.sleep(0.02)

    def stop(self, timeout=20):
        """SIGTERM, then waits; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def generate_stubs(repo_root, e2e_proto_root):
    """Compiles emfit.v1, grpc.health.v1 (proto/) and the reflection service (the e2e tests'
    own copy) for Python with Debian's protoc and grpc_python_plugin (protobuf-compiler-grpc);
    returns the module dir, now on sys.path."""
    out = tempfile.mkdtemp(prefix="emfit-stubs-")
    proto_root = os.path.join(repo_root, "proto")
    for root, name in ((proto_root, "emfit/v1/emfit.proto"),
                       (proto_root, "health_check/health.proto"),
                       (e2e_proto_root, "reflection_check/reflection.proto")):
        subprocess.run(["protoc", "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                        "-I" + root, "--python_out=" + out, "--grpc_python_out=" + out,
                        os.path.join(root, name)], check=True)
    sys.path.insert(0, out)
    return out


def wait_ready(address, timeout=10):
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=timeout)
    return channel


def wait_for(predicate, timeout=20, what="the condition"):
    """Polls `predicate` until it returns a true value (returned), for at most `timeout` s."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.02)


def json_log_records(server):
    """Every line of a --log_format=json emfitd's log, parsed (each must be one JSON object)."""
    return [json.loads(line) for line in server.read_log().splitlines() if line.strip()]


def port_open(port):
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0
