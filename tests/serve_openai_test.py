"""serve_openai_test.py — the official OpenAI Node SDK (npm package `openai`, pinned in
tests/openai/package.json and its lock) against `tower serve` on the tiny checkpoint: chat, a
stream with usage, an image part, logprobs, completions with echo + prompt logprobs, models, and
an error raised as the SDK's BadRequestError. Installs the package with `npm ci` on first use.
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servehelp import EXP, TINY, Server, bad, check, data_url, finish, ok, run_tower  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openai")
IMG = os.path.join(EXP, "img_60x60", "image.png")


def main():
    if not shutil.which("node") or not shutil.which("npm"):
        bad("node and npm are installed (apt-get install nodejs npm)")
        finish()
    if not os.path.isdir(os.path.join(HERE, "node_modules", "openai")):
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, capture_output=True, text=True)
        if not check("npm ci installs the pinned openai package", p.returncode == 0, p.stderr[-1000:]):
            finish()
    rc, text, _ = run_tower(["run", "-m", TINY, "-p", "Hello!", "-n", "16", "--temp", "0", "--ignore-eos"])
    rc2, text_img, _ = run_tower(["run", "-m", TINY, "--image", IMG, "-p", "Describe the image.", "-n", "16", "--temp", "0",
                                  "--ignore-eos"])
    s = Server(args=["--api-key", "test-key"])
    env = dict(os.environ, OPENAI_BASE_URL="http://127.0.0.1:%d/v1" % s.port, EXPECT_TEXT=text.rstrip("\n"),
               EXPECT_IMAGE_TEXT=text_img.rstrip("\n"), IMAGE_URL=data_url(IMG))
    p = subprocess.run(["node", "test.mjs"], cwd=HERE, env=env, capture_output=True, text=True, timeout=600)
    lines = p.stdout.splitlines()
    for line in lines:
        if line.startswith("ok"):
            ok(line[4:].strip())
        elif line.startswith("FAIL"):
            bad(line[4:].strip())
    check("node test.mjs ran to the end (exit %d)" % p.returncode, p.returncode == 0 and len(lines) >= 9, p.stderr[-1500:])
    check("the server stops cleanly", s.stop() == 0, s.log[-1500:])
    finish()


if __name__ == "__main__":
    main()
