#!/bin/sh
# layers_test.sh — the layer rule of docs/architecture.md, checked on the sources: every
# `#include "..."` of every file under src/ must name a header of the file's own layer or of a
# layer its row of the table "Layers" in docs/architecture.md lists under "may include". Headers
# are found by file name (each is unique across src/*/); include/tower.h is the public API, open
# to every layer. A failure names the file, the header and both layers.
# Also: no include cycle between the modules of one layer (a module is a file name without .c/.h:
# kernels.c + kernels.h are "kernels"), since a circle of includes is a circle of dependencies.
# When the objects are built ($TOWER_BUILD/obj, set by tests/run.sh) the same two rules are checked
# on the calls, with nm: a function may be declared in tower.h and still be defined a layer up.
# Known violations that other work removes are listed below as named exceptions; one that is no
# longer needed fails too, so the list cannot go stale.
# Environment: TOWER_BUILD (optional: the build directory). Last line: "N passed, N failed".

cd "$(dirname "$0")/.." || exit 1
. tests/clihelp.sh
DOC=docs/architecture.md
OBJ=${TOWER_BUILD:+$TOWER_BUILD/obj}

# ---- exceptions, one per line: "file header" (an include), "calls: module module" (a call from
# one folder/module to another), "cycle: modules..." (an include cycle, modules sorted),
# "calls cycle: modules..." (a call cycle). None today: keep it that way. -------------------------
EXCEPTIONS=''

