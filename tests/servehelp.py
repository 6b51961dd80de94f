"""servehelp.py — what the server tests share (python3 standard library only): start and stop
`tower serve` on loopback with a free port, HTTP calls, fixture tensors, and the pass/fail count
whose last line is "N passed, N failed" (tests/run.sh adds them up).

Environment (set by tests/run.sh): TOWER_BIN, TOWER_FIXTURES, TOWER_SANITIZED.
"""
import base64
import http.client
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time

BIN = os.environ.get("TOWER_BIN", "build/tower")
FX = os.environ.get("TOWER_FIXTURES", "../shared/fixtures")
SANITIZED = os.environ.get("TOWER_SANITIZED") == "1"
TINY = os.path.join(FX, "tiny-towervision")
TINY_VIDEO = os.path.join(FX, "tiny-towervideo")
EXP = os.path.join(FX, "expected")

passed = 0
failed = 0


def ok(desc):
    global passed
    passed += 1
    print("ok   " + desc, flush=True)


def bad(desc, detail=""):
    global failed
    failed += 1
    print("FAIL " + desc, flush=True)
    if detail:
        for line in str(detail).splitlines()[:12]:
            print("     " + line[:300], flush=True)


def check(desc, cond, detail=""):
    if cond:
        ok(desc)
    else:
        bad(desc, detail)
    return bool(cond)


def finish():
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(0 if failed == 0 else 1)


class Server:
    """`tower serve` on 127.0.0.1 with --port 0; stderr kept in .log."""

    def __init__(self, model=TINY, args=(), env=None, wait=True):
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen([BIN, "serve", "-m", model, "--port", "0"] + list(args),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
        self.log = ""
        self.port = None
        got = threading.Event()

        def drain():
            for raw in self.p.stderr:
                line = raw.decode("utf-8", "replace")
                self.log += line
                m = re.search(r"listening on http://[^:]+:(\d+)", line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    got.set()
            got.set()

        self.t = threading.Thread(target=drain, daemon=True)
        self.t.start()
        got.wait(60)
        if not self.port:
            raise RuntimeError("the server did not start: " + self.log[-2000:])
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=180):
        end = time.time() + timeout
        while time.time() < end:
            try:
                st, _, _ = self.get("/health")
                if st == 200:
                    return
            except OSError:
                pass
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("the server never became ready: " + self.log[-2000:])

    def conn(self, timeout=120):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=120):
        c = self.conn(timeout)
        h = {"Content-Type": "application/json"}
        if headers:
            h.update(headers)
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        st, h, data = self.request("POST", path, body, **kw)
        try:
            j = json.loads(data) if data else None
        except ValueError:
            j = None
        return st, j, data

    def stream(self, path, body, headers=None):
        """POST with stream: true; returns (status, [parsed events], saw_done)."""
        c = self.conn()
        h = {"Content-Type": "application/json"}
        if headers:
            h.update(headers)
        c.request("POST", path, body=json.dumps(body), headers=h)
        r = c.getresponse()
        events, done = [], False
        if r.status != 200:
            data = r.read()
            c.close()
            return r.status, [json.loads(data)] if data else [], False
        buf = b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                for line in ev.split(b"\n"):
                    if line.startswith(b"data: "):
                        d = line[6:]
                        if d == b"[DONE]":
                            done = True
                        else:
                            events.append(json.loads(d))
        c.close()
        return 200, events, done

    def metric(self, name):
        st, _, data = self.get("/metrics")
        for line in data.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.split()[-1])
        return None

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stops the server; returns its exit status (None if it had to be killed)."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                return None
        self.t.join(5)
        return self.p.returncode


def data_url(path, mime=None):
    if not mime:
        mime = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
                "mp4": "video/mp4", "webm": "video/webm"}.get(path.rsplit(".", 1)[-1].lower(), "application/octet-stream")
    with open(path, "rb") as f:
        return "data:%s;base64,%s" % (mime, base64.b64encode(f.read()).decode())


def case(name):
    with open(os.path.join(EXP, name, "case.json")) as f:
        return json.load(f)


def tensors(path, names):
    """Reads the named tensors of a safetensors file: {name: (shape, flat list)}."""
    fmt = {"F32": "f", "I64": "q", "F64": "d", "I32": "i", "U8": "B"}
    out = {}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        base = 8 + n
        for name in names:
            t = h[name]
            a, b = t["data_offsets"]
            f.seek(base + a)
            raw = f.read(b - a)
            c = fmt[t["dtype"]]
            out[name] = (t["shape"], list(struct.unpack("<%d%s" % ((b - a) // struct.calcsize(c), c), raw)))
    return out


def run_tower(args, stdin=None):
    p = subprocess.run([BIN] + args, input=stdin, capture_output=True)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
