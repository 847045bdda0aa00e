"""emfit.Client: the raw RPCs (Fit, Posterior, Score, SelectModel, SampleHistories) with the
header-then-chunks
upload, deadlines, tokens, cancellation and errors as exceptions. The estimators use it; it is
the one place where calls are made."""
import dataclasses
import json
import numbers
import random
import time
from typing import Optional

import grpc
import numpy as np

from . import _data
from ._errors import error_for, from_rpc_error
from .v1 import emfit_pb2 as pb
from .v1 import emfit_pb2_grpc as pb_grpc

DEFAULT_SERVER = "localhost:50051"
# - round_robin: a target that resolves to several addresses (a Kubernetes headless Service,
#   "dns:///emfitd-headless:50051", or "ipv4:10.0.0.1:50051,10.0.0.2:50051") gets its calls
#   spread over all of them; a single address behaves as before.
# - Results (a model, a selection table) and posterior blocks (about 1 MiB) stay far below the
#   receive limit.
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
# - grpc.enable_retries=0: no retries inside gRPC (no retry policy, no transparent retries):
#   gRPC 1.51's retry filter can drop, repeat or stall the chunks of a streamed upload that it
#   retries (docs/reliability.md, "Retried uploads"). The Client re-sends calls itself.
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20),
                    ("grpc.service_config", _SERVICE_CONFIG),
                    ("grpc.enable_retries", 0)]
MAX_RETRIES = 10


class _Raised(Exception):
    """An exception raised by the caller's callback during a call: ends the call (cancelled)
    and is re-raised as it is, never taken for the call's own status."""

    def __init__(self, error):
        super().__init__()
        self.error = error


def resend_after(error, attempt, rng=random):
    """Seconds to wait before sending again a call whose attempt number `attempt` failed with
    `error` (a grpc.RpcError), or None if it should not be sent again; the rule of the C++
    FitClient (docs/operations.md, "Retries"). Lost in transit (UNAVAILABLE, or INTERNAL for an
    HTTP/2 stream reset): a random wait in [0, min(0.2 s x 2^(attempt-1), 5 s)]. Refused as busy
    (RESOURCE_EXHAUSTED whose grpc-retry-pushback-ms trailer is >= 0): that hint plus the same
    random wait. Anything else (a limit's hint of -1, no hint, any other status) is final."""
    code = error.code() if hasattr(error, "code") else None
    hint = 0.0
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailers = dict(error.trailing_metadata() or ()) if hasattr(
            error, "trailing_metadata") else {}
        try:
            hint = int(trailers["grpc-retry-pushback-ms"]) / 1000.0
        except (KeyError, ValueError):
            return None
        if hint < 0:
            return None
    elif not (code == grpc.StatusCode.UNAVAILABLE or (
            code == grpc.StatusCode.INTERNAL and "RST_STREAM" in (error.details() or ""))):
        return None
    return hint + rng.uniform(0.0, min(0.2 * 2 ** min(attempt - 1, 10), 5.0))


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """TLS settings by file name: the CA that signed the server's certificate (None: the
    system's roots) and, for mutual TLS, this client's certificate chain and key (PEM).

    Unlike a grpc.ChannelCredentials, this can be copied and pickled, so an estimator that
    holds it can be cloned (sklearn.base.clone, GridSearchCV)."""
    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None

    def channel_credentials(self):
        def read(path):
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()
        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


@dataclasses.dataclass
class Posteriors:
    """Posterior of every row: responsibilities (rows x k, rows sum to 1), log_likelihood
    (ln p(x_i), 0 for a row with nothing observed) and labels (most likely component)."""
    responsibilities: np.ndarray
    log_likelihood: np.ndarray
    labels: np.ndarray


