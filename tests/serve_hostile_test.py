"""serve_hostile_test.py — hostile clients against `tower serve` on loopback, bounded in count and
time: malformed and truncated JSON, wrong types, JSON nested 100000 deep, oversize bodies and
headers, invalid base64, a decompression-bomb image, a 20000x20000 image header, file:// paths
out of --media-dir (.., symlinks, devices, percent-encoding), slow headers, idle connections,
clients that vanish mid-stream, and a flood of concurrent requests. Between the attacks a
well-formed request must still get the same answer; at the end the server stops cleanly (exit 0,
and in the sanitizer build no AddressSanitizer / UBSan report and no leak).
"""
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servehelp import EXP, Server, bad, check, data_url, finish, ok  # noqa: E402

IMG = os.path.join(EXP, "img_60x60", "image.png")


def png(width, height, rows=None):
    """A valid grey PNG of that size (rows of zeros compress to almost nothing)."""
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if rows is None:
        raw = zlib.compress(b"\0" * ((width + 1) * min(height, 64)))   # truncated: fewer rows than declared
    else:
        co = zlib.compressobj(9)
        line = b"\0" * (width + 1)
        raw = b"".join(co.compress(line) for _ in range(height)) + co.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def raw_request(port, data, timeout=10, read=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def main():
    media = tempfile.mkdtemp()
    inside = os.path.join(media, "ok.png")
    with open(inside, "wb") as f, open(IMG, "rb") as g:
        f.write(g.read())
    os.symlink("/etc/passwd", os.path.join(media, "out.png"))
    os.mkdir(os.path.join(media, "sub"))
    s = Server(args=["--max-body-kb", "2048", "--max-pixels", "4000000", "--media-dir", media, "--timeout", "3",
                     "--max-connections", "64", "--parallel", "2", "--max-queue", "16"])
    good = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(IMG)}},
                                                       {"type": "text", "text": "Describe the image."}]}],
            "max_tokens": 8, "temperature": 0}
    st, ref, _ = s.post("/v1/chat/completions", good)
    answer = ref["choices"][0]["message"]["content"] if st == 200 else None
    check("baseline: a well-formed image request", st == 200, ref)

    def still_serving(after):
        st, j, _ = s.post("/v1/chat/completions", good)
        got = j["choices"][0]["message"]["content"] if st == 200 and j else None
        check("after %s: the well-formed request still gets the same answer" % after, got == answer, (st, j))

    # ---- malformed bodies ----
    bodies = [b"", b"{", b'{"messages": [{"role": "user", "content": "hi"}', b"[1, 2]", b"null", b'"str"',
              b'{"messages": "hi"}', b'{"messages": []}', b'{"messages": [5]}', b'{"messages": [{"role": 7}]}',
              b'{"messages": [{"role": "user", "content": 5}]}', b'{"messages": [{"role": "tool", "content": "x"}]}',
              b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
              b'{"messages": [{"role": "user", "content": [{"type": "audio", "x": 1}]}]}',
              b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}',
              b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e300}',
              b'{"messages": [{"role": "user", "content": "hi"}], "stop": [1, 2]}',
              b'{"messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": true}}',
              b'{"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 99, "logprobs": true}',
              b'{"messages": [{"role": "user", "content": "hi"}], "messages": []}',
              b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', b'{"prompt": [99999999]}', b'{"prompt": {}}']
    codes = []
    for b in bodies:
        for path in ("/v1/chat/completions", "/v1/completions"):
            st, j, _ = s.post(path, b)
            codes.append(st)
            if not (400 <= st < 500 and j and "error" in j):
                bad("malformed body %r on %s: a 4xx with an error JSON" % (b[:60], path), (st, j))
                break
    check("%d malformed or mistyped bodies: each a 4xx with OpenAI's error JSON" % len(codes), all(400 <= c < 500 for c in codes))
    st, j, _ = s.post("/v1/chat/completions", b"[" * 100000 + b"]" * 100000)
    check("JSON nested 100000 deep: 400", st == 400, (st, j))
    st, j, _ = s.post("/tokenize", b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    check("JSON nested 5000 deep in a field: 400", st == 400, (st, j))
    still_serving("malformed bodies")

    # ---- size limits ----
    # The server refuses as soon as it reads Content-Length and closes, so a client still sending
    # the body may see its socket closed: send the headers only, then read the answer.
    resp = raw_request(s.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % (3 << 20) + b'{"messages": [', timeout=5)
    check("a 3 MB body over --max-body-kb 2048: 413 before it is sent", status_of(resp) == 413, resp[:300])
    chunked = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n")
    piece = b"a" * 65536
    resp = b""
    try:
        sk = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sk.sendall(chunked)
        for _ in range(64):
            sk.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sk.sendall(b"0\r\n\r\n")
        resp = sk.recv(65536)
        sk.close()
    except OSError:
        pass
    check("a chunked body growing past the limit: 413 (or the connection closed)", status_of(resp) in (413, 0), resp[:200])
    resp = raw_request(s.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 200000 + b"\r\n\r\n")
    check("a 200 KB header: refused by the header limit", status_of(resp) in (413, 431, 400, 0), resp[:200])
    still_serving("oversize bodies and headers")

    # ---- media ----
    def img_req(url):
        return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                           {"type": "text", "text": "x"}]}], "max_tokens": 1}
    cases = [
        ("invalid base64", "data:image/png;base64,iVBORw0K!!!!", (400,)),
        ("base64 of garbage", "data:image/png;base64,AAAAAAAAAAAAAAAA", (400,)),
        ("a data URL without base64", "data:image/png,hello", (400,)),
        ("a 20000x20000 PNG header", "data:image/png;base64," + __import__("base64").b64encode(png(20000, 20000)).decode(), (400, 413)),
        ("a decompression bomb (3000x3000 of zeros, %d KB)" % (len(png(3000, 3000, rows=True)) // 1024),
         "data:image/png;base64," + __import__("base64").b64encode(png(3000, 3000, rows=True)).decode(), (400, 413)),
        ("file:// with ..", "file://" + media + "/../../../etc/passwd", (400, 403)),
        ("file:// percent-encoded ..", "file://" + media + "/%2e%2e/%2e%2e/etc/passwd", (400, 403)),
        ("file:// symlink out of --media-dir", "file://" + media + "/out.png", (400, 403)),
        ("file:// a directory", "file://" + media + "/sub", (400, 403)),
        ("file:///dev/zero", "file:///dev/zero", (400, 403)),
        ("an unknown scheme", "gopher://x/y", (400,)),
        ("http to a closed port", "http://127.0.0.1:1/x.png", (400, 502, 504)),
    ]
    for desc, url, want in cases:
        t0 = time.time()
        st, j, _ = s.post("/v1/chat/completions", img_req(url))
        check("%s: %d in %.1f s" % (desc, st, time.time() - t0), st in want and j and "error" in j and time.time() - t0 < 30,
              (st, j))
    st, j, _ = s.post("/v1/chat/completions", img_req("file://" + inside))
    check("file:// inside --media-dir is served", st == 200, (st, j))
    still_serving("hostile media")

    # ---- slow headers and idle connections ----
    slow = []
    for _ in range(20):
        sk = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sk.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        slow.append(sk)
    idle = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(20)]
    still_serving("20 slowloris and 20 idle connections opened")
    time.sleep(4.5)   # past --timeout 3
    closed = 0
    for sk in slow + idle:
        try:
            sk.settimeout(2)
            closed += sk.recv(1) == b""
        except OSError:
            closed += 1
        sk.close()
    check("slow and idle connections are closed after --timeout (%d of 40)" % closed, closed == 40)

    # ---- clients that vanish mid-stream, and a flood ----
    for _ in range(8):
        b = json.dumps({"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 500, "stream": True}).encode()
        try:
            raw_request(s.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(b) + b, timeout=0.3)
        except OSError:
            pass
    results = []
    lock = threading.Lock()

    def flood():
        try:
            st, _, _ = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        except OSError:
            st = -1
        with lock:
            results.append(st)

    ths = [threading.Thread(target=flood) for _ in range(48)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(600)
    bad_codes = [c for c in results if c not in (200, 429, 503)]
    check("a flood of 48 concurrent requests: each served or 429 (%d served, %d refused)"
          % (results.count(200), results.count(429)), len(results) == 48 and not bad_codes, bad_codes)
    end = time.time() + 60
    while time.time() < end and s.metric("tower_requests_running") != 0:
        time.sleep(0.2)
    check("vanished clients leave nothing running", s.metric("tower_requests_running") == 0)
    still_serving("the flood")

    st, _, _ = s.request("GET", "/health")
    check("/health is still 200", st == 200)
    rc = s.stop()
    check("the server stops cleanly after all that (exit %s)" % rc, rc == 0, s.log[-2000:])
    check("no sanitizer report or leak in the server's log",
          "ERROR: AddressSanitizer" not in s.log and "runtime error" not in s.log and "LeakSanitizer" not in s.log, s.log[-3000:])
    finish()


if __name__ == "__main__":
    main()
