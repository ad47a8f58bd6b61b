#!/usr/bin/env bash
# `make compat`: a throwaway venv at each end of the ranges in pyproject.toml, the package installed
# into it (not editable) with the dev extra, then the tests marked `compat` run in it.
#   lowest:  every range at its lower bound (requirements/compat-lowest.txt as constraints)
#   highest: the newest release each range allows (pip install --upgrade, no constraints)
# Usage: scripts/compat.sh [lowest] [highest]   (COMPAT_DIR: where the venvs go, default
# /tmp/compat-venvs; a venv already there is reused and brought to its end again).
# Prints one Markdown table row per end: the versions installed and the pytest outcome.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${COMPAT_DIR:-/tmp/compat-venvs}
PYTHON=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg PYTHONUNBUFFERED=1
PACKAGES="torch torchvision timm keras tensorflow-cpu jax numpy scipy pandas h5py protobuf ml-dtypes scikit-image"
status=0
rows=()
ends=("$@")
[ ${#ends[@]} -gt 0 ] || ends=(lowest highest)
for end in "${ends[@]}"; do
  case $end in
    lowest) options=(-c requirements/compat-lowest.txt) ;;
    highest) options=(--upgrade --upgrade-strategy eager) ;;
    *) echo "compat: unknown end '$end' (lowest or highest)" >&2; exit 2 ;;
  esac
  venv=$DIR/$end
  mkdir -p "$DIR"
  test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv" || exit 1
  echo "== $end: installing into $venv" >&2
  "$venv/bin/pip" install --quiet "${options[@]}" '.[dev]' >&2 || { echo "compat: $end: install failed" >&2; exit 1; }
  versions=$("$venv/bin/python" - $PACKAGES <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
def get(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"
print(" | ".join([sys.version.split()[0]] + [get(name) for name in sys.argv[1:]]))
PY
)
  log=$DIR/$end.log
  "$venv/bin/python" -m pytest -q -m compat -p no:cacheprovider >"$log" 2>&1
  code=$?
  outcome=$(tail -n 1 "$log" | sed 's/=//g; s/^ *//; s/ *$//')
  [ $code -eq 0 ] || status=1
  echo "== $end: $outcome (log: $log)" >&2
  rows+=("| $end | $versions | $outcome |")
done
echo "| end | python | ${PACKAGES// / | } | compat tests |"
echo "|---|---|$(printf -- '---|%.0s' $PACKAGES)---|"
printf '%s\n' "${rows[@]}"
exit $status
