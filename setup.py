"""Setuptools shim: the metadata is in setup.cfg.

It exists only because ``twisted/plugins`` must be listed as a package
*without* an ``__init__.py`` (Twisted's plugin convention), which
``setup.cfg``'s ``find:`` cannot express.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["bipgw", "bipgw.*", "simcard", "simcard.*"])
    + ["twisted.plugins"],
)
