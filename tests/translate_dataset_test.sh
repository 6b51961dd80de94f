#!/bin/sh
# translate_dataset_test.sh — `tower translate --dataset` (the VisionBlocks recipe) on the tiny
# fixture checkpoint, whose random weights translate into gibberish: what is tested is everything
# around the translations. The LLaVA structure is kept (ids, media fields, turns, roles, the
# <image> / <video> markers and the white space around them), JSON and JSON lines give the same
# items, several languages give one file each, batched output equals one-at-a-time output and
# `tower translate --lines`, failures are flagged (and dropped with --drop-flagged), a run stopped
# by --limit or killed continues with --resume without translating an item twice and ends with the
# file a fresh run writes, another run's output is refused, bad data is named by file and line
# and stops or is skipped as asked, --min-score filters (with and without translating), and every
# error has its exit status. Data: tests/data/translate/. Last line: "N passed, N failed".
command -v python3 >/dev/null || { echo "python3 is needed (apt-get install python3)"; echo "0 passed, 1 failed"; exit 1; }

T=${TOWER_BIN:-build/tower}
FX=${TOWER_FIXTURES:-../shared/fixtures}
M=$FX/tiny-towervision
D=$(dirname "$0")/data/translate
. "$(dirname "$0")/clihelp.sh"

if [ ! -x "$T" ]; then echo "tower binary not found at $T"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -d "$M" ]; then echo "fixture checkpoint not found at $M"; echo "0 passed, 1 failed"; exit 1; fi

tr_ds() { "$T" translate -m "$M" "$@"; }

# py SCRIPT ARGS...: a check in python; passes when it exits 0 (its message goes to $tmp/err)
py() { s=$1; shift; python3 -c "$s" "$@" 2>"$tmp/err"; }

# The skeleton of a turn: markers and the white space around each piece of text, the text as T.
SKEL='
import json, re, sys
def skel(s):
    out = []
    for p in re.split(r"(<image>|<video>)", s):
        core = p.strip(" \t\n\r")
        if p in ("<image>", "<video>") or not core: out.append(p)
        else:
            i = p.index(core)
            out.append(p[:i] + "T" + p[i + len(core):])
    return "".join(out)
def load(path):
    t = open(path, encoding="utf-8").read()
    return json.loads(t) if t.lstrip().startswith("[") else [json.loads(l) for l in t.splitlines() if l.strip()]
'

# ---- LLaVA JSON: two languages, structure kept ---------------------------------------------------
tr_ds --dataset "$D/llava.json" --to de,fr --out-dir "$tmp/a" -n 12 >"$tmp/out" 2>"$tmp/err"
check "llava.json --to de,fr: exit 0, nothing on stdout" sh -c '[ $0 -eq 0 ] && [ ! -s "$1" ]' $? "$tmp/out"
check "one file per language, the provenance beside it, no journal left" sh -c \
    'test -s "$0/llava.de.json" && test -s "$0/llava.fr.json" && test -s "$0/llava.de.json.meta.json" && ! ls "$0"/*.partial 2>/dev/null' "$tmp/a"
check "summary: a row per language" sh -c 'grep -q "^  de  *5  *5 " "$0" && grep -q "^  fr  *5  *5 " "$0"' "$tmp/err"
for l in de fr; do
    py "$SKEL"'
src, out = load(sys.argv[1]), load(sys.argv[2])
assert len(src) == len(out) == 5, (len(src), len(out))
for a, b in zip(src, out):
    flags = b.pop("translation_flags", [])
    assert set(a) == set(b), (a.keys(), b.keys())
    for k in a:
        if k != "conversations": assert a[k] == b[k], k
    assert [t["from"] for t in a["conversations"]] == [t["from"] for t in b["conversations"]]
    for ta, tb in zip(a["conversations"], b["conversations"]):
        assert set(ta) == set(tb)
        assert ta["value"] != tb["value"], "not translated: " + ta["value"]
        if "empty" not in flags: assert skel(ta["value"]) == skel(tb["value"]), (ta["value"], tb["value"])
    assert "marker_count" not in flags, b["id"]
' "$D/llava.json" "$tmp/a/llava.$l.json"
    check "llava $l: ids, media fields, roles kept; every turn translated; markers and white space in place" test $? -eq 0
