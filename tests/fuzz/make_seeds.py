"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): well-formed
requests of every method and model family (headers alone for request_headers; whole request
streams for upload), tables for csv and trees for newick, from which libFuzzer's mutations start.
Deterministic (seeded); the requests are cut into chunks by the Python package's own streaming
functions, as a client sends them.

Run from the repository root with Debian's Python and the build's package:
  PYTHONPATH=build/client/python /usr/bin/python3 tests/fuzz/make_seeds.py"""
import os
import sys

import numpy as np

from emfit import _data
from emfit.v1 import emfit_pb2 as pb

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
FIT, POSTERIOR, SCORE, SELECT, HISTORIES = range(5)  # upload_fuzz.cc's method byte
REQUEST = {FIT: pb.FitRequest, POSTERIOR: pb.PosteriorRequest, SCORE: pb.PosteriorRequest,
           SELECT: pb.SelectModelRequest, HISTORIES: pb.SampleHistoriesRequest}
HEADER_KIND = {FIT: 0, POSTERIOR: 1, SCORE: 1, SELECT: 2, HISTORIES: 3}  # request_headers'


def matrix(a):
    a = np.atleast_2d(np.asarray(a, dtype=float))
    return pb.Matrix(rows=a.shape[0], cols=a.shape[1], values=a.ravel())


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def write(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data)


def request(name, method, header, X, chunk_bytes=160, **streams):
    """Writes the header (request_headers) and the whole request stream (upload)."""
    header.shape.CopyFrom(_data.shape_of(X, **streams))
    if method != SCORE:  # a Score header is a Posterior header
        write("request_headers", name, bytes([HEADER_KIND[method]]) + header.SerializeToString())
    weights = streams.pop("weights", None)
    streams.pop("names", None)
    Request = REQUEST[method]
    messages = [Request(header=header)]
    messages += [Request(chunk=c) for c in _data.stream_texts(chunk_bytes=chunk_bytes, **streams)]
    messages += [Request(chunk=c) for c in _data.stream_values(X, weights, chunk_bytes)]
    write("upload", name, bytes([method]) + b"".join(
        varint(m.ByteSize()) + m.SerializeToString() for m in messages))


def main():
    rng = np.random.RandomState(7)
    # Gaussian mixtures: two clusters in two dimensions.
    x = np.vstack([rng.normal(0, 1, (20, 2)), rng.normal(4, 1, (20, 2))])
    missing = x.copy()
    missing[3, 1] = missing[25, 0] = np.nan
    gmm = pb.GaussianMixture(covariance_type=pb.COVARIANCE_TYPE_FULL, weights=[0.5, 0.5],
                             means=matrix([[0, 0], [4, 4]]),
                             covariances=matrix(np.vstack([np.eye(2), np.eye(2)])))
    for cov in (pb.COVARIANCE_TYPE_FULL, pb.COVARIANCE_TYPE_DIAG, pb.COVARIANCE_TYPE_TIED,
                pb.COVARIANCE_TYPE_SPHERICAL):
        spec = pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2, covariance_type=cov))
        request("fit_gmm_%d" % cov, FIT, pb.FitHeader(spec=spec, options=pb.FitOptions(
            n_init=2, seed=cov, max_iter=10)), x)
    request("fit_gmm_missing_weighted_squarem", FIT, pb.FitHeader(
        spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2, init=pb.INIT_METHOD_RANDOM)),
        options=pb.FitOptions(acceleration=pb.ACCELERATION_SQUAREM, max_iter=10)), missing,
        weights=np.linspace(0.5, 2, 40), names=["a", "b"])
    request("fit_gmm_warm_start_fixed_means", FIT, pb.FitHeader(
        spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2, fix_means=True)),
        init=pb.Model(gmm=gmm), options=pb.FitOptions(max_iter=5)), x)
    request("posterior_gmm", POSTERIOR, pb.PosteriorHeader(model=pb.Model(gmm=gmm)), missing)
    request("score_gmm", SCORE, pb.PosteriorHeader(model=pb.Model(gmm=gmm)), x,
            weights=np.ones(40))
    request("select_gmm", SELECT, pb.SelectModelHeader(
        gmm=pb.GaussianMixtureSpec(), k=[1, 2], covariance_types=[
            pb.COVARIANCE_TYPE_FULL, pb.COVARIANCE_TYPE_DIAG], options=pb.FitOptions(max_iter=5),
        criterion=pb.CRITERION_AIC), x)

    # Hidden Markov models: two sequences of a two-state chain.
    states = np.concatenate([np.repeat([0, 1, 0], [6, 8, 6]), np.repeat([1, 0], [10, 10])])
    lengths = np.array([20, 20], dtype=np.uint64)
    gauss = (states * 3.0 + rng.normal(0, 1, 40))[:, None]
    symbols = ((states * 2 + rng.randint(0, 2, 40)) % 3).astype(float)[:, None]
    counts = rng.poisson(1 + 4 * states).astype(float)[:, None]
    transmat = matrix([[0.9, 0.1], [0.2, 0.8]])
    hmm_models = {
        "gaussian": pb.HiddenMarkovModel(startprob=[0.5, 0.5], transmat=transmat,
                                         gaussian=pb.GaussianEmissions(
                                             covariance_type=pb.COVARIANCE_TYPE_DIAG,
                                             means=matrix([[0], [3]]),
                                             covariances=matrix([[1], [1]]))),
        "categorical": pb.HiddenMarkovModel(startprob=[0.5, 0.5], transmat=transmat,
                                            categorical=pb.CategoricalEmissions(
                                                probabilities=matrix([[0.5, 0.3, 0.2],
                                                                      [0.2, 0.3, 0.5]]),
                                                symbols=["x", "y", "z"])),
        "poisson": pb.HiddenMarkovModel(startprob=[0.5, 0.5], transmat=transmat,
                                        poisson=pb.PoissonEmissions(rates=matrix([[1], [5]]))),
    }
    emissions = {"gaussian": (pb.EMISSION_TYPE_GAUSSIAN, gauss),
                 "categorical": (pb.EMISSION_TYPE_CATEGORICAL, symbols),
                 "poisson": (pb.EMISSION_TYPE_POISSON, counts)}
    for name, (emission, data) in emissions.items():
        spec = pb.HiddenMarkovModelSpec(k=2, emission=emission)
        if name == "categorical":
            spec.n_symbols = 3
            spec.symbols.extend(["x", "y", "z"])
        request("fit_hmm_" + name, FIT, pb.FitHeader(spec=pb.ModelSpec(hmm=spec),
                                                     options=pb.FitOptions(max_iter=10)),
                data, sequence_lengths=lengths)
        model = pb.Model(hmm=hmm_models[name])
        request("posterior_hmm_" + name, POSTERIOR, pb.PosteriorHeader(model=model), data,
                sequence_lengths=lengths)
        request("score_hmm_" + name, SCORE, pb.PosteriorHeader(model=model), data,
                sequence_lengths=lengths)
    left_right = pb.HiddenMarkovModel()
    left_right.CopyFrom(hmm_models["gaussian"])
    left_right.startprob[:] = [1, 0]
    left_right.transmat.CopyFrom(matrix([[0.9, 0.1], [0, 1]]))
    request("fit_hmm_left_right_warm", FIT, pb.FitHeader(
        spec=pb.ModelSpec(hmm=pb.HiddenMarkovModelSpec(
            k=2, covariance_type=pb.COVARIANCE_TYPE_DIAG,
            allowed_transitions=matrix([[1, 1], [0, 1]]), allowed_start=[1, 0])),
        init=pb.Model(hmm=left_right), options=pb.FitOptions(max_iter=5)),
        gauss, sequence_lengths=lengths)

    # Mk models: six tips, two states (one tip ambiguous, one missing).
    newick = b"((a:1,b:0.5):1,((c:0.2,d:0.3):0.4,(e:1,f:2):0.1):0.5);"
    tips = ["a", "b", "c", "d", "e", "f"]
    likelihoods = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 1], [0, 1]], dtype=float)
    mk = pb.MkModel(state_names=["0", "1"], q=matrix([[-0.5, 0.5], [0.3, -0.3]]),
                    index=matrix([[0, 1], [2, 0]]), root=pb.ROOT_PRIOR_EQUAL)
    texts = dict(newick=newick, row_names=tips)
    for rate in (pb.RATE_MODEL_ER, pb.RATE_MODEL_ARD):
        request("fit_mk_%d" % rate, FIT, pb.FitHeader(spec=pb.ModelSpec(mk=pb.MkSpec(
            state_names=["0", "1"], rate_model=rate, root=pb.ROOT_PRIOR_STATIONARY)),
            options=pb.FitOptions(max_iter=10)), likelihoods, **texts)
    request("fit_mk_monte_carlo", FIT, pb.FitHeader(spec=pb.ModelSpec(mk=pb.MkSpec(
        state_names=["0", "1"], rate_model=pb.RATE_MODEL_ARD, estep=pb.E_STEP_METHOD_MONTE_CARLO,
        mcem=pb.McemOptions(initial_sample_size=5, max_sample_size=20))),
        options=pb.FitOptions(max_iter=3, seed=3)), likelihoods, **texts)
    request("posterior_mk", POSTERIOR, pb.PosteriorHeader(model=pb.Model(mk=mk)), likelihoods,
            **texts)
    request("score_mk", SCORE, pb.PosteriorHeader(model=pb.Model(mk=mk)), likelihoods, **texts)
    request("select_mk", SELECT, pb.SelectModelHeader(
        spec=pb.ModelSpec(mk=pb.MkSpec(state_names=["0", "1"])),
        rate_models=[pb.RATE_MODEL_ER, pb.RATE_MODEL_ARD], options=pb.FitOptions(max_iter=5)),
        likelihoods, **texts)
    for sampler in (pb.PATH_SAMPLER_AUTO, pb.PATH_SAMPLER_UNIFORMIZATION):
        request("histories_mk_%d" % sampler, HISTORIES, pb.SampleHistoriesHeader(
            model=pb.Model(mk=mk), n=2, seed=1, sampler=sampler), likelihoods, **texts)

    # CSV: the first two bytes are csv_fuzz.cc's options (0, 0: commas, header auto, numeric).
    tables = {
        "plain": b"a,b\n1,2\n3.5,-4e3\n",
        "missing_crlf": b"x,y,z\r\n1,NA,3\r\n,2,nan\r\n\r\n4,5,6\r\n",
        "no_header": b"1,2\n3,4\n",
        "quoted_like": b"\"a\",b\n1,\"2\"\n",
        "ragged": b"a,b\n1,2,3\n4\n",
    }
    for name, text in tables.items():
        write("csv", name, b"\x00\x00" + text)
    write("csv", "tabs_text_column", b"\x01\x10" + b"id\tv\tw\nr1\t1\t2\nr2\t3\t4\n")
    write("csv", "semicolons_columns", b"\x02\x01" + b"a;b;c\n1;2;3\n")
    write("csv", "tips_states", b"\x20\x20" + b"id,4,state\nx,1,A\ny,2,B\n")

    # Newick: besides tests/fixtures/newick_corpus (also given to the fuzzer).
    trees = {
        "anoles_like": newick,
        "polytomy_unary": b"((a:1,b:1,c:1):0.5,(d:1):1)root:0;",
        "quoted_comments": b"('a b':1,[comment]'c''d':2.5e-1)'x':3;",
        "underscores_exponents": b"(a_1:1E2,b_2:0.0,(c:1e-300,d:7):3);",
    }
    for name, text in trees.items():
        write("newick", name, text)


if __name__ == "__main__":
    sys.exit(main())
