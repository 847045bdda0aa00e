"""Builds the emfit package; the protocol modules emfit/v1 are generated into the build
directory by generate.py (Debian's protoc and grpc_python_plugin), never into the source."""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402


class BuildWithProtocol(build_py):
    def run(self):
        super().run()
        if not self.dry_run:
            generate.generate(self.build_lib)


setup(cmdclass={"build_py": BuildWithProtocol})
