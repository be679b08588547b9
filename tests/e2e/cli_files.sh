#!/usr/bin/env bash
# cli_files.sh - output files are written whole or not at all: export and plot go through
# an unpredictable temporary file next to the target (a planted symlink at the target is
# replaced, never followed), a SIGTERM or SIGINT mid-export leaves neither a temporary file
# nor a half-written target, a full disk (simulated with a file-size limit) is an error
# with nothing left behind, and bad --out values are named.
set -u
ponder=${PONDER_BIN:?}
. "$(dirname "$0")/check_lib.sh"
no_temp() { ! ls -A "$1" | grep -q '\.tmp'; }

# A database big enough that an export takes a while (20000 short traces).
for ((i = 0; i < 20000; i++)); do
    printf '{"prompt":"question %d","response":"<think>step one.\\n\\nstep two.</think>answer %d"}\n' $i $i
done >"$tmp/many.jsonl"
"$ponder" import --db "$tmp/t.db" "$tmp/many.jsonl" >/dev/null 2>&1
check "import 20000 traces" test $? -eq 0
mkdir "$tmp/out"

# A planted symlink at the target is replaced, its victim untouched.
echo "precious" >"$tmp/victim"
ln -s "$tmp/victim" "$tmp/out/e.jsonl"
"$ponder" export --db "$tmp/t.db" --format messages --session 1 --out "$tmp/out/e.jsonl" \
    >/dev/null 2>&1
check "export over a symlink" test $? -eq 0
check "the victim is untouched" test "$(cat "$tmp/victim")" = precious
check "the target is a regular file now" test -f "$tmp/out/e.jsonl" -a ! -L "$tmp/out/e.jsonl"
check "no temporary file left" no_temp "$tmp/out"

# Interrupted: the temporary file appears, a signal ends the export, nothing is left.
for sig in TERM INT; do
    rm -f "$tmp/out/all.jsonl"
    "$ponder" export --db "$tmp/t.db" --format messages --out "$tmp/out/all.jsonl" \
        >/dev/null 2>&1 &
    pid=$!
    seen=0
    for ((k = 0; k < 200; k++)); do
        if ls -A "$tmp/out" | grep -q '^\.all\.jsonl\.tmp\.'; then seen=1; break; fi
        sleep 0.01
    done
    kill -$sig $pid 2>/dev/null
    wait $pid
    rc=$?
    if [ $seen = 1 ]; then
        check "SIG$sig: export ended by the signal" test $rc -gt 128
        check "SIG$sig: no temporary file left" no_temp "$tmp/out"
        check "SIG$sig: no half-written target" test ! -e "$tmp/out/all.jsonl"
    else
        check "SIG$sig: export finished before the signal (then it is whole)" \
            test -s "$tmp/out/all.jsonl"
    fi
done

# A full disk: writes beyond a 64 KiB file-size limit fail (SIGXFSZ ignored, so EFBIG).
(trap '' XFSZ; ulimit -f 64; "$ponder" export --db "$tmp/t.db" --format messages \
    --out "$tmp/out/full.jsonl" >/dev/null 2>"$tmp/err")
check "full disk: export fails" test $? -eq 1
check "full disk: the message says why" grep -qi 'write failed\|too large\|fsync' "$tmp/err"
check "full disk: nothing left" test ! -e "$tmp/out/full.jsonl"
check "full disk: no temporary file left" no_temp "$tmp/out"
(trap '' XFSZ; ulimit -f 64; "$ponder" plot 1 --db "$tmp/t.db" --width 20000 \
    --out "$tmp/out/p.svg" >/dev/null 2>&1)
check "plot: no temporary file left after any outcome" no_temp "$tmp/out"

