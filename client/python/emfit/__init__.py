"""emfit: fit statistical models by Expectation-Maximization on an emfitd server, from Python,
with scikit-learn's interface.

    from emfit import GaussianMixture
    gm = GaussianMixture(3, server="localhost:50051").fit(X)
    gm.predict(X)

One module per model family (mixture.py: GaussianMixture, select_model; hmm.py: GaussianHMM,
CategoricalHMM, PoissonHMM; mk.py: MkModel); what they share (the estimator base, the calls,
data streaming, conversions, errors, progress) lives in the underscored modules.
The raw protocol is emfit.v1 (emfit_pb2, emfit_pb2_grpc), generated from proto/.
"""
from ._base import ConvergenceWarning, NotFittedError, ServerWarning
from ._client import Client, Posteriors, TlsFiles, resend_after
from ._errors import (CancelledError, DeadlineExceededError, EmfitError,
                      FailedPreconditionError, InternalError, InvalidArgumentError,
                      PermissionDeniedError, ResourceExhaustedError, UnauthenticatedError,
                      UnavailableError)
from ._progress import IterationEvent, ProgressBar
from .hmm import CategoricalHMM, ConvergenceMonitor, GaussianHMM, PoissonHMM
from .mixture import Candidate, GaussianMixture, ModelSelection, select_model
from .mk import Histories, MkModel, NodePosteriors

__version__ = "0.1.0"

__all__ = [
    "Candidate", "CancelledError", "CategoricalHMM", "Client", "ConvergenceMonitor",
    "ConvergenceWarning", "DeadlineExceededError", "EmfitError", "FailedPreconditionError",
    "GaussianHMM", "GaussianMixture", "Histories", "InternalError", "InvalidArgumentError",
    "IterationEvent", "MkModel", "ModelSelection", "NodePosteriors", "NotFittedError",
    "PermissionDeniedError", "PoissonHMM", "Posteriors", "ProgressBar",
    "ResourceExhaustedError", "ServerWarning", "TlsFiles", "UnauthenticatedError",
    "UnavailableError", "resend_after", "select_model",
]
