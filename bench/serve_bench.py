#!/usr/bin/env python3
"""serve_bench.py — the serving benchmark of `tower serve` (docs/server-bench.md).

Drives N concurrent streams against a server it starts (--spawn) or finds running (--url) and
prints, for 1, 2, 4 and 8 streams: requests/s, tokens/s, tokens/s per stream, time to first token
(TTFT) and inter-token latency (ITL) p50/p99, and the decode rate of all streams together next to
the single-stream rate and this machine's memory-bandwidth limit, measured right beside each
figure with `tower bench --limits`. Then a chat about an image and its second turn (TTFT of the
turn that reuses the image), and the single-stream decode rate through the server against
`tower bench`'s in-process figure for the same model (what the server adds). The targets of the
issue are printed beside the figures, met or not.

    python3 bench/serve_bench.py --spawn "build/tower serve -m random:2b --tokenizer ../shared/fixtures/tiny-towervision"
    python3 bench/serve_bench.py --url http://127.0.0.1:8080 --inproc-model random:2b
    python3 bench/serve_bench.py --spawn "build/tower serve -m random:2b:q4 --tokenizer DIR" --tokens 64 --json out.json

The table goes to stdout, a line per phase to stderr. Python 3 standard library only.

Why a Python client rather than a C tool: the client must be another process that talks HTTP and
SSE exactly as users' clients do, and its cost is what matters on a 2-core machine it shares with
the server: it wakes once per streamed token (at most a few dozen times a second here, against
~100-1000 ms of model work per step), parses one small JSON event and takes a timestamp, which
costs ~0.1 ms in Python. Threads + http.client do that without any dependency, and the timestamps
are taken when each chunk arrives, before any parsing.

How each figure is computed (one request per stream unless --requests N):
  requests/s, tokens/s      requests and generated tokens (the usage chunk's completion_tokens)
                            over the phase's wall time, first request sent to last [DONE]
  per-stream tokens/s       (tokens - 1) / (last token - first token), averaged over requests
  TTFT                      first content event - request sent (includes queueing and prefill)
  ITL                       gaps between consecutive content events of a request
  decode, all streams       tokens of every stream inside the window where all of them are
                            generating (after the last first token, before the first last
                            token) over that window: the batched decode rate, without prefill
  bandwidth limit           streams x read bandwidth / bytes one decode step reads (the weights
                            once per batched step plus each stream's KV cache): what a
                            memory-bound engine could reach; bandwidth from `tower bench
                            --limits` right before and after the phase (the best of the two),
                            bytes from `tower bench`'s count for the same model
  server overhead           single-stream decode rate through the server against `tower bench`'s
                            decode figure at 128 positions (same model, KV type and threads);
                            and, free of the machine's drift between the two runs, the client's
                            time per token against the model time the server itself measured
                            for those steps (/metrics), in the same run
"""
import argparse
import base64
import datetime
import http.client
import json
import math
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib

# ---- output -------------------------------------------------------------------------------------


def log(msg):
    print("serve_bench: " + msg, file=sys.stderr, flush=True)


