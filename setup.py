"""Package discovery for setuptools; everything else is declared in pyproject.toml.

The import packages live in three folders: ``export/lpips_export``, ``runtime/lpips_runtime`` (with
subpackages) and ``models/`` (the data package ``lpips_rt_models``). pyproject's ``packages.find``
cannot give ``models/`` its import name, so the packages are found here, by walking the folders:
a new subpackage ships without a list to update (tests/test_packaging.py checks the wheel).
"""
from setuptools import find_packages, setup

package_dir = {"lpips_rt_models": "models"}
for root in ("export", "runtime"):
    for package in find_packages(root):
        package_dir[package] = f"{root}/{package.replace('.', '/')}"

setup(packages=sorted(package_dir), package_dir=package_dir)
