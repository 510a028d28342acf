#!/bin/sh
# Build the benchmark venvs (bench/.venvs/) and Truss build contexts (bench/.cache/); idempotent.
set -eu
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/run.py --setup "$@"
