"""Packaging lives in pyproject.toml; this shim lets `python setup.py develop` and older tools install it too."""

from setuptools import setup

setup()
