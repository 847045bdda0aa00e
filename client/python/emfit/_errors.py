"""gRPC statuses as Python exceptions: one class per status code, each an EmfitError carrying
the code and the server's message, and also the built-in exception a Python user expects
(INVALID_ARGUMENT is a ValueError, DEADLINE_EXCEEDED a TimeoutError, ...)."""
import grpc


class EmfitError(Exception):
    """A call to emfitd ended with a non-OK gRPC status.

    Attributes:
      code: the grpc.StatusCode.
      message: the server's (or gRPC's) message, e.g. "spec.gmm.k: must be between 1 and ...".
    """

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code.name, message))
        self.code = code
        self.message = message


class InvalidArgumentError(EmfitError, ValueError):
    """Malformed input: the message names the field, the value and the limit."""


class FailedPreconditionError(EmfitError, RuntimeError):
    """A valid request that cannot run (e.g. every restart failed numerically)."""


class ResourceExhaustedError(EmfitError, RuntimeError):
    """A server limit or a full queue; retrying later may succeed."""


class CancelledError(EmfitError):
    """The call was cancelled (e.g. by KeyboardInterrupt in another thread)."""


class DeadlineExceededError(EmfitError, TimeoutError):
    """The call's timeout passed."""


class UnavailableError(EmfitError, ConnectionError):
    """The server cannot be reached or is shutting down; the call may be retried."""


class UnauthenticatedError(EmfitError, PermissionError):
    """No token, or a wrong one."""


class PermissionDeniedError(EmfitError, PermissionError):
    """The token is valid but may not do this."""


class InternalError(EmfitError, RuntimeError):
    """A failure inside the server (INTERNAL, UNKNOWN, DATA_LOSS, ...)."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def error_for(code, message):
    """The EmfitError subclass instance for a grpc.StatusCode and a message."""
    return _BY_CODE.get(code, InternalError)(code, message or "")


def from_rpc_error(error):
    """The EmfitError subclass instance for a grpc.RpcError (a grpc.Call)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    return error_for(code, message)
