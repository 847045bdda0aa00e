"""Writes the seed corpora of the libFuzzer targets (tests/fuzz/corpus/<target>/): valid and
nearly valid inputs for each, from which the fuzzers mutate. Run with Debian's python3 and the
build's Python package: PYTHONPATH=build/client/python /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import json
import os
import sys

from emfit.v1 import emfit_pb2 as pb

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    path = os.path.join(HERE, "corpus", target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def requests():
    shape = pb.DataShape(rows=12, cols=2, column_names=["a", "b"])
    gmm = pb.ModelSpec(gmm=pb.GaussianMixtureSpec(k=2, covariance_type=pb.COVARIANCE_TYPE_FULL))
    fit = pb.FitHeader(spec=gmm, shape=shape, options=pb.FitOptions(n_init=2, max_iter=3))
    write("fuzz_requests", "fit_gmm", b"\x00" + fit.SerializeToString())
    weighted = pb.FitHeader(spec=pb.ModelSpec(gmm=pb.GaussianMixtureSpec(
        k=3, covariance_type=pb.COVARIANCE_TYPE_TIED)),
        shape=pb.DataShape(rows=20, cols=3, weight_column=True))
    write("fuzz_requests", "fit_gmm_weighted", b"\x00" + weighted.SerializeToString())
    for name, emission, cols in (("gaussian", pb.EMISSION_TYPE_GAUSSIAN, 2),
                                 ("categorical", pb.EMISSION_TYPE_CATEGORICAL, 1),
                                 ("poisson", pb.EMISSION_TYPE_POISSON, 2)):
        spec = pb.HiddenMarkovModelSpec(k=2, emission=emission)
        if emission == pb.EMISSION_TYPE_CATEGORICAL:
            spec.n_symbols = 4
        h = pb.FitHeader(spec=pb.ModelSpec(hmm=spec),
                         shape=pb.DataShape(rows=16, cols=cols, num_sequences=3),
                         options=pb.FitOptions(max_iter=3))
        write("fuzz_requests", "fit_hmm_" + name, b"\x00" + h.SerializeToString())
    mk = pb.FitHeader(spec=pb.ModelSpec(mk=pb.MkSpec(state_names=["x", "y"],
                                                      rate_model=pb.RATE_MODEL_ARD)),
                      shape=pb.DataShape(rows=3, cols=2, newick_bytes=30, row_names=True))
    write("fuzz_requests", "fit_mk", b"\x00" + mk.SerializeToString())
    model = pb.Model(gmm=pb.GaussianMixture(
        weights=[0.5, 0.5],
        means=pb.Matrix(rows=2, cols=2, values=[0, 0, 3, 3]),
        covariances=pb.Matrix(rows=4, cols=2, values=[1, 0, 0, 1, 2, 0.5, 0.5, 1]),
        covariance_type=pb.COVARIANCE_TYPE_FULL))
    post = pb.PosteriorHeader(model=model, shape=pb.DataShape(rows=10, cols=2))
    write("fuzz_requests", "posterior_gmm", b"\x01" + post.SerializeToString())
    hmm = pb.Model(hmm=pb.HiddenMarkovModel(
        startprob=[0.5, 0.5], transmat=pb.Matrix(rows=2, cols=2, values=[0.9, 0.1, 0.2, 0.8]),
        poisson=pb.PoissonEmissions(rates=pb.Matrix(rows=2, cols=1, values=[1, 5]))))
    post = pb.PosteriorHeader(model=hmm, shape=pb.DataShape(rows=10, cols=1, num_sequences=2))
    write("fuzz_requests", "posterior_hmm", b"\x01" + post.SerializeToString())
    select = pb.SelectModelHeader(k=[1, 2, 3], covariance_types=[pb.COVARIANCE_TYPE_DIAG],
                                  shape=pb.DataShape(rows=30, cols=2))
    write("fuzz_requests", "select_gmm", b"\x02" + select.SerializeToString())
    mkmodel = pb.Model(mk=pb.MkModel(state_names=["x", "y"],
                                     q=pb.Matrix(rows=2, cols=2, values=[-1, 1, 1, -1]),
                                     index=pb.Matrix(rows=2, cols=2, values=[0, 1, 1, 0])))
    hist = pb.SampleHistoriesHeader(model=mkmodel, n=3, seed=1,
                                    shape=pb.DataShape(rows=3, cols=2, newick_bytes=30,
                                                       row_names=True))
    write("fuzz_requests", "histories_mk", b"\x03" + hist.SerializeToString())


def csv():
    with open(os.path.join(REPO, "data", "faithful.csv"), "rb") as f:
        faithful = b"".join(f.readlines()[:8])
    write("fuzz_csv", "faithful", b"\x00" + faithful)
    write("fuzz_csv", "semicolon", b"\x05" + faithful.replace(b",", b";"))
    write("fuzz_csv", "text_columns", b"\x10id,x,w\na,1,2\na,,3\n\"b c\",NA,1\r\n")
    write("fuzz_csv", "symbols", b"\x50seq,sym\ns1,rain\ns1,sun\ns2,\n")
    write("fuzz_csv", "tips", b"\x91taxon,state\nahli,TG\nalu,CG|TC\nx,?\n")


def newick():
    with open(os.path.join(REPO, "data", "anole_tree.nwk"), "rb") as f:
        write("fuzz_newick", "anoles", f.read())
    write("fuzz_newick", "small", b"((a:1,b:2)x:0.5,'c d':0[comment]);")
    write("fuzz_newick", "unary_polytomy", b"(((a:1):1,b:0,c:3):1,d:2);")


if __name__ == "__main__":
    requests()
    csv()
    newick()
    sys.exit(0)
