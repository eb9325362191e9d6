#!/usr/bin/env bash
# The tools `make test` checks the deploy files with, installed once per machine:
#   ops-tools.sh prometheus   prometheus + promtool: Debian's `prometheus` package (root and apt-get)
# Where a tool cannot be installed this prints one line and exits 0: the tests that need it
# then skip, each with one line saying what is missing.
set -euo pipefail

prometheus() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ops-tools: prometheus not installed (needs root and apt-get: apt-get install prometheus); its tests skip" >&2
    return 0
  fi
  # --no-install-recommends: the node exporter and the other recommended packages are not needed
  if ! { apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
         || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; }; then
    echo "ops-tools: apt-get could not install prometheus; its tests skip" >&2
  fi
}

case "${1:-}" in
  prometheus) prometheus ;;
  *) echo "usage: $0 prometheus" >&2; exit 2 ;;
esac