done
py 'import json, sys
m = json.load(open(sys.argv[1]))
r = m["run"]
assert r["from"] == "en" and r["to"] == "de" and r["format"] == "llava" and r["max_new_tokens"] == 12, r
assert m["items"] == 5 and m["source_items"] == 5 and m["skipped_bad_data"] == 0, m
' "$tmp/a/llava.de.json.meta.json"
check "meta.json: the run (languages, format, -n) and the counts" test $? -eq 0
py 'import sys; t = open(sys.argv[1]).read(); assert t.startswith("[\n{") and t.endswith("}\n]\n"), t[:20]' "$tmp/a/llava.de.json"
check "JSON in, a JSON array out (one item a line)" test $? -eq 0

# ---- JSON lines: the same items as from the JSON array ------------------------------------------
tr_ds --dataset "$D/llava.jsonl" --to de --out-dir "$tmp/b" -n 12 --batch 3 >/dev/null 2>"$tmp/err"
check "llava.jsonl: exit 0, llava.de.jsonl written" sh -c '[ $0 -eq 0 ] && test -s "$1/llava.de.jsonl"' $? "$tmp/b"
py "$SKEL"'
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a == b
assert all(not l.startswith("[") for l in open(sys.argv[2]))
' "$tmp/a/llava.de.json" "$tmp/b/llava.de.jsonl"
check "JSON lines in, JSON lines out, the same items as from the array (batch 3 vs 8)" test $? -eq 0

# ---- batched == one at a time == tower translate --lines ---------------------------------------
for b in 1 2 5; do
    tr_ds --dataset "$D/text.jsonl" --to de --out-dir "$tmp/t$b" -n 8 --batch $b >/dev/null 2>"$tmp/err" || bad "text.jsonl --batch $b"
done
tr_ds --to de --lines -n 8 -f "$D/text.txt" >"$tmp/lines.txt" 2>"$tmp/err"
py '
import json, sys
want = [l.strip() for l in open(sys.argv[1], encoding="utf-8")]
outs = [[json.loads(l) for l in open(p, encoding="utf-8")] for p in sys.argv[2:]]
for o in outs:
    assert [x["id"] for x in o] == list(range(6))
    got = [x["text"].replace("\n", " ").strip() for x in o]
    assert got == want, (got, want)
    assert all("too_long" not in x.get("translation_flags", []) for x in o)
' "$tmp/lines.txt" "$tmp/t1/text.de.jsonl" "$tmp/t2/text.de.jsonl" "$tmp/t5/text.de.jsonl"
check "greedy: --batch 1, 2 and 5 give tower translate --lines' translations" test $? -eq 0

# ---- flags ---------------------------------------------------------------------------------------
# a one-word source: the gibberish passes 3x + 10 characters long before -n
printf '{"id": 1, "text": "Hi."}\n' >"$tmp/short.jsonl"
tr_ds --dataset "$tmp/short.jsonl" --to de --out-dir "$tmp/f" -n 64 >/dev/null 2>"$tmp/err"
py 'import json, sys
o = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert "too_long" in o[0]["translation_flags"], o[0]
assert len(o[0]["text"]) <= 3 * 3 + 10 + 8, o[0]   # cut soon after the limit
' "$tmp/f/short.de.jsonl"
check "too_long: flagged, generation cut near 3x the source + 10 characters" test $? -eq 0
tr_ds --dataset "$D/text.jsonl" --to de --out-dir "$tmp/f" -n 3 >/dev/null 2>"$tmp/sum"
py 'import json, sys
o = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert len(o) == 6 and all(x["translation_flags"] == ["max_tokens"] for x in o), o
m = json.load(open(sys.argv[1] + ".meta.json"))
assert m["flagged"] == 6 and m["flags"]["max_tokens"] == 6, m
' "$tmp/f/text.de.jsonl"
check "max_tokens: flagged in the item and counted in meta.json" test $? -eq 0
check "summary: flagged column and flag counts" sh -c 'grep -q "^  de  *6  *6  *6  *0 " "$0" && grep -q "max_tokens 6" "$0"' "$tmp/sum"
# a stop string that is the translation's start: nothing is left
first=$(head -n 1 "$tmp/lines.txt" | cut -c 1-3)
head -n 1 "$D/text.jsonl" >"$tmp/one.jsonl"
tr_ds --dataset "$tmp/one.jsonl" --to de --out-dir "$tmp/f" -n 8 --stop "$first" >/dev/null 2>"$tmp/err"
check "empty: a translation with nothing left is flagged" grep -q '"translation_flags":\["empty"\]' "$tmp/f/one.de.jsonl"
tr_ds --dataset "$D/text.jsonl" --to de --out-dir "$tmp/g" -n 3 --drop-flagged >/dev/null 2>"$tmp/err"
check "--drop-flagged: flagged items left out, counted" sh -c \
    '[ ! -s "$0/text.de.jsonl" ] && grep -q "\"dropped_flagged\": 6" "$0/text.de.jsonl.meta.json" && grep -q "6 dropped" "$1"' "$tmp/g" "$tmp/err"

