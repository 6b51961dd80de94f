#!/bin/sh
# setup.sh — set up towervision on a fresh Debian/Ubuntu machine and run the main job.
#   1. installs the build dependencies with apt-get (sudo only when not root; skipped when present)
#   2. builds the library and the `tower` program (make)
#   3. translates a sentence: with the tiny test checkpoint in ../shared/fixtures/tiny-towervision
#      (random weights: the "translation" is gibberish, it proves the pipeline runs), or with a
#      real model when MODEL is set, e.g. MODEL=utter-project/TowerVision-2B ./setup.sh
# Safe to run again: installed packages and an up-to-date build are left alone.
# Environment: MODEL (checkpoint dir or org/name), TEXT (sentence), TO (target language, default de).
set -eu
cd "$(dirname "$0")"

PKGS="build-essential pkg-config libjansson-dev libcurl4-openssl-dev libmicrohttpd-dev
      libjpeg62-turbo-dev libpng-dev libwebp-dev libgif-dev libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
      python3 curl"
# The server's tests also drive it with the official OpenAI Node SDK: Node and npm, unless a Node is
# already there (NodeSource's nodejs bundles npm and conflicts with Debian's npm package).
command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

say() { printf '\n== %s\n' "$*"; }

say "1/3 Debian packages: $PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "all installed"
else
    echo "installing:$missing"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup.sh: apt-get not found; install the equivalents of:$missing" >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "setup.sh: not root and no sudo: run as root" >&2; exit 1; }
        SUDO=sudo
    fi
    $SUDO apt-get update
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
fi

say "2/3 build (make)"
make -j"$(nproc 2>/dev/null || echo 2)"

say "3/3 translate"
MODEL=${MODEL:-}
TEXT=${TEXT:-The weather is lovely today, let us walk to the river.}
TO=${TO:-de}
if [ -z "$MODEL" ]; then
    MODEL=../shared/fixtures/tiny-towervision
    if [ ! -d "$MODEL" ]; then
        echo "setup.sh: no model: $MODEL is missing; set MODEL=dir or MODEL=org/name" >&2
        exit 1
    fi
    echo "model: $MODEL (tiny random-weight test checkpoint: expect gibberish; set MODEL=utter-project/TowerVision-2B for a real one)"
    N="-n 24"
else
    echo "model: $MODEL"
    N=""
fi
echo "source ($TO): $TEXT"
echo "output:"
# shellcheck disable=SC2086
./build/tower translate -m "$MODEL" --from en --to "$TO" -p "$TEXT" $N
say "done. Next: 'make check' runs every test (normal build and ASan+UBSan); see README.md"
