#!/usr/bin/env bash
# Fill containers/wheelhouse/ with every wheel the images need, so `docker build` installs offline
# (pip install --no-index): for machines whose pip cannot reach an index from inside a build (TLS-intercepting
# proxies, air-gapped builders). Runs on the host, with the host's pip, index settings and trust store.
#
# Versions: requirements/runtime.txt pins the direct dependencies, requirements/constraints.txt (scripts/lock.sh)
# every transitive one, the same lock `make setup` installs the venv with: the image runs the versions the tests ran.
# Two requirements exist only as sdists (sagemaker-training, with a small C extension, and inotify_simple): their
# wheels are built here (needs gcc and the Python 3.11 headers; build on Linux x86_64 with Python 3.11, the same
# as the image's Debian bookworm), so the image needs no compiler.
#
# Environment: PYTHON (default .venv/bin/python), PIP_INDEX_URL etc. as for pip.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
WHEELS=$REPO/containers/wheelhouse
REQUIREMENTS=$REPO/requirements/runtime.txt

log() { echo "wheelhouse: $*" >&2; }
die() {
    echo "wheelhouse: error: $*" >&2
    exit 1
}

[[ -x $PYTHON ]] || die "$PYTHON not found: run make setup (or set PYTHON)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
    die "$PYTHON is not Python 3.11 (the image's Debian bookworm Python); wheels would not match"
mkdir -p "$WHEELS"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp "$REPO/requirements/constraints.txt" "$TMP/constraints.txt"
PIP=("$PYTHON" -m pip --disable-pip-version-check)

# Resolve the whole closure once, as a fresh install would, and split it into what the index has as wheels and
# what only exists as an sdist.
log "resolving $(basename "$REQUIREMENTS")"
"${PIP[@]}" install --quiet --dry-run --ignore-installed --report "$TMP/report.json" \
    -r "$REQUIREMENTS" -c "$TMP/constraints.txt" >&2
"$PYTHON" - "$TMP" <<'PY'
import json
import sys

tmp = sys.argv[1]
pins = {"wheels": [], "sdists": []}
for item in json.load(open(f"{tmp}/report.json"))["install"]:
    kind = "wheels" if item["download_info"]["url"].endswith(".whl") else "sdists"
    pins[kind].append(f"{item['metadata']['name']}=={item['metadata']['version']}\n")
for kind, lines in pins.items():
    open(f"{tmp}/{kind}.txt", "w").writelines(lines)
PY

# Binary wheels for the image's platform (glibc 2.36, x86_64, CPython 3.11), whatever the host is.
log "downloading $(wc -l <"$TMP/wheels.txt") wheels"
"${PIP[@]}" download --quiet --no-deps --dest "$WHEELS" \
    --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 --platform manylinux_2_5_x86_64 \
    --platform manylinux1_x86_64 --platform any \
    -r "$TMP/wheels.txt" >&2

# sdists: built once; a wheel already in the wheelhouse is kept.
while read -r pin; do
    name=$(echo "${pin%%==*}" | tr '.-' '__')
    if compgen -G "$WHEELS/${name}-${pin##*==}-*.whl" >/dev/null; then
        log "$pin: wheel already built"
    else
        log "$pin: building the wheel from its sdist"
        "${PIP[@]}" wheel --quiet --no-deps --no-binary "${pin%%==*}" -w "$WHEELS" "$pin" >&2
    fi
done <"$TMP/sdists.txt"

# The closure as a constraints file for the image's pip (so it cannot pick another version of anything), and no
# stale wheels from earlier pins left to bloat the build context.
cat "$TMP/wheels.txt" "$TMP/sdists.txt" >"$WHEELS/constraints.txt"
"$PYTHON" - "$WHEELS" <<'PY'
import pathlib
import re
import sys

wheels = pathlib.Path(sys.argv[1])
norm = lambda name: re.sub(r"[-_.]+", "_", name).lower()  # noqa: E731
pins = {tuple(norm(part) for part in line.split("==")) for line in (wheels / "constraints.txt").read_text().split()}
for wheel in wheels.glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    if (norm(name), norm(version)) not in pins:
        print(f"wheelhouse: removing stale {wheel.name}", file=sys.stderr)
        wheel.unlink()
PY
log "$(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1) in $WHEELS"