# ---- resume --------------------------------------------------------------------------------------
tr_ds --dataset "$D/llava.jsonl" --to de --out-dir "$tmp/r" -n 12 --limit 2 >/dev/null 2>"$tmp/err"
check "--limit 2: exit 0, the journal holds 2 items, no output yet" sh -c \
    '[ $0 -eq 0 ] && [ "$(wc -l <"$1/llava.de.jsonl.partial")" -eq 3 ] && [ ! -e "$1/llava.de.jsonl" ] && grep -q "resume" "$2"' $? "$tmp/r" "$tmp/err"
expect_error "an unfinished run is not overwritten without --resume / --force" 1 "unfinished run.*--resume" \
    tr_ds --dataset "$D/llava.jsonl" --to de --out-dir "$tmp/r" -n 12
expect_error "--resume refuses a journal of other settings, naming the field" 1 '"max_new_tokens" is 12, this run.s is 10' \
    tr_ds --dataset "$D/llava.jsonl" --to de --out-dir "$tmp/r" -n 10 --resume
printf '{"i":4,"item":{"id":"video-7","conv' >>"$tmp/r/llava.de.jsonl.partial"   # a write the kill cut
tr_ds --dataset "$D/llava.jsonl" --to de --out-dir "$tmp/r" -n 12 --resume >/dev/null 2>"$tmp/err"
check "--resume: continues (3 new of 5: nothing translated twice, a cut last line dropped)" sh -c \
    '[ $0 -eq 0 ] && grep -q "^  de  *5  *3 " "$1" && [ ! -e "$2/llava.de.jsonl.partial" ]' $? "$tmp/err" "$tmp/r"
check "--resume: the output equals a fresh run's" cmp -s "$tmp/r/llava.de.jsonl" "$tmp/b/llava.de.jsonl"
tr_ds --dataset "$D/llava.jsonl" --to de --out-dir "$tmp/r" -n 12 --resume >/dev/null 2>"$tmp/err"
check "--resume on a finished output of the same run: nothing to do" sh -c '[ $0 -eq 0 ] && grep -q "already written" "$1"' $? "$tmp/err"
expect_error "a finished output is not overwritten without --force" 1 "exists: --force" \
    tr_ds --dataset "$D/llava.jsonl" --to de --out-dir "$tmp/r" -n 12
expect_error "another language pair's output is refused" 1 '"to" is "de", this run.s is "fr"' \
    tr_ds --dataset "$D/llava.jsonl" --to fr -o "$tmp/r/llava.de.jsonl" -n 12 --resume
expect_error "another model's output is refused" 1 '"model" is' \
    tr_ds --dataset "$D/llava.jsonl" --to de --out-dir "$tmp/r" -n 12 --resume --offline -m "$FX/tiny-towervideo"
tr_ds --dataset "$D/llava.jsonl" --to de --out-dir "$tmp/r" -n 12 --force >/dev/null 2>"$tmp/err"
check "--force: translated again, the same file" sh -c '[ $0 -eq 0 ] && cmp -s "$1/r/llava.de.jsonl" "$1/b/llava.de.jsonl"' $? "$tmp"

