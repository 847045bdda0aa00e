"""Progress of a running call: the event a callback receives, and a tqdm-style line on stderr
(written here; tqdm is not a dependency)."""
import dataclasses
import math
import sys
import time
from typing import Optional


@dataclasses.dataclass(frozen=True)
class IterationEvent:
    """One EM iteration of one restart (a proto Iteration, plus the candidate of a model
    selection). iteration 0 is the starting parameters; iteration t the parameters after t
    M-steps. change is the change of the mean log-likelihood (NaN at iteration 0)."""
    restart: int
    iteration: int
    log_likelihood: float
    elbo: float
    change: float
    elapsed_seconds: float
    accelerated: bool
    candidate: Optional[int] = None

    @classmethod
    def from_proto(cls, it, candidate=None):
        return cls(restart=it.restart, iteration=it.iteration, log_likelihood=it.log_likelihood,
                   elbo=it.elbo, change=it.change, elapsed_seconds=it.elapsed_seconds,
                   accelerated=it.accelerated, candidate=candidate)


def _clock(seconds):
    seconds = int(seconds)
    return "%02d:%02d" % divmod(seconds, 60) if seconds < 3600 else \
        "%d:%02d:%02d" % (seconds // 3600, seconds % 3600 // 60, seconds % 60)


class ProgressBar:
    """`fit  37%|######     | 37/100 [00:01<00:02, 30.1 it/s, ll=-1130.264]` on stderr.

    verbose=1 rewrites one line in place; verbose>=2 writes one line per iteration (as
    scikit-learn's verbose=2). total counts M-steps over every restart (max_iter * n_init); a
    fit that converges early ends below it. Queue waits show as `queued (position N)`."""

    WIDTH = 20

    def __init__(self, verbose, total, label="fit", stream=None, clock=time.monotonic):
        self.verbose = verbose
        self.total = max(1, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.shown = False
        self.width = 0
        self.last = math.nan

    def queued(self, position):
        if self.verbose >= 1:
            self._write("%s queued (position %d)" % (self.label, position))

    def update(self, event):
        if event.iteration > 0:
            self.done += 1
        if self.verbose >= 2:
            prefix = "" if event.candidate is None else "candidate %d " % event.candidate
            self.stream.write("%s%srestart %d iter %d log-likelihood %.6f change %s\n" % (
                self.label + " ", prefix, event.restart, event.iteration, event.log_likelihood,
                "-" if math.isnan(event.change) else "%+.3e" % event.change))
            self.stream.flush()
        elif self.verbose == 1:
            self._write(self._line(event.log_likelihood))
        self.last = event.log_likelihood

    def close(self, complete=False):
        """Ends the line; complete (the call succeeded) shows the iterations that ran as 100%."""
        if self.verbose == 1 and self.shown:
            if complete and self.done > 0:
                self.total = self.done
                self._write(self._line(self.last))
            self.stream.write("\n")
            self.stream.flush()

    def _line(self, log_likelihood):
        elapsed = self.clock() - self.start
        done = min(self.done, self.total)
        filled = int(self.WIDTH * done / self.total)
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - done) / rate if rate > 0 else 0.0
        return "%s %3d%%|%s%s| %d/%d [%s<%s, %.1f it/s, ll=%.6g]" % (
            self.label, 100 * done // self.total, "#" * filled, " " * (self.WIDTH - filled), done,
            self.total, _clock(elapsed), _clock(remaining), rate, log_likelihood)

    def _write(self, text):
        # Pad over the end of a longer previous line (no terminal escapes: stderr may be a file).
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = max(self.width, len(text))
        self.shown = True
