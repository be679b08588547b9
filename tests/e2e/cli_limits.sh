#!/usr/bin/env bash
# cli_limits.sh - sizes ponder bounds, with clear errors: a paragraph over 1 MiB, more
# than 100,000 paragraphs in a trace, nesting deeper than 64 levels and repeated step
# indices are refused at import, naming the record and the limit; a record of 99,000 tiny
# paragraphs imports, shows and exports in memory bounded by a small multiple of its size
# (peak RSS under 64 MiB for a 300 KB record that makes 99,000 rows), and a record nested
# within the limit exports to something that imports again.
set -u
ponder=${PONDER_BIN:?}
. "$(dirname "$0")/check_lib.sh"
# peak_kib CMD...: runs CMD, prints its peak RSS in KiB (GNU time), returns its status
peak_kib() { /usr/bin/time -f '%M' -o "$tmp/peak" "$@" >/dev/null 2>"$tmp/err"; local rc=$?; cat "$tmp/peak"; return $rc; }

python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
def rec(name, think):
    with open(f"{d}/{name}.jsonl", "w") as f:
        f.write(json.dumps({"prompt": "q", "response": "<think>" + think + "</think>ok"}) + "\n")
rec("long_para", "x" * ((1 << 20) + 1))
rec("too_many", "a\n\n" * 100001)
rec("many", "a\n\n" * 99000)
def nest(n):
    v = 1
    for _ in range(n):
        v = {"k": v}
    return v
for name, n in (("deep", 70), ("nested_ok", 60)):
    with open(f"{d}/{name}.jsonl", "w") as f:
        f.write(json.dumps({"prompt": "q", "response": "r", "extra": nest(n)}) + "\n")
steps = [{"index": i, "pos_begin": 1, "pos_end": 2, "kind": "plan"} for i in (0, 0)]
with open(f"{d}/dup_steps.jsonl", "w") as f:
    f.write(json.dumps({"ponder": 1, "session": {"id": 1, "source": "x", "created_ms": 1,
        "updated_ms": 1, "finished": True, "parent": None, "fork_pos": 0, "n_tokens": 2,
        "meta": None, "model": None, "settings": None}, "messages": [], "final": "x",
        "tokens": [{"pos": p, "id": -1, "role": "think", "flags": 0, "text": "t",
                    "logprob": None, "entropy": None, "top": [], "attn": None}
                   for p in (0, 1)], "steps": steps}) + "\n")
PY

"$ponder" import --db "$tmp/a.db" "$tmp/long_para.jsonl" >/dev/null 2>"$tmp/err"
check "a paragraph over 1 MiB is refused" grep -q 'long_para.jsonl:1: a paragraph of 1048577 bytes.*at most 1048576' "$tmp/err"
"$ponder" import --db "$tmp/a.db" "$tmp/too_many.jsonl" >/dev/null 2>"$tmp/err"
check "more than 100000 paragraphs is refused" grep -q 'too_many.jsonl:1: more than 100000 paragraphs' "$tmp/err"
"$ponder" import --db "$tmp/a.db" "$tmp/deep.jsonl" >/dev/null 2>"$tmp/err"
check "nesting deeper than 64 is refused" grep -q 'deep.jsonl:1: nested deeper than 64 levels' "$tmp/err"
"$ponder" import --db "$tmp/a.db" "$tmp/dup_steps.jsonl" >/dev/null 2>"$tmp/err"
check "repeated step indices are refused" grep -q 'steps\[1\].index: 0 repeats' "$tmp/err"

"$ponder" import --db "$tmp/n.db" "$tmp/nested_ok.jsonl" >/dev/null 2>&1
check "60 levels import" test $? -eq 0
"$ponder" export --db "$tmp/n.db" --format ponder --out "$tmp/n.jsonl" >/dev/null 2>&1
"$ponder" import --db "$tmp/n2.db" "$tmp/n.jsonl" >/dev/null 2>"$tmp/err"
check "its export imports again" test $? -eq 0

# The bound is on what the data costs: each peak is measured against the peak of a command
# that opens the same kind of database and reads nothing (a build linked with the CUDA
# libraries maps ~200 MB of them before main runs). Under AddressSanitizer the allocator's
# quarantine and shadow memory make RSS meaningless, so there the figures are printed and
# not checked.
sanitized=0
ldd "$ponder" 2>/dev/null | grep -Eq 'lib(a|t)san' && sanitized=1
bounded() { # NAME KIB BASE
    local delta=$(( $2 - $3 ))
    if [ "$sanitized" = 1 ]; then
        echo "SKIP $1: peak $2 KiB (base $3 KiB) not checked in a sanitizer build"
    else
        check "$1: peak $2 KiB, $delta KiB over the base $3 KiB, < 64 MiB" test "$delta" -lt 65536
    fi
}
if [ -x /usr/bin/time ]; then
    "$ponder" import --db "$tmp/base.db" "$tmp/nested_ok.jsonl" >/dev/null 2>&1
    base=$(peak_kib "$ponder" ls --db "$tmp/base.db")
    kib=$(peak_kib "$ponder" import --db "$tmp/m.db" "$tmp/many.jsonl")
    bounded "import of 99000 paragraphs" "$kib" "$base"
    kib=$(peak_kib "$ponder" show 1 --db "$tmp/m.db" --json)
    bounded "show --json" "$kib" "$base"
    kib=$(peak_kib "$ponder" show 1 --db "$tmp/m.db")
    bounded "show" "$kib" "$base"
    kib=$(peak_kib "$ponder" export --db "$tmp/m.db" --format ponder --out "$tmp/m.jsonl")
    bounded "export --format ponder" "$kib" "$base"
    "$ponder" import --db "$tmp/m2.db" "$tmp/m.jsonl" >/dev/null 2>&1
    check "the export imports again" test $? -eq 0
else
    echo "SKIP: /usr/bin/time (Debian package time) is not installed: memory not measured"
    exit 77
fi

echo "$fails failures"
[ $fails -eq 0 ]
