#!/usr/bin/env bash
# cli_files.sh - output files are written whole or not at all: export and plot go through
# an unpredictable temporary file next to the target (a planted symlink at the target is
# replaced, never followed), a SIGTERM or SIGINT mid-export leaves neither a temporary file
# nor a half-written target, a full disk (simulated with a file-size limit) is an error
# with nothing left behind, and bad --out values are named.
set -u
ponder=${PONDER_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
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

echo "$fails failures"
[ $fails -eq 0 ]