# Bad --out values are named.
"$ponder" export --db "$tmp/t.db" --format messages --out "" >/dev/null 2>"$tmp/err"
check "--out '' is a usage error" test $? -eq 2
check "--out '' is named" grep -q 'output file name is empty\|--out' "$tmp/err"
"$ponder" export --db "$tmp/t.db" --format messages --out "$tmp/out" >/dev/null 2>"$tmp/err"
check "--out FOLDER exits non-zero" test $? -ne 0
check "--out FOLDER is named" grep -q 'is a folder' "$tmp/err"
"$ponder" plot 1 --db "$tmp/t.db" --out "$tmp/nowhere/p.svg" >/dev/null 2>"$tmp/err"
check "plot into a missing folder names it" grep -q 'nowhere' "$tmp/err"

# Runaway values: a surprisal of 1e9 bits plots on a clipped axis (small, valid XML, the
# value in a tooltip); a prompt with control characters still gives well-formed XML;
# import refuses metrics that are not finite or out of range, naming the field.
rec='{"ponder":1,"session":{"id":1,"source":"x","created_ms":1,"updated_ms":1,"finished":true,'
rec+='"parent":null,"fork_pos":0,"n_tokens":2,"meta":null,"model":null,"settings":null},'
rec+='"messages":[{"role":"user","content":"a\u0001b<&>\u0008"}],"final":"x","tokens":['
rec+='{"pos":0,"id":-1,"role":"prompt","flags":0,"text":"a","logprob":null,"entropy":null,'
rec+='"top":[],"attn":null},{"pos":1,"id":-1,"role":"think","flags":0,"text":"b",'
rec+='"logprob":LP,"entropy":EN,"top":[],"attn":null}],"steps":[]}'
echo "${rec/LP/-693147180.0}" | sed 's/EN/1.0/' >"$tmp/huge.jsonl"
"$ponder" import --db "$tmp/h.db" "$tmp/huge.jsonl" >/dev/null 2>&1
"$ponder" plot 1 --db "$tmp/h.db" --out "$tmp/out/h.svg" >/dev/null 2>&1
check "plot of 1e9 bits" test $? -eq 0
check "plot stays small" test "$(stat -c %s "$tmp/out/h.svg")" -lt 20000
check "plot says the bar is clipped" grep -q 'bits (clipped)' "$tmp/out/h.svg"
check "plot is well-formed XML" python3 -c "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])" "$tmp/out/h.svg"
for bad in 'LP=1e300 EN=1.0 not a finite number' 'LP=0.5 EN=1.0 outside' 'LP=-1.0 EN=-2.0 outside'; do
    set -- $bad
    lp=${1#LP=} en=${2#EN=}
    echo "${rec/LP/$lp}" | sed "s/EN/$en/" >"$tmp/bad.jsonl"
    "$ponder" import --db "$tmp/b.db" "$tmp/bad.jsonl" >/dev/null 2>"$tmp/err"
    check "import refuses logprob $lp entropy $en" grep -q "tokens\[1\]\.\(logprob\|entropy\): .*$3" "$tmp/err"
done

# A corrupt row stops plot, show and export with a message naming it (and, in the
# sanitiser builds, without leaking what was read before it).
"$ponder" import --db "$tmp/c.db" "$tmp/huge.jsonl" >/dev/null 2>&1
sqlite3 "$tmp/c.db" "UPDATE tokens SET topk = x'0102' WHERE pos = 1" 2>/dev/null ||
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE tokens SET topk = x'0102' WHERE pos = 1\"); c.commit()" "$tmp/c.db"
for cmd in "plot 1 --out $tmp/out/c.svg" "show 1" "export --format ponder --out $tmp/out/c.jsonl"; do
    "$ponder" $cmd --db "$tmp/c.db" >/dev/null 2>"$tmp/err"
    rc=$?
    check "corrupt row: ${cmd%% *} exits 1" test $rc -eq 1
    check "corrupt row: ${cmd%% *} names it" grep -q 'pos 1: top-k blob' "$tmp/err"
done

echo "$fails failures"
[ $fails -eq 0 ]
