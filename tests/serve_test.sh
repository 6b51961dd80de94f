#!/bin/sh
# serve_test.sh — `tower serve` with curl and against the reference (tests/serve_test.py).
command -v python3 >/dev/null || { echo "python3 is needed (apt-get install python3)"; echo "0 passed, 1 failed"; exit 1; }
exec python3 "$(dirname "$0")/serve_test.py"
