#!/usr/bin/env bash
# cli_progress.sh - the bulk commands' progress (docs/cli.md, "Progress"): on a terminal
# (a real pty from `script`, or PONDER_PROGRESS=tty) one line redrawn with \r showing
# N/total, the rate and an ETA; not on a terminal no progress lines at all; either way a
# summary line on stderr at the end (how many, how long), and never a byte of it on
# stdout, so --json output stays clean. Needs no model (import, analyze, export, prune).
set -u
ponder=${PONDER_BIN:?}
root=${PONDER_SOURCE_ROOT:?}
. "$(dirname "$0")/check_lib.sh"
db=$tmp/p.db
# 300 traces, enough for the line to be redrawn a few times
for i in $(seq 1 300); do
    printf '{"prompt":"question %d","response":"<think>step one of %d\\n\\nstep two</think>%d"}\n' \
        "$i" "$i" "$i"
done >"$tmp/t.jsonl"

# not a terminal: the summary only
"$ponder" import --db "$db" "$tmp/t.jsonl" >"$tmp/out" 2>"$tmp/err"
check "import: exit 0" test $? -eq 0
check "import (no terminal): no progress line" bash -c "! grep -q \$'\\r' '$tmp/err'"
check "import: summary line" grep -Eq "^import: 300 traces from 1 file, 0 lines rejected, 0 duplicates skipped in ([0-9.]+ s|[0-9][0-9hms]*) \([0-9.]+ traces/s\)$" "$tmp/err"

# a real terminal (script gives ponder a pty for stdin/stdout/stderr)
if command -v script >/dev/null; then
    script -qec "'$ponder' analyze --all --db '$db' >/dev/null" /dev/null >"$tmp/pty" 2>&1
    check "analyze on a pty: exit 0" test $? -eq 0
    check "analyze on a pty: the line is redrawn" grep -q $'\r' "$tmp/pty"
    check "analyze on a pty: N/total" grep -aq "300/300 100%" "$tmp/pty"
    check "analyze on a pty: summary" grep -aEq "analyze: 300 traces analyzed, 0 failed in" "$tmp/pty"
else
    echo "note: no 'script' here; the pty check is left to PONDER_PROGRESS=tty below"
fi

# forced terminal mode: rate and ETA while running, nothing on stdout but the data
PONDER_PROGRESS=tty "$ponder" analyze --all --db "$db" --json >"$tmp/json" 2>"$tmp/err"
check "analyze --json (tty progress): exit 0" test $? -eq 0
check "analyze --json: stdout is JSON lines only" \
    bash -c "python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' '$tmp/json'"
check "analyze --json: 300 lines" test "$(wc -l <"$tmp/json")" -eq 300
check "analyze --json: no progress on stdout" bash -c "! grep -q \$'\\r' '$tmp/json'"
check "analyze (tty): progress redrawn on stderr" grep -q $'\r' "$tmp/err"
check "analyze (tty): N/total and percent" grep -aEq "[0-9]+/300 [0-9]+%" "$tmp/err"
check "analyze (tty): a rate" grep -aq " traces/s" "$tmp/err"
check "analyze (tty): summary after the line" grep -aq $'\r\e\\[Kanalyze: 300 traces analyzed' "$tmp/err"

# export and prune end with their summaries; PONDER_PROGRESS=lines gives plain lines
PONDER_PROGRESS=lines "$ponder" export --db "$db" --format messages --out "$tmp/x.jsonl" \
    >"$tmp/out" 2>"$tmp/err"
check "export: exit 0" test $? -eq 0
check "export (lines): plain progress lines" grep -Eq "^export \[#+\] 300/300 100%" "$tmp/err"
check "export (lines): nothing redrawn" bash -c "! grep -q \$'\\r' '$tmp/err'"
check "export: summary" grep -q "^export: exported 300 traces to $tmp/x.jsonl in" "$tmp/err"
"$ponder" prune --strategy redundant --all --db "$db" >"$tmp/out" 2>"$tmp/err"
check "prune: summary" grep -Eq "^prune: 300 traces pruned, 0 failed in" "$tmp/err"
PONDER_PROGRESS=off "$ponder" import --db "$db" "$tmp/t.jsonl" --allow-duplicates \
    >"$tmp/out" 2>"$tmp/err"
check "PONDER_PROGRESS=off: the summary stays" grep -q "^import: 300 traces" "$tmp/err"

echo "$fails failures"
[ $fails -eq 0 ]