def pct(xs, p):
    """The p-th percentile of xs, linear between the two nearest ranks (numpy's default)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def fms(x):
    """Milliseconds, or seconds when long."""
    if x is None or math.isnan(x):
        return "-"
    return "%.0f" % (x * 1e3) if x < 10 else "%.1fs" % x


def f1(x, fmt="%.2f"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt % x


# ---- an image to chat about, without any library: a PNG of smooth colour fields ----------------


def png_bytes(w, h):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)
    rows = bytearray()
    for y in range(h):
        rows.append(0)
        g = 255 * y // max(1, h - 1)
        rows += bytes(v for x in range(w) for v in (255 * x // max(1, w - 1), g, (x * y // 7) & 255))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + chunk(b"IEND", b""))


# ---- the server ------------------------------------------------------------------------------------


class Server:
    """A running `tower serve`: started from a command line (stopped at the end) or found at a URL."""

    def __init__(self, url=None, spawn=None, parallel=8):
        self.p = None
        self.log = []
        self.spawn_args = None
        if spawn:
            args = shlex.split(spawn)
            if "--port" not in args:
                args += ["--port", "0"]
            if "--parallel" not in args:
                args += ["--parallel", str(parallel)]
            self.spawn_args = args
            log("starting the server: " + " ".join(shlex.quote(a) for a in args))
            t0 = time.time()
            self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            got = threading.Event()
            self.port = None

            def drain():
                for raw in self.p.stderr:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    self.log.append(line)
                    m = re.search(r"listening on http://([^:]+):(\d+)", line)
                    if m and not self.port:
                        self.host, self.port = m.group(1), int(m.group(2))
                        got.set()
                got.set()

            threading.Thread(target=drain, daemon=True).start()
            got.wait(120)
            if not self.port:
                raise SystemExit("serve_bench: the server did not start:\n" + "\n".join(self.log[-20:]))
            if self.host in ("0.0.0.0", "::"):
                self.host = "127.0.0.1"
            self.wait_ready(t0)
        else:
            u = urllib.parse.urlparse(url if "//" in url else "http://" + url)
            self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
            self.wait_ready(time.time())

    def wait_ready(self, t0, timeout=1800):
        while time.time() - t0 < timeout:
            try:
                st, _ = self.request("GET", "/health", timeout=10)
                if st == 200:
                    log("  ready in %.1f s (http://%s:%d)" % (time.time() - t0, self.host, self.port))
                    return
            except OSError:
                pass
            if self.p and self.p.poll() is not None:
                raise SystemExit("serve_bench: the server exited:\n" + "\n".join(self.log[-20:]))
            time.sleep(0.2)
        raise SystemExit("serve_bench: the server was not ready after %d s" % timeout)

    def request(self, method, path, body=None, timeout=600):
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def model_id(self):
        st, data = self.request("GET", "/v1/models")
        return json.loads(data)["data"][0]["id"] if st == 200 else None

    def metrics(self):
        """/metrics as {name or name{labels}: value}."""
        _, data = self.request("GET", "/metrics")
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def decode_seconds(m):
    """Model time of the decode batches so far: /metrics gives tokens and tokens per decode-second."""
    rate = m.get("tower_decode_tokens_per_second", 0)
    return m.get("tower_completion_tokens_total", 0) / rate if rate > 0 else 0.0


# ---- one streamed chat request ----------------------------------------------------------------------


class Rec:
    """What one streamed request saw: when it was sent, when each content event arrived, usage."""

    def __init__(self):
        self.t_send = self.t_done = 0.0
        self.events = []      # arrival time of each event with text
        self.text = ""
        self.usage = None
        self.error = None

    @property
    def n_tokens(self):
        return (self.usage or {}).get("completion_tokens", len(self.events))

    @property
    def ttft(self):
        return self.events[0] - self.t_send if self.events else float("nan")

    def decode_rate(self):
        if len(self.events) < 2 or self.events[-1] <= self.events[0]:
            return float("nan")
        return (self.n_tokens - 1) / (self.events[-1] - self.events[0])


def stream_chat(srv, messages, max_tokens, timeout=1800):
    rec = Rec()
    body = {"model": "bench", "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    data = json.dumps(body)
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    rec.t_send = time.perf_counter()
    try:
        c.request("POST", "/v1/chat/completions", body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            rec.error = "HTTP %d: %s" % (r.status, r.read()[:300].decode("utf-8", "replace"))
            return rec
        buf = b""
        while True:
            chunk = r.read1(65536)
            if not chunk:
                break
            t = time.perf_counter()
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                for line in ev.split(b"\n"):
                    if not line.startswith(b"data: ") or line[6:] == b"[DONE]":
                        continue
                    j = json.loads(line[6:])
                    if "error" in j:
                        rec.error = str(j["error"])
                    if j.get("usage"):
                        rec.usage = j["usage"]
                    for ch in j.get("choices") or []:
                        piece = (ch.get("delta") or {}).get("content")
                        if piece:
                            rec.events.append(t)
                            rec.text += piece
    except OSError as e:
        rec.error = str(e)
    finally:
        rec.t_done = time.perf_counter()
        c.close()
    return rec


TOPICS = ["a lighthouse keeper", "the history of tea", "a journey to Lisbon", "how bridges are built",
          "a cat who learns to paint", "the night sky in winter", "a market in Marrakesh", "an old violin",
          "rain in the mountains", "the first computer", "a recipe for bread", "a letter from the sea"]


def text_messages(i, r):
    return [{"role": "user", "content": "Request %d.%d: write a long, detailed story about %s, in English." %
             (i, r, TOPICS[(i * 7 + r) % len(TOPICS)])}]


# ---- tower bench: the machine's limits and the in-process decode figure -------------------------


def tower_bench(tower, args):
    """Runs `tower bench ... --json -`; its JSON, or None (with the reason logged)."""
    cmd = [tower, "bench"] + args + ["--json", "-"]
    p = subprocess.run(cmd, capture_output=True)
    if p.returncode != 0:
        log("  `%s` failed: %s" % (" ".join(cmd), p.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]))
        return None
    return json.loads(p.stdout)


def read_bandwidth(tower, threads):
    j = tower_bench(tower, ["--limits", "--quick"] + (["-t", str(threads)] if threads else []))
    return j["machine"]["read_bandwidth_gbs"] if j else float("nan"), j


def bench_args_for(model):
    """`tower bench` arguments for the server's model: random:SHAPE[:TYPE] -> --shape/--type."""
    m = re.fullmatch(r"random:(2b|9b|tiny)(?::(\w+))?", model or "")
    if m:
        t = {"q8_0": "q8", "q4_0": "q4"}.get(m.group(2), m.group(2) or "bf16")
        return ["--shape", m.group(1), "--type", t]
    return ["-m", model]