# killed mid-run (SIGKILL: no clean-up at all), then resumed
python3 -c '
import json
w = "the quick brown fox jumps over the lazy dog near the river bank while birds sing".split()
for i in range(16): print(json.dumps({"id": i, "text": " ".join(w[i % 7:i % 7 + 5 + i % 4])}))' >"$tmp/many.jsonl"
"$T" translate -m "$M" --dataset "$tmp/many.jsonl" --to fr --out-dir "$tmp/k" -n 12 --batch 3 >/dev/null 2>&1 &
pid=$!
i=0
while [ $i -lt 600 ] && [ "$(cat "$tmp/k/many.fr.jsonl.partial" 2>/dev/null | wc -l)" -lt 3 ]; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
n_before=$(($(cat "$tmp/k/many.fr.jsonl.partial" 2>/dev/null | wc -l) - 1))
tr_ds --dataset "$tmp/many.jsonl" --to fr --out-dir "$tmp/k" -n 12 --batch 3 --resume >/dev/null 2>"$tmp/err"
rc=$?
tr_ds --dataset "$tmp/many.jsonl" --to fr --out-dir "$tmp/k2" -n 12 --batch 3 >/dev/null 2>&1
check "killed after $n_before items, resumed: exit 0, the fresh run's file" sh -c \
    '[ $0 -eq 0 ] && [ "$1" -gt 0 ] && cmp -s "$2/k/many.fr.jsonl" "$2/k2/many.fr.jsonl"' $rc "$n_before" "$tmp"
# SIGTERM: the run stops after the step, exit 143, the journal continues
"$T" translate -m "$M" --dataset "$tmp/many.jsonl" --to de --out-dir "$tmp/s" -n 24 >/dev/null 2>"$tmp/serr" &
pid=$!
i=0
while [ $i -lt 600 ] && [ "$(cat "$tmp/s/many.de.jsonl.partial" 2>/dev/null | wc -l)" -lt 2 ]; do sleep 0.05; i=$((i + 1)); done
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
check "SIGTERM: exit 143, 'stopped' in the summary, --resume continues" sh -c \
    '[ $0 -eq 143 ] && grep -q "stopped: run again with --resume" "$1" && test -s "$2/s/many.de.jsonl.partial"' $rc "$tmp/serr" "$tmp"

# ---- bad data -------------------------------------------------------------------------------------
expect_error "bad data stops the run: FILE:LINE and what is wrong, nothing written" 1 'bad.jsonl:2: conversations\[1\] has no field "value"' \
    tr_ds --dataset "$D/bad.jsonl" --to de --out-dir "$tmp/bad" -n 4
check "bad data: no journal, no output" sh -c '! ls "$0"/bad.* 2>/dev/null' "$tmp/bad"
tr_ds --dataset "$D/bad.jsonl" --to de --out-dir "$tmp/bad" -n 4 --on-error skip >/dev/null 2>"$tmp/err"
rc=$?
check "--on-error skip: exit 0, each bad line named" sh -c '[ $0 -eq 0 ] && grep -q "bad.jsonl:2: .*item skipped" "$1" &&
    grep -q "bad.jsonl:3: .*end of the line" "$1" && grep -q "bad.jsonl:4: no field \"conversations\"" "$1"' $rc "$tmp/err"
check "--on-error skip: the good items written" sh -c \
    '[ "$(sed "s/^{\"id\":\([0-9]*\),.*/\1/" "$0/bad.de.jsonl" | tr "\n" " ")" = "1 5 " ]' "$tmp/bad"
tr_ds --dataset "$D/bad.json" --to de --out-dir "$tmp/bad" -n 4 --on-error skip >/dev/null 2>"$tmp/err"
check "a JSON array: each bad item named by its line" sh -c 'grep -q "bad.json:3: no field \"conversations\"" "$0" &&
    grep -q "bad.json:7: .*expected" "$0" && grep -q "bad.json:8: conversations\[1\] has a \"value\" that is not a string" "$0"' "$tmp/err"
printf '[{"text": "a"},\n{"text": "b"}\n' >"$tmp/open.json"
expect_error "an unclosed array stops even with --on-error skip" 1 "open.json:3: the JSON array is not closed" \
    tr_ds --dataset "$tmp/open.json" --to de --on-error skip
printf '{\n  "text": "a"\n}\n' >"$tmp/obj.json"
expect_error "one pretty-printed object is neither an array nor JSON lines" 1 "obj.json: one JSON object" \
    tr_ds --dataset "$tmp/obj.json" --to de
printf '{"text": "a"}\n[1, 2]\n' >"$tmp/arr.jsonl"
expect_error "a line that is not an object" 1 "arr.jsonl:2: expected an object" tr_ds --dataset "$tmp/arr.jsonl" --to de
printf '{"caption": "A red bus."}\n{"text": "no caption"}\n' >"$tmp/cap.jsonl"
expect_error "--text-field: an item without the field" 1 'cap.jsonl:2: no field "caption"' \
    tr_ds --dataset "$tmp/cap.jsonl" --to de --text-field caption
