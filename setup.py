"""The compiled build: `LEADPULSE_COMPILE=1` compiles the pure core (`leadpulse.scoring`) and
the event validation (`leadpulse.schemas`) with mypyc, about twice as fast per event
(bench/README.md). `make setup` makes it (`python -m leadpulse.core build`, docs/compiled.md)
and the `leadpulse` command runs it. Everything else about the package is in pyproject.toml;
without the variable the wheel is pure Python, the reference the test suite runs."""

import os
from pathlib import Path

from setuptools import setup

COMPILED_PACKAGES = ("leadpulse/scoring", "leadpulse/schemas")


def compiled_modules() -> list[object]:
    if os.environ.get("LEADPULSE_COMPILE") != "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit(
            "LEADPULSE_COMPILE=1 needs mypy in the build environment: "
            'pip install "setuptools>=68" wheel mypy==2.4.1, then pip install --no-build-isolation ...'
        ) from None

    sources = sorted(str(path) for package in COMPILED_PACKAGES for path in Path(package).glob("*.py"))
    return list(mypycify(sources, opt_level="3", group_name="leadpulse"))


setup(ext_modules=compiled_modules())
