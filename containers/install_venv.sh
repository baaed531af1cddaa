#!/bin/sh
# Build stage only: make /opt/venv for one role (algorithm | monitor) from requirements/runtime-<role>.txt, then
# strip it to what runs. Only /opt/venv leaves the build stage.
#
# With a wheelhouse (scripts/wheelhouse.sh) the install is offline and pinned to its constraints.txt; without one
# pip uses the index (PIP_INDEX_URL).
set -eu
role=$1
build=/tmp/build
site=/opt/venv/lib/python3.11/site-packages

if ls "$build"/wheelhouse/*.whl >/dev/null 2>&1; then
    set -- --no-index --find-links "$build/wheelhouse" -c "$build/wheelhouse/constraints.txt"
else
    set --
fi
python3 -m venv /opt/venv
pip() { PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/venv/bin/pip --no-cache-dir --disable-pip-version-check "$@"; }
pip install "$@" -r "$build/runtime-$role.txt"
if [ -f "$build/runtime-$role-nodeps.txt" ]; then
    pip install "$@" --no-deps -r "$build/runtime-$role-nodeps.txt"
fi

case $role in
algorithm)
    # xgboost imports scipy.sparse at import time, and scipy.sparse loads scipy.special (with scipy's OpenBLAS):
    # keep what that import loads, drop the other 55 MB of scipy (stats, optimize, linalg, ...), never imported here.
    for path in "$site"/scipy/*/ "$site"/scipy/sparse/linalg "$site"/scipy/sparse/csgraph; do
        case ${path%/} in
        */scipy/_lib | */scipy/sparse | */scipy/special | */scipy/__pycache__) ;;
        *) rm -rf "$path" ;;
        esac
    done
    check='import flask, gunicorn, orjson, numpy, pandas, fastparquet, xgboost, xgboost.collective, xgboost.tracker
import scipy.sparse, sagemaker_training.environment'
    ;;
monitor)
    check='import numpy, pandas, pyarrow.compute, pyarrow.csv, pyarrow.json, pyarrow.parquet, datasketches'
    ;;
*)
    echo "install_venv: unknown role '$role' (algorithm | monitor)" >&2
    exit 2
    ;;
esac

# What only serves building or testing the libraries (test suites: pandas alone ships 46 MB; C headers and
# sources) and installing them (pip, setuptools): dead weight at run time.
find "$site" -depth -type d -name tests -exec rm -rf {} +
find "$site" -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cc' -o -name '*.cpp' \
    -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete
pip uninstall --yes --quiet pip setuptools wheel
rm -f /opt/venv/bin/pip* /opt/venv/bin/easy_install* /opt/venv/bin/wheel
# The role's imports work (and their bytecode, compiled by pip, is in place: the root is read-only at run time).
# sagemaker_training creates /opt/ml/code on import: only in this stage, which is not shipped.
/opt/venv/bin/python -c "$check"