# ---- the table: rows "| layer | `src/folder` | may include |" after the "Layers" heading --------
table=$(awk '/^## Layers/ { on = 1; next } on && /^## / { exit } on && /^\| *[a-z]+ *\|/ {
        n = split($0, f, "|"); l = f[2]; d = f[3]; a = f[4]
        gsub(/[ `]/, "", l); gsub(/[ `]/, "", d); gsub(/[ `]/, "", a); sub(/^src\//, "", d); sub(/\/$/, "", d)
        if (l == "layer") next
        if (a == "-" || a == "—") a = ""
        print d, l, a }' "$DOC")
if [ -z "$table" ]; then bad "no layer table under '## Layers' in $DOC"; finish; exit; fi
ok "layer table read from $DOC ($(echo "$table" | wc -l) layers)"

# every folder of src/ is in the table, every row names a folder that exists
for d in src/*/; do
    d=${d#src/}; d=${d%/}
    if echo "$table" | awk -v d="$d" '$1 == d { f = 1 } END { exit !f }'; then :; else bad "src/$d is not in the layer table of $DOC"; fi
done
echo "$table" | while read -r d l a; do [ -d "src/$d" ] || echo "src/$d"; done >"$tmp/gone"
if [ -s "$tmp/gone" ]; then bad "the layer table names folders that do not exist: $(tr '\n' ' ' <"$tmp/gone")"; fi

# ---- the edges: "from_folder from_file to_folder to_file what", one per include or call -------
ls src/*/*.h | sed 's|^src/||' | awk -F/ '{ print $2, $1 }' >"$tmp/headers"   # header folder
dup=$(awk '{ print $1 }' "$tmp/headers" | sort | uniq -d)
if [ -n "$dup" ]; then bad "header names used in two folders (includes would be ambiguous): $dup"; fi
for f in src/*/*.c src/*/*.h; do
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" | while read -r h; do
        echo "$f $h"
    done
done | awk 'FNR == NR { hdir[$1] = $2; next }
    { split($1, p, "/"); h = $2
      if (h == "tower.h") next                             # the public API: every layer may
      print p[2], p[3], (h in hdir) ? hdir[h] : "?", h, "-" }' "$tmp/headers" - >"$tmp/includes"

# the layer rule on one edge list; kind: include or calls
check_rule() {
    awk -v table="$table" -v exc="$EXCEPTIONS" -v kind="$1" '
        function mod(x) { sub(/\.[cho]$/, "", x); sub(/_(avx2|avx512|amx)$/, "", x); return x }
        BEGIN {
            n = split(table, rows, "\n")
            for (i = 1; i <= n; i++) {
                split(rows[i], r, " "); layer[r[1]] = r[2]
                m = split(r[3], al, ","); for (j = 1; j <= m; j++) if (al[j] != "") may[r[2], al[j]] = 1
            }
            n = split(exc, e, "\n")
            for (i = 1; i <= n; i++)
                if (kind == "include" && e[i] !~ /:/ || kind == "calls" && e[i] ~ /^calls: /) excused[e[i]] = 1
        }
        {
            fl = layer[$1]; tl = layer[$3]
            if ($3 == "?") { print "FAIL " $1 "/" $2 ": includes \"" $4 "\", which is no header of src/"; next }
            if (tl == fl || may[fl, tl]) next
            key = kind == "include" ? $1 "/" $2 " " $4 : "calls: " $1 "/" mod($2) " " $3 "/" mod($4)
            if (key in excused) { if (!(key in used)) print "ok   " key ": excused (" fl " -> " tl ")"; used[key] = 1; next }
            if (kind == "include") print "FAIL " $1 "/" $2 " (layer " fl ") includes " $4 " of layer " tl ", which " fl " may not include"
            else print "FAIL " $1 "/" $2 " (layer " fl ") calls " $5 " of " $3 "/" $4 " (layer " tl "), which " fl " may not use"
        }
        END { for (k in excused) if (!(k in used)) print "FAIL exception \"" k "\" is no longer needed: remove it from tests/layers_test.sh" }
    ' "$2"
}

# cycles between the modules of one folder on one edge list; kind: include or calls
check_cycles() {
    awk -v exc="$EXCEPTIONS" -v kind="$1" '
        function mod(x) { sub(/\.[cho]$/, "", x); sub(/_(avx2|avx512|amx)$/, "", x); return x }
        function dfs(u,    i, v, k, c) {
            state[u] = 1; stack[++sp] = u
            for (i = 1; i <= deg[u]; i++) {
                v = adj[u, i]
                if (state[v] == 1) {   # a back edge: the stack from v up to u is a cycle
                    c = v; for (k = sp; stack[k] != v; k--) c = c " " stack[k]
                    found[canon(c)] = 1
                } else if (!state[v]) dfs(v)
            }
            sp--; state[u] = 2
        }
        function canon(c,    n, x, i, j, t, s) {   # the members sorted: one name per cycle
            n = split(c, x, " ")
            for (i = 2; i <= n; i++) for (j = i; j > 1 && x[j - 1] > x[j]; j--) { t = x[j]; x[j] = x[j - 1]; x[j - 1] = t }
            s = x[1]; for (i = 2; i <= n; i++) s = s " " x[i]
            return s
        }
        $1 == $3 {
            a = $1 "/" mod($2); b = $3 "/" mod($4)
            if (a != b && !((a, b) in seen)) { seen[a, b] = 1; adj[a, ++deg[a]] = b; node[a] = node[b] = 1; edges++ }
        }
        END {
            pre = kind == "include" ? "cycle: " : "calls cycle: "
            n = split(exc, e, "\n"); for (i = 1; i <= n; i++) if (index(e[i], pre) == 1) excused[substr(e[i], length(pre) + 1)] = 1
            for (u in node) if (!state[u]) dfs(u)
            for (k in found) {
                if (k in excused) { used[k] = 1; print "ok   " pre k ": excused" }
                else print "FAIL " (kind == "include" ? "include" : "call") " cycle between modules of one layer: " k
            }
            for (k in excused) if (!(k in used)) print "FAIL exception \"" pre k "\" is no longer needed: remove it from tests/layers_test.sh"
            print "edges " edges + 0
        }' "$2"
}

# runs one check, prints its lines and counts its FAIL lines as failures
run_check() {
    desc=$1; shift
    "$@" >"$tmp/res"
    grep -v '^edges ' "$tmp/res"
    nf=$(grep -c '^FAIL' "$tmp/res")
    if [ "$nf" -eq 0 ]; then ok "$desc"; else fail=$((fail + nf)); fi
}

run_check "every include of src/ stays in its layer or goes to one it may include ($(wc -l <"$tmp/includes") includes)" \
    check_rule include "$tmp/includes"
run_check "no include cycle between the modules of a layer" check_cycles include "$tmp/includes"

# ---- the same on the calls: undefined symbols of each object, resolved to the object defining them
if [ -n "$OBJ" ] && [ -d "$OBJ" ] && command -v nm >/dev/null 2>&1; then
    for o in "$OBJ"/*/*.o; do
        nm -g --defined-only "$o" | awk -v o="${o#$OBJ/}" 'NF == 3 && $2 ~ /[TDBRVW]/ { print $3, o }'
    done >"$tmp/defs"
    for o in "$OBJ"/*/*.o; do
        nm -u "$o" | awk -v o="${o#$OBJ/}" '{ print o, $NF }'
    done | awk 'FNR == NR { def[$1] = $2; next }
        ($2 in def) { split($1, a, "/"); split(def[$2], b, "/"); print a[1], a[2], b[1], b[2], $2 }' "$tmp/defs" - >"$tmp/calls"
    if [ -s "$tmp/calls" ]; then
        run_check "every call between objects of $OBJ stays in its layer or goes to one it may use ($(wc -l <"$tmp/calls") calls)" \
            check_rule calls "$tmp/calls"
        run_check "no call cycle between the modules of a layer" check_cycles calls "$tmp/calls"
    else
        echo "skip calls: no objects with symbols in $OBJ"
    fi
else
    echo "skip calls: no build directory (TOWER_BUILD) or no nm"
fi

finish