# an item whose prompt cannot fit: the run stops, or goes on without it
expect_error "an item that does not fit the context stops the run, named" 1 "text.jsonl:1: to de: turn 0: .*context" \
    tr_ds --dataset "$D/text.jsonl" --to de --out-dir "$tmp/ctx" --ctx 16
tr_ds --dataset "$D/text.jsonl" --to de --out-dir "$tmp/ctx" --ctx 16 --on-error skip --force >/dev/null 2>"$tmp/err"
check "... or is skipped with --on-error skip (counted as failed)" sh -c '[ $0 -eq 0 ] && grep -q "^  de  *0  *0  *0  *6 " "$1"' $? "$tmp/err"

# ---- languages and usage -------------------------------------------------------------------------
expect_error "an unknown language: the valid ones listed" 1 "unknown language 'xx'" tr_ds --dataset "$D/text.jsonl" --to de,xx
check "... with the table" grep -q "pt-BR" "$tmp/err"
expect_error "--to the source language" 1 "source language" tr_ds --dataset "$D/text.jsonl" --to de,en
expect_error "--to a language twice" 2 "twice" tr_ds --dataset "$D/text.jsonl" --to de,DE
expect_error "several languages without --dataset" 2 "need --dataset" tr_ds --to de,fr -p "Hello"
expect_error "dataset options without --dataset" 2 "batch needs --dataset" tr_ds --to de --batch 2 -p "Hello"
expect_error "--dataset with -p" 2 "does not go with it" tr_ds --dataset "$D/text.jsonl" --to de -p "Hello"
expect_error "--dataset with --image" 2 "text only" tr_ds --dataset "$D/text.jsonl" --to de --image x.png
expect_error "--on-error takes skip or stop" 2 "expected skip or stop" tr_ds --dataset "$D/text.jsonl" --to de --on-error maybe
expect_error "-o with several languages" 2 "one output" tr_ds --dataset "$D/text.jsonl" --to de,fr -o "$tmp/x.jsonl"
expect_error "a missing dataset" 1 "cannot open" tr_ds --dataset "$tmp/none.jsonl" --to de
expect_error "the output would overwrite the input" 1 "overwrite the input" \
    tr_ds --dataset "$D/text.jsonl" --to de -o "$D/text.jsonl" --force
expect_error "--score-field without --min-score" 2 "give --min-score" tr_ds --dataset "$D/text.jsonl" --to de --score-field q

# ---- --min-score ---------------------------------------------------------------------------------
tr_ds --dataset "$D/scored.jsonl" --to de --out-dir "$tmp/m" -n 4 --min-score 0.85 --score-field cometkiwi >/dev/null 2>"$tmp/err"
check "--min-score 0.85 with --to: only items scored >= 0.85 translated (0.85 kept, 0.849 not)" sh -c \
    '[ "$(sed "s/^{\"id\":\([0-9]*\),.*/\1/" "$0/scored.de.jsonl" | tr "\n" " ")" = "0 1 3 5 " ] && grep -q "2 below cometkiwi 0.85" "$1"' "$tmp/m" "$tmp/err"
"$T" translate --dataset "$D/scored.jsonl" --min-score 0.85 --score-field cometkiwi >"$tmp/kept.jsonl" 2>"$tmp/err"
check "--min-score without --to: a filter (no model), the kept items unchanged on stdout" sh -c \
    '[ $0 -eq 0 ] && [ "$(wc -l <"$1")" -eq 4 ] && grep -q "kept 4 of 6" "$2" && grep -qF "{\"id\":1,\"text\":\"Good morning, how are you today?\",\"cometkiwi\":0.85}" "$1"' \
    $? "$tmp/kept.jsonl" "$tmp/err"
"$T" translate --dataset "$tmp/f/text.de.jsonl" --drop-flagged -o "$tmp/none.jsonl" 2>"$tmp/err"
check "--drop-flagged without --to: a filter to -o FILE" sh -c '[ $0 -eq 0 ] && test -e "$1" && [ ! -s "$1" ]' $? "$tmp/none.jsonl"
expect_error "--min-score: an item without the score names its line" 1 'llava.json:2: no field "score"' \
    "$T" translate --dataset "$D/llava.json" --min-score 0.5

finish
