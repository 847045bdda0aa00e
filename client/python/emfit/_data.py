"""Conversions shared by every family: input arrays (numpy, pandas) to row-major doubles,
feature names, sequence lengths, the header-then-chunks request stream, Matrix messages and
the Gaussian parameters' layout."""
import numpy as np

from .v1 import emfit_pb2 as pb

# Bytes of data per streamed message (the CLI's --chunk_bytes default); far below the server's
# --max_message_bytes (4 MiB).
DEFAULT_CHUNK_BYTES = 256 << 10


def feature_names(X):
    """Column names of a pandas DataFrame whose columns are all strings (as scikit-learn's
    feature_names_in_), else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = list(columns)
    if names and all(isinstance(n, str) for n in names):
        return np.asarray(names, dtype=object)
    return None


def as_matrix(X, name="X"):
    """X as a C-contiguous float64 array of shape (rows, cols). NaN (and pandas NA/None) means
    a missing value; the server handles it exactly, nothing is imputed here."""
    if hasattr(X, "to_numpy"):  # pandas DataFrame or Series
        X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        a = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError("%s: expected numbers (NaN for missing), %s" % (name, e)) from None
    if a.ndim == 1:
        raise ValueError("%s: expected a 2-D array (rows, features), got shape %s; reshape "
                         "with X.reshape(-1, 1) for a single feature" % (name, a.shape))
    if a.ndim != 2:
        raise ValueError("%s: expected a 2-D array, got %d dimensions" % (name, a.ndim))
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError("%s: expected at least one row and one column, got shape %s"
                         % (name, a.shape))
    return np.ascontiguousarray(a)


def as_weights(sample_weight, rows):
    """sample_weight as float64 of length rows, or None."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape[0] != rows:
        raise ValueError("sample_weight: expected %d values (one per row), got %d"
                         % (rows, w.shape[0]))
    return w


def as_lengths(lengths, rows, name="lengths"):
    """Sequence lengths (hmmlearn's `lengths`: consecutive sequences of rows) as uint64, each
    >= 1 and adding up to rows; None stays None (the rows are one sequence)."""
    if lengths is None:
        return None
    a = np.asarray(lengths)
    if a.ndim != 1 or a.size < 1:
        raise ValueError("%s: expected a 1-D list of sequence lengths, got shape %s"
                         % (name, a.shape))
    if not (np.issubdtype(a.dtype, np.integer) or
            (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a)))):
        raise ValueError("%s: expected integers, got %s" % (name, a.dtype))
    if a.min() < 1:
        raise ValueError("%s: sequence %d has length %d; every sequence needs at least one row"
                         % (name, int(np.argmin(a)), int(a.min())))
    a = a.astype(np.uint64)
    if int(a.sum()) != rows:
        raise ValueError("%s: the %d lengths add up to %d, but X has %d rows"
                         % (name, a.size, int(a.sum()), rows))
    return a


def shape_of(X, weights=None, names=None, newick=None, row_names=None, sequence_lengths=None):
    """The DataShape message of the data that stream_values and stream_texts send."""
    shape = pb.DataShape(rows=X.shape[0], cols=X.shape[1], weight_column=weights is not None)
    if sequence_lengths is not None:
        shape.num_sequences = len(sequence_lengths)
    if names is not None:
        shape.column_names.extend(str(n) for n in names)
    if newick:
        shape.newick_bytes = len(newick)
    if row_names is not None:
        shape.row_names = True
    return shape


def stream_texts(newick=None, row_names=None, chunk_bytes=DEFAULT_CHUNK_BYTES,
                 sequence_lengths=None):
    """Yields DataChunk messages of the streams besides the values: the sequence lengths,
    chunk_bytes of them per message (at least one), the Newick text (bytes) in pieces of
    chunk_bytes, then the row names, about chunk_bytes of them per message (at least one), as
    the CLI's ChunkCursor cuts them."""
    chunk_bytes = max(1, int(chunk_bytes))
    lengths = sequence_lengths if sequence_lengths is not None else ()
    per_message = max(1, chunk_bytes // 8)
    for start in range(0, len(lengths), per_message):
        piece = lengths[start:start + per_message]
        yield pb.DataChunk(sequence_lengths=[int(n) for n in piece])
    for start in range(0, len(newick or b""), chunk_bytes):
        yield pb.DataChunk(newick=newick[start:start + chunk_bytes])
    names, size = [], 0
    for name in row_names or ():
        names.append(name)
        size += len(name.encode()) + 2
        if size >= chunk_bytes:
            yield pb.DataChunk(row_names=names)
            names, size = [], 0
    if names:
        yield pb.DataChunk(row_names=names)


def stream_values(X, weights=None, chunk_bytes=DEFAULT_CHUNK_BYTES):
    """Yields DataChunk messages: the rows of X, row-major, each row followed by its weight
    when weights are given, at most chunk_bytes of doubles per message (a chunk need not end
    on a row boundary). Rows are converted a slice at a time, never the whole dataset twice."""
    per_message = max(1, int(chunk_bytes) // 8)
    per_row = X.shape[1] + (1 if weights is not None else 0)
    rows_per_slice = max(1, (4 << 20) // (8 * per_row))
    pending = np.empty(0)
    for start in range(0, X.shape[0], rows_per_slice):
        block = X[start:start + rows_per_slice]
        if weights is not None:
            block = np.column_stack([block, weights[start:start + rows_per_slice]])
        flat = np.concatenate([pending, block.ravel()]) if pending.size else block.ravel()
        whole = flat.size - flat.size % per_message
        for i in range(0, whole, per_message):
            yield pb.DataChunk(values=flat[i:i + per_message])
        pending = flat[whole:]
    if pending.size:
        yield pb.DataChunk(values=pending)


def matrix(a):
    """A Matrix message from a 1-D (a column) or 2-D array."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    return pb.Matrix(rows=a.shape[0], cols=a.shape[1], values=a.ravel())


def array(m, shape=None):
    """A Matrix message as a numpy array of shape (rows, cols), or the given shape."""
    a = np.asarray(m.values, dtype=np.float64)
    return a.reshape(shape if shape is not None else (m.rows, m.cols))


# Gaussian parameters (mixtures and Gaussian HMM emissions share the proto's layout).
COVARIANCE = {"full": pb.COVARIANCE_TYPE_FULL, "diag": pb.COVARIANCE_TYPE_DIAG,
              "tied": pb.COVARIANCE_TYPE_TIED, "spherical": pb.COVARIANCE_TYPE_SPHERICAL}
COVARIANCE_NAME = {v: k for k, v in COVARIANCE.items()}
COVARIANCE_NAME[pb.COVARIANCE_TYPE_UNSPECIFIED] = "full"


def covariances_array(m, covariance_type, k, d):
    """A covariances Matrix message as scikit-learn's covariances_: full (k, d, d), tied
    (d, d), diag (k, d), spherical (k,)."""
    return array(m, {"full": (k, d, d), "tied": (d, d), "diag": (k, d),
                     "spherical": (k,)}[covariance_type])


def covariances_matrix(covariances, covariance_type, k, d):
    """scikit-learn's covariances_ as the Matrix message: full (k*d) x d, tied d x d, diag
    k x d, spherical k x 1."""
    flat = {"full": (k * d, d), "tied": (d, d), "diag": (k, d), "spherical": (k, 1)}
    return matrix(np.asarray(covariances, dtype=np.float64).reshape(flat[covariance_type]))