# ---- the phases -----------------------------------------------------------------------------------


def run_streams(srv, c, n_req, tokens):
    """c threads, each sending n_req requests one after the other; their records."""
    recs = [[] for _ in range(c)]
    barrier = threading.Barrier(c)

    def worker(i):
        barrier.wait()
        for r in range(n_req):
            recs[i].append(stream_chat(srv, text_messages(i, r), tokens))

    th = [threading.Thread(target=worker, args=(i,)) for i in range(c)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return recs


def phase_stats(recs, c):
    flat = [r for rs in recs for r in rs]
    bad = [r.error for r in flat if r.error]
    ok = [r for r in flat if not r.error and r.events]
    st = {"streams": c, "requests": len(flat), "errors": bad[:3], "n_errors": len(bad)}
    if not ok:
        return st
    t0, t1 = min(r.t_send for r in flat), max(r.t_done for r in flat)
    wall = t1 - t0
    toks = sum(r.n_tokens for r in ok)
    itl = [b - a for r in ok for a, b in zip(r.events, r.events[1:])]
    rates = [r.decode_rate() for r in ok if not math.isnan(r.decode_rate())]
    # the batched decode rate: the window where every stream generates
    lo = max(rs[0].events[0] for rs in recs if rs and rs[0].events)
    hi = min(rs[-1].events[-1] for rs in recs if rs and rs[-1].events)
    in_win = 0.0
    for r in ok:   # events in the window, weighted by the request's tokens per event (held-back text)
        w = r.n_tokens / len(r.events)
        in_win += w * sum(1 for t in r.events if lo <= t <= hi)
    agg = in_win / (hi - lo) if hi > lo and in_win >= 2 * c else sum(rates)
    st.update({
        "wall_s": wall, "tokens": toks, "requests_per_s": len(ok) / wall, "tokens_per_s": toks / wall,
        "per_stream_tokens_per_s": sum(rates) / len(rates) if rates else float("nan"),
        "ttft_p50_s": pct([r.ttft for r in ok], 50), "ttft_p99_s": pct([r.ttft for r in ok], 99),
        "itl_p50_s": pct(itl, 50), "itl_p99_s": pct(itl, 99), "itl_mean_s": sum(itl) / len(itl) if itl else float("nan"),
        "decode_all_streams_tokens_per_s": agg, "decode_window_s": max(0.0, hi - lo),
        "events_per_token": sum(len(r.events) for r in ok) / max(1, toks),
    })
    return st


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[5:9]))
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8080 (start it with --parallel 8)")
    g.add_argument("--spawn", help="the server's command line; --port 0 and --parallel are added when absent")
    ap.add_argument("--tower", default="build/tower", help="the tower binary for `tower bench` (default build/tower)")
    ap.add_argument("--inproc-model", help="model for `tower bench`'s in-process figure (default: the server's: "
                    "random:SHAPE[:TYPE] becomes --shape/--type, anything else -m)")
    ap.add_argument("--kv-type", help="the server's KV cache type, for the in-process figure (default: from --spawn's "
                    "--kv-type, else f32, the server's default)")
    ap.add_argument("--threads", type=int, default=0, help="threads of the server (0: every core), for `tower bench`")
    ap.add_argument("--concurrency", default="1,2,4,8", help="stream counts (default 1,2,4,8)")
    ap.add_argument("--tokens", type=int, default=96, help="tokens generated per request (default 96)")
    ap.add_argument("--requests", type=int, default=1, help="requests per stream, one after the other (default 1)")
    ap.add_argument("--image-size", default="768x512", help="the image of the chat (default 768x512: 5 SigLIP tiles, "
                    "~2,700 tokens; 1152x768 is `tower bench`'s TTFT image)")
    ap.add_argument("--answer-tokens", type=int, default=32, help="tokens of the first answer about the image (default 32)")
    ap.add_argument("--skip-image", action="store_true", help="no image chat")
    ap.add_argument("--skip-inproc", action="store_true", help="no `tower bench` in-process decode figure")
    ap.add_argument("--json", help="also write every figure as JSON to this file")
    a = ap.parse_args()
    conc = [int(x) for x in a.concurrency.split(",") if x]
    started = datetime.datetime.now().astimezone()
    load0 = os.getloadavg()[0]
    out = {"tool": "bench/serve_bench.py", "date": started.isoformat(timespec="seconds"), "load_average_start": load0,
           "concurrency": conc, "tokens_per_request": a.tokens, "requests_per_stream": a.requests}

    spawn_model = None
    kv = a.kv_type
    if a.spawn:
        sa = shlex.split(a.spawn)
        for flag in ("-m", "--model"):
            if flag in sa:
                spawn_model = sa[sa.index(flag) + 1]
        if not kv and "--kv-type" in sa:
            kv = sa[sa.index("--kv-type") + 1]
        if not a.threads:
            for flag in ("-t", "--threads"):
                if flag in sa:
                    a.threads = int(sa[sa.index(flag) + 1])
    kv = kv or "f32"
    targs = ["-t", str(a.threads)] if a.threads else []

    # ---- 1. in-process figure (before the server holds its copy of the model) ----
    inproc = None
    model = a.inproc_model or spawn_model
    if not a.skip_inproc and model:
        log("in-process decode: %s bench %s --quick --skip-vision --decode 32 --reps 2 --kv-type %s (builds the "
            "model once more, ~1 min)" % (a.tower, " ".join(bench_args_for(model)), kv))
        inproc = tower_bench(a.tower, bench_args_for(model) + ["--quick", "--skip-vision", "--decode", "32", "--reps", "2",
                                                                "--kv-type", kv] + targs)
        if inproc:
            f = inproc["models"][0]["figures"]["decode_long_ctx"]
            log("  %.2f tokens/s at 128 positions (read bandwidth beside it %.1f GB/s, %.2f GB per token: limit %.2f)"
                % (f["value"], f["read_bandwidth_gbs"], f["bytes_per_token"] / 1e9, f["limit"]))

    # ---- 2. the server ----
    srv = Server(url=a.url, spawn=a.spawn, parallel=max(conc))
    try:
        served = srv.model_id()
        out["model"] = served
        if not a.skip_inproc and not inproc and served:
            log("in-process decode: %s bench %s ... (with the server idle beside it)" % (a.tower, " ".join(bench_args_for(served))))
            inproc = tower_bench(a.tower, bench_args_for(served) + ["--quick", "--skip-vision", "--decode", "32", "--reps", "2",
                                                                     "--kv-type", kv] + targs)
        out["inproc"] = inproc
        weights_per_token = kv_per_pos = None
        if inproc:
            mo = inproc["models"][0]
            f = mo["figures"]["decode_long_ctx"]
            weights_per_token = mo["weight_bytes_per_token"]
            kv_per_pos = max(0.0, f["bytes_per_token"] - weights_per_token) / (128 + 32 / 2)

        log("warm-up: %d streams x 4 tokens" % max(conc))
        run_streams(srv, max(conc), 1, 4)

        # ---- 3. 1, 2, 4, 8 streams ----
        phases = []
        for c in conc:
            bw0, lim = read_bandwidth(a.tower, a.threads)
            if "machine" not in out and lim:
                out["machine"] = lim["machine"]
            log("%d stream%s x %d request%s x %d tokens ..." % (c, "s" if c > 1 else "", a.requests,
                                                                 "s" if a.requests > 1 else "", a.tokens))
            m0 = srv.metrics()
            recs = run_streams(srv, c, a.requests, a.tokens)
            m1 = srv.metrics()
            bw1, _ = read_bandwidth(a.tower, a.threads)
            st = phase_stats(recs, c)
            st["read_bandwidth_gbs"] = max(x for x in (bw0, bw1) if not math.isnan(x)) if not (math.isnan(bw0) and math.isnan(bw1)) else float("nan")
            st["server_decode_s"] = decode_seconds(m1) - decode_seconds(m0)
            st["server_batches"] = m1.get("tower_batches_total", 0) - m0.get("tower_batches_total", 0)
            st["server_batch_rows"] = m1.get("tower_batch_sequences_total", 0) - m0.get("tower_batch_sequences_total", 0)
            if weights_per_token:
                ctx = 30 + a.tokens / 2   # mean context of a decode step: prompt + half the answer
                step = weights_per_token + c * kv_per_pos * ctx
                st["bandwidth_limit_tokens_per_s"] = c * st["read_bandwidth_gbs"] * 1e9 / step
            if st.get("n_errors"):
                log("  %d request(s) failed: %s" % (st["n_errors"], st["errors"]))
            if "tokens" in st:
                log("  %.1f s: %d tokens, %.2f tokens/s, all streams decoding %.2f tokens/s, TTFT p50 %s ms, ITL p50 %s ms"
                    % (st["wall_s"], st["tokens"], st["tokens_per_s"], st["decode_all_streams_tokens_per_s"],
                       fms(st["ttft_p50_s"]), fms(st["itl_p50_s"])))
                st["_recs"] = recs
            phases.append(st)

        # ---- 4. a chat about an image, then its second turn ----
        image = None
        if not a.skip_image:
            w, h = (int(x) for x in a.image_size.lower().split("x"))
            url = "data:image/png;base64," + base64.b64encode(png_bytes(w, h)).decode()
            q1 = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                               {"type": "text", "text": "What is in this picture? Describe it."}]}]
            log("image chat, turn 1: a %dx%d image, %d tokens (the image is encoded and prefilled: minutes on 2 cores) ..."
                % (w, h, a.answer_tokens))
            m0 = srv.metrics()
            r1 = stream_chat(srv, q1, a.answer_tokens)
            log("  TTFT %.1f s, %s" % (r1.ttft, r1.error or r1.usage))
            q2 = q1 + [{"role": "assistant", "content": r1.text},
                       {"role": "user", "content": "And which colours does it have, from left to right?"}]
            log("image chat, turn 2: the same image, a new question ...")
            r2 = stream_chat(srv, q2, 16)
            m1 = srv.metrics()
            log("  TTFT %.2f s, %s" % (r2.ttft, r2.error or r2.usage))
            image = {"size": [w, h], "turn1_ttft_s": r1.ttft, "turn1_usage": r1.usage, "turn2_ttft_s": r2.ttft,
                     "turn2_usage": r2.usage, "errors": [e for e in (r1.error, r2.error) if e],
                     "images_encoded": m1.get('tower_media_encoded_total{kind="image"}', 0) -
                     m0.get('tower_media_encoded_total{kind="image"}', 0),
                     "media_cache_hits": m1.get("tower_media_cache_hits_total", 0) - m0.get("tower_media_cache_hits_total", 0)}
    finally:
        srv.stop()
    load1 = os.getloadavg()[0]
    out["load_average_end"] = load1

    # ---- the report ----
    mach = out.get("machine") or {}
    P = sys.stdout
    print("\ntower serve benchmark — %s, %s" % (out.get("model"), started.strftime("%Y-%m-%d %H:%M %Z")), file=P)
    print("machine: %s, %s threads, kernels %s; load average %.1f at the start, %.1f at the end%s" % (
        mach.get("cpu", "?"), mach.get("threads", "?"), mach.get("kernels", "?"), load0, load1,
        "  (WARNING: other processes shared the CPU: the figures are disturbed)" if max(load0, load1) > 1.0 else ""), file=P)
    if weights_per_token:
        print("limit: decode reads %.2f GB of weights per step (`tower bench`'s count) + %.0f KB of KV cache per "
              "position and stream; bandwidth = `tower bench --limits` before and after each row (best)"
              % (weights_per_token / 1e9, kv_per_pos / 1e3), file=P)
    print("%d request%s per stream, %d tokens each (greedy, no stop strings); TTFT and ITL in ms\n" % (
        a.requests, "s" if a.requests > 1 else "", a.tokens), file=P)
    hdr = ("streams", "req/s", "tok/s", "tok/s/stream", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
           "decode all", "x single", "read GB/s", "bw limit", "of limit")
    print("%-7s %6s %7s %12s %8s %8s %7s %7s %10s %8s %9s %8s %8s" % hdr, file=P)
    single = next((p.get("decode_all_streams_tokens_per_s") for p in phases if p["streams"] == 1), None)
    for p in phases:
        if "tokens" not in p:
            print("%-7d  (failed: %s)" % (p["streams"], p.get("errors")), file=P)
            continue
        d = p["decode_all_streams_tokens_per_s"]
        lim = p.get("bandwidth_limit_tokens_per_s")
        print("%-7d %6.3f %7.2f %12.2f %8s %8s %7s %7s %10.2f %8s %9s %8s %8s" % (
            p["streams"], p["requests_per_s"], p["tokens_per_s"], p["per_stream_tokens_per_s"], fms(p["ttft_p50_s"]),
            fms(p["ttft_p99_s"]), fms(p["itl_p50_s"]), fms(p["itl_p99_s"]), d,
            f1(d / single if single else None, "%.2fx"), f1(p["read_bandwidth_gbs"], "%.1f"), f1(lim, "%.2f"),
            f1(100 * d / lim if lim else None, "%.0f%%")), file=P)

    # ---- targets ----
    print("\ntargets:", file=P)
    four = next((p for p in phases if p["streams"] == 4 and "tokens" in p), None)
    one = next((p for p in phases if p["streams"] == 1 and "tokens" in p), None)
    verdict = lambda ok: "met" if ok else "NOT MET"
    if four and one:
        r = four["decode_all_streams_tokens_per_s"] / one["decode_all_streams_tokens_per_s"]
        rw = four["tokens_per_s"] / one["tokens_per_s"]
        print("  4 streams >= 3x the single-stream tokens/s:      %.2fx decode (%.2f vs %.2f tok/s; %.2fx with "
              "prefill and TTFT in the wall time)  %s" % (r, four["decode_all_streams_tokens_per_s"],
                                                          one["decode_all_streams_tokens_per_s"], rw, verdict(r >= 3)), file=P)
        out["target_4_streams_ratio"] = r
    if image:
        u1, u2 = image["turn1_usage"] or {}, image["turn2_usage"] or {}
        cached = (u2.get("prompt_tokens_details") or {}).get("cached_tokens")
        new = u2["prompt_tokens"] - cached if cached is not None and u2.get("prompt_tokens") else None
        print("  second turn about a seen image, TTFT < 3 s:      %.2f s  %s" % (image["turn2_ttft_s"],
              verdict(image["turn2_ttft_s"] < 3)), file=P)
        print("      turn 1: %dx%d image, TTFT %.1f s, %s prompt tokens; turn 2: %s prompt tokens, %s from the prefix "
              "cache, %s evaluated; the image encoded %d time(s), %d media-cache hit(s)" % (
                  image["size"][0], image["size"][1], image["turn1_ttft_s"], u1.get("prompt_tokens"), u2.get("prompt_tokens"),
                  cached, new, image["images_encoded"], image["media_cache_hits"]), file=P)
        if image["errors"]:
            print("      errors: %s" % image["errors"], file=P)
    if one:
        srv_rate = one["per_stream_tokens_per_s"]
        recs1 = [r for r in one["_recs"][0] if len(r.events) > 1]
        steps = sum(r.n_tokens - 1 for r in recs1)   # decode batches: the first token comes from the prefill
        model_step = one["server_decode_s"] / max(1, steps)
        client_step = sum(r.events[-1] - r.events[0] for r in recs1) / max(1, steps)
        same_run = client_step / model_step - 1 if model_step > 0 else float("nan")
        out["server_model_step_s"], out["client_step_s"], out["overhead_same_run"] = model_step, client_step, same_run
        if inproc:
            f = inproc["models"][0]["figures"]["decode_long_ctx"]
            ov = f["value"] / srv_rate - 1
            out["overhead_vs_tower_bench"] = ov
            print("  the server adds < 2 %% to single-stream decode: %+.1f %% (%.2f tok/s through the server at %.1f GB/s "
                  "vs %.2f in process, `tower bench` at 128 positions, at %.1f GB/s)  %s" % (
                      100 * ov, srv_rate, one["read_bandwidth_gbs"], f["value"], f["read_bandwidth_gbs"], verdict(ov < 0.02)),
                  file=P)
        print("      same run, free of the machine's drift: %.1f ms per token seen by the client, %.1f ms of model time "
              "per step measured by the server (/metrics): %+.1f %%" % (1e3 * client_step, 1e3 * model_step, 100 * same_run),
              file=P)

    for p in phases:
        p.pop("_recs", None)
    out["phases"] = phases
    out["image_chat"] = image
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)
        log("wrote " + a.json)


if __name__ == "__main__":
    main()
