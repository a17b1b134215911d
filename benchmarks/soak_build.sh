#!/usr/bin/env bash
# Issue #27's "done when": full builds in a row on a fresh clone, each with the test suite running
# beside it (the load under which lecture 09 once hung). Prints each build's per-lecture table
# (benchmarks/bench_build.py) and whether any notebook failed, hung or needed a recovered reply.
#
#   bash benchmarks/soak_build.sh [N_BUILDS=3] [WORKDIR=/tmp/xaicourse-soak]
#
# The clone gets its own venv (the README's install) and its own model cache, so nothing warm from
# this checkout helps it. The suite runs in a loop (CI=true, as .ci/run) until the last build ends.
set -uo pipefail
n=${1:-3}
work=${2:-/tmp/xaicourse-soak}
src=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$work" && mkdir -p "$work"
git clone -q "$src" "$work/clone"
cd "$work/clone"
export XAICOURSE_CACHE="$work/cache"
python3.11 -m venv .venv && .venv/bin/pip install -q -e ".[test]" >"$work/pip.log" 2>&1 || { echo "install failed"; exit 2; }

# the suite, beside the builds, in a loop (its own model cache: it must not warm the builds')
( i=0
  while [ ! -e "$work/stop" ]; do
    i=$((i + 1))
    start=$(date +%s)
    CI=true XAICOURSE_CACHE="$work/suite-cache" .venv/bin/python -m pytest -q -p no:cacheprovider \
      >"$work/suite-$i.log" 2>&1
    echo "suite run $i: exit $? in $(( $(date +%s) - start )) s ($(tail -1 "$work/suite-$i.log"))" >>"$work/suites.txt"
  done ) &
suite_pid=$!

status=0
for b in $(seq 1 "$n"); do
  start=$(date +%s)
  echo "== build $b of $n (suite running beside it), $(date -u +%H:%M:%S)"
  .venv/bin/python benchmarks/bench_build.py --log "$work/build-$b.log" --out "$work/site-$b" | tee "$work/table-$b.txt"
  rc=${PIPESTATUS[0]}
  echo "build $b: exit $rc, $(( $(date +%s) - start )) s wall; recovered replies: $(grep -c 'reply never arrived' "$work/build-$b.log")"
  [ "$rc" = 0 ] || status=1
done
touch "$work/stop"
echo "suite runs so far (the one in progress is left to finish):"
cat "$work/suites.txt" 2>/dev/null
exit $status
