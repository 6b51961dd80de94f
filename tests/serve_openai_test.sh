#!/bin/sh
# serve_openai_test.sh — the official OpenAI Node SDK against `tower serve` (tests/serve_openai_test.py).
command -v python3 >/dev/null || { echo "python3 is needed (apt-get install python3)"; echo "0 passed, 1 failed"; exit 1; }
exec python3 "$(dirname "$0")/serve_openai_test.py"
