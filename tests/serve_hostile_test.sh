#!/bin/sh
# serve_hostile_test.sh — hostile clients against `tower serve` (tests/serve_hostile_test.py).
command -v python3 >/dev/null || { echo "python3 is needed (apt-get install python3)"; echo "0 passed, 1 failed"; exit 1; }
exec python3 "$(dirname "$0")/serve_hostile_test.py"
