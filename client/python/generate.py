#!/usr/bin/python3
"""Generates the emfit.v1 protocol modules (emfit/v1/emfit_pb2.py, emfit_pb2_grpc.py) from
proto/emfit/v1/emfit.proto with Debian's protoc and grpc_python_plugin (protobuf-compiler-grpc).

The one generator of the Python package: CMake runs it into the build tree, setup.py into the
wheel. Usage (from a checkout):

    /usr/bin/python3 client/python/generate.py --out=DIR   # writes DIR/emfit/v1/*.py
"""
import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTO = "emfit/v1/emfit.proto"


def generate(out, proto_root=DEFAULT_PROTO_ROOT, protoc=None, plugin=None):
    """Writes out/emfit/v1/{__init__,emfit_pb2,emfit_pb2_grpc}.py; raises RuntimeError with
    what is missing."""
    protoc = protoc or shutil.which("protoc")
    plugin = plugin or shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise RuntimeError(
            "generating emfit.v1 needs protoc and grpc_python_plugin "
            "(Debian: apt-get install protobuf-compiler protobuf-compiler-grpc)")
    source = os.path.join(proto_root, PROTO)
    if not os.path.exists(source):
        raise RuntimeError("cannot find %s (run from a checkout of emfit)" % source)
    package = os.path.join(out, "emfit", "v1")
    os.makedirs(package, exist_ok=True)
    subprocess.run([protoc, "--plugin=protoc-gen-grpc_python=" + plugin, "-I" + proto_root,
                    "--python_out=" + out, "--grpc_python_out=" + out, source], check=True)
    with open(os.path.join(package, "__init__.py"), "w") as f:
        f.write('"""emfit.v1: generated from proto/emfit/v1/emfit.proto."""\n')
    return package


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory that receives emfit/v1/")
    parser.add_argument("--proto_root", default=DEFAULT_PROTO_ROOT)
    parser.add_argument("--protoc", default=None)
    parser.add_argument("--plugin", default=None, help="grpc_python_plugin")
    args = parser.parse_args()
    try:
        generate(args.out, args.proto_root, args.protoc, args.plugin)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        sys.exit("generate.py: %s" % e)


if __name__ == "__main__":
    main()