class Client:
    """A connection to emfitd (or to a load balancer in front of replicas).

    Args:
      server: a gRPC target, "host:port" (or "dns:///name:port", "ipv4:a:p,b:p": calls are
        then spread over every address, gRPC's round_robin), used when channel is None.
      channel: a grpc.Channel to use instead (not closed by close()).
      credentials: None (plain text), a grpc.ChannelCredentials, or TlsFiles.
      token: bearer token sent with every call (emfitd --token_file), or None.
      timeout: seconds each call may take (its gRPC deadline, re-sends included), or None for
        no limit.
      chunk_bytes: bytes of data per streamed message.
      retries: how many times a call is sent again, whole, when the server refused it as busy
        (after its retry hint plus a random backoff) or the connection lost it (a replica that
        died; after a random exponential backoff): resend_after. 0 to 10; 0 raises at once.
      on_resend: None, or called as on_resend(error, attempt) before each re-send, with the
        EmfitError that ended the previous attempt and the number of this one (2, 3, ...).

    Every method converts its input with numpy (NaN means missing), streams a header and then
    chunks, and raises an emfit.EmfitError subclass carrying the gRPC code and message when the
    call fails. KeyboardInterrupt (or any exception raised by on_event) cancels the call on the
    server, which stops the job and frees its worker, and then propagates."""

    def __init__(self, server=DEFAULT_SERVER, channel=None, credentials=None, token=None,
                 timeout=None, chunk_bytes=_data.DEFAULT_CHUNK_BYTES, retries=4, on_resend=None):
        if not isinstance(retries, numbers.Integral) or isinstance(retries, bool) or not (
                0 <= retries <= MAX_RETRIES):
            raise ValueError("retries: must be an int from 0 to %d, got %r"
                             % (MAX_RETRIES, retries))
        if channel is None:
            if isinstance(credentials, TlsFiles):
                credentials = credentials.channel_credentials()
            if credentials is None:
                channel = grpc.insecure_channel(server, options=_CHANNEL_OPTIONS)
            else:
                channel = grpc.secure_channel(server, credentials, options=_CHANNEL_OPTIONS)
            self._owned = channel
        else:
            self._owned = None
        self._stub = pb_grpc.EmFitServiceStub(channel)
        self._metadata = (("authorization", "Bearer " + token),) if token else None
        self.timeout = timeout
        self.chunk_bytes = chunk_bytes
        self.retries = int(retries)
        self.on_resend = on_resend
        self._random = random.Random()

    def close(self):
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # The RPCs. X: array-like (rows, cols), NaN for missing; sample_weight: one per row.
    # Mk models also stream the tree and the tips' labels (**texts: newick, the Newick text as
    # str or bytes; row_names, one label per row of X; allow_missing_tips). Hidden Markov
    # models cut the rows into consecutive sequences (**texts: sequence_lengths, each >= 1,
    # adding up to the rows; None: one sequence).

    def fit(self, header, X, sample_weight=None, column_names=None, on_event=None, **texts):
        """Fit: header is a FitHeader whose spec/options/init are set (its shape is filled in
        here). on_event(FitEvent) sees every event (accepted, iteration, warning, heartbeat).
        Returns the FitResult."""
        return self._events(self._stub.Fit, pb.FitRequest, header, X, sample_weight,
                            column_names, on_event, texts)

    def select_model(self, header, X, sample_weight=None, column_names=None, on_event=None,
                     **texts):
        """SelectModel: header is a SelectModelHeader (grid, template, options). Returns the
        SelectionResult; on_event(SelectModelEvent) sees every other event."""
        return self._events(self._stub.SelectModel, pb.SelectModelRequest, header, X,
                            sample_weight, column_names, on_event, texts)

    def posterior_blocks(self, model, X, sample_weight=None, **texts):
        """The PosteriorResponse blocks of X under model, in order (Mk models: blocks of nodes
        with their MkTreeSummary)."""
        requests = self._requests(pb.PosteriorRequest, pb.PosteriorHeader(model=model), X,
                                  sample_weight, None, texts)
        blocks = []
        # Blocks cannot be taken back: no re-send once one has arrived.
        self._stream(self._stub.Posterior, requests, blocks.append, lambda: not blocks)
        if not blocks:
            raise error_for(grpc.StatusCode.INTERNAL, "Posterior ended without a block")
        return blocks

    def posterior(self, model, X, sample_weight=None):
        """Posterior of every row of X under model (a Model message), in row order."""
        blocks = self.posterior_blocks(model, X, sample_weight)
        return Posteriors(
            np.concatenate([_data.array(b.responsibilities) for b in blocks]),
            np.concatenate([np.asarray(b.log_likelihood, dtype=np.float64) for b in blocks]),
            np.concatenate([np.asarray(b.labels, dtype=np.int64) for b in blocks]))

    def score(self, model, X, sample_weight=None, **texts):
        """Score: the ScoreResponse (log-likelihood, its mean, BIC, AIC) of X under model."""
        requests = self._requests(pb.ScoreRequest, pb.PosteriorHeader(model=model), X,
                                  sample_weight, None, texts)

        def attempt(timeout):
            future = self._stub.Score.future(requests(), timeout=timeout,
                                             metadata=self._metadata)
            try:
                return future.result()
            except grpc.RpcError:
                raise
            except BaseException:
                future.cancel()
                raise
        return self._resending(attempt)

    def sample_histories(self, header, X, on_batch=None, **texts):
        """SampleHistories (Mk models): header is a SampleHistoriesHeader (model, n, seed,
        sampler); X the tips' likelihood rows, with texts as for fit. on_batch(response) sees
        each batch of SIMMAP lines in order. Returns the HistoriesSummary."""
        requests = self._requests(pb.SampleHistoriesRequest, header, X, None, None, texts)
        summary, delivered = [], []

        def handle(response):
            if response.simmap:
                delivered.append(True)
                if on_batch is not None:
                    on_batch(response)
            if response.HasField("summary"):
                summary.append(response.summary)
        # Maps cannot be taken back: no re-send once a batch has arrived.
        self._stream(self._stub.SampleHistories, requests, handle, lambda: not delivered,
                     summary.clear)
        if not summary:
            raise error_for(grpc.StatusCode.INTERNAL, "the call ended without a summary")
        return summary[0]

    # Shared by every RPC.

    def _requests(self, request_type, header, X, sample_weight, column_names, texts=None):
        texts = dict(texts or {})
        newick = texts.pop("newick", None)
        if isinstance(newick, str):
            newick = newick.encode()
        row_names = texts.pop("row_names", None)
        allow_missing_tips = bool(texts.pop("allow_missing_tips", False))
        sequence_lengths = texts.pop("sequence_lengths", None)
        if texts:
            raise TypeError("unexpected arguments: %s" % ", ".join(sorted(texts)))
        X = _data.as_matrix(X)
        weights = _data.as_weights(sample_weight, X.shape[0])
        if row_names is not None:
            row_names = [str(n) for n in row_names]
            if len(row_names) != X.shape[0]:
                raise ValueError("row_names: expected %d names (one per row), got %d"
                                 % (X.shape[0], len(row_names)))
        sequence_lengths = _data.as_lengths(sequence_lengths, X.shape[0], "sequence_lengths")
        header.shape.CopyFrom(_data.shape_of(X, weights, column_names, newick, row_names,
                                             sequence_lengths))
        header.shape.allow_missing_tips = allow_missing_tips

        def generate():
            yield request_type(header=header)
            for chunk in _data.stream_values(X, weights, self.chunk_bytes):
                yield request_type(chunk=chunk)
            for chunk in _data.stream_texts(newick, row_names, self.chunk_bytes,
                                            sequence_lengths):
                yield request_type(chunk=chunk)
        return generate  # a new stream of the same messages for each attempt

    def _events(self, method, request_type, header, X, sample_weight, column_names, on_event,
                texts=None):
        requests = self._requests(request_type, header, X, sample_weight, column_names, texts)
        result = []

        def handle(event):
            if event.WhichOneof("kind") == "result":
                result.append(event.result)
            elif on_event is not None:
                on_event(event)  # a re-sent call's events start over (from accepted)
        self._stream(method, requests, handle, start=result.clear)  # the last attempt's
        if not result:
            raise error_for(grpc.StatusCode.INTERNAL, "the call ended without a result")
        return result[0]

    def _stream(self, method, requests, handle, may_resend=lambda: True, start=lambda: None):
        """Runs a response-streaming call on the messages of requests(), handing each response
        to handle(); cancels the call if anything (KeyboardInterrupt included) interrupts it.
        Re-sent as _resending says while may_resend(); start() runs before each attempt."""
        def attempt(timeout):
            start()
            call = method(requests(), timeout=timeout, metadata=self._metadata)
            try:
                for response in call:
                    try:
                        handle(response)
                    except BaseException as e:  # the caller's own (an RpcError included)
                        raise _Raised(e) from None
            except grpc.RpcError:
                raise  # the call's end (the callback's errors are _Raised)
            except BaseException:
                call.cancel()
                raise
        self._resending(attempt, may_resend)

    def _resending(self, attempt, may_resend=lambda: True):
        """Returns attempt(timeout) (timeout: what is left of self.timeout, or None), run again
        after resend_after's wait while it says so, re-sends remain, may_resend() and the wait
        ends within self.timeout; a grpc.RpcError that ends it becomes an EmfitError."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        n = 1
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            error = ended = None
            try:
                return attempt(timeout)
            except _Raised as raised:
                error = raised.error  # raised below, outside this handler: its chain kept
            except grpc.RpcError as e:
                wait = resend_after(e, n, self._random) if n <= self.retries else None
                ended = from_rpc_error(e)
                if (wait is None or not may_resend() or
                        (deadline is not None and time.monotonic() + wait >= deadline)):
                    raise ended from None
            if error is not None:
                raise error
            time.sleep(wait)
            n += 1
            if self.on_resend is not None:
                self.on_resend(ended, n)

