#!/bin/bash
# tui_screen.sh - what the screen shows in hard cases: combining marks (Thai, Devanagari,
# NFD Latin) drawn with their base character and zero-width characters taking no column;
# the status bar at 80x24, 60x20 and 40x12 dropping whole fields, never cutting one.
source "$(dirname "$0")/tui_lib.sh"

# ---- combining marks: an imported trace, replayed ----
printf '%s\n' '{"messages":[{"role":"user","content":"ใช่ไหม नमस्ते cafe\u0301"},{"role":"assistant","content":"<think>ครับ दुनिया e\u0301te\u0301 zero\u200bwidth</think>ใช่"}]}' \
    >"$TMPD/marks.jsonl"
"$PONDER_BIN" import --db "$TMPD/m.db" "$TMPD/marks.jsonl" >/dev/null 2>"$TMPD/imp.err" ||
    fail "import: $(cat "$TMPD/imp.err")"
start marks 100 30 "$PONDER_BIN" replay 1 --db "$TMPD/m.db"
wait_for marks 'replay #1' 10
keys marks End
# (NFD: e followed by U+0301; U+200B takes no column)
wait_for marks "ใช่ไหม नमस्ते cafe"$'\u0301' 5
wait_for marks "ครับ दुनिया e"$'\u0301'"te"$'\u0301'" zerowidth" 5
keys marks q
[ "$(wait_exit marks 10)" = 0 ] || fail "replay exit status"
echo "ok: combining marks"

# ---- the status bar at small sizes: whole fields only ----
find_model
for size in "80 24" "60 20" "40 12"; do
    set -- $size
    s=s$1
    start $s $1 $2 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --no-record --greedy \
        -n 3000 --ctx 4096 --throttle 5
    wait_for $s 'tok \(' 10
    sleep 1
    for state in running paused; do
        bar=$(screen $s | tail -2 | head -1)
        # a field either appears whole or not at all
        if echo "$bar" | grep -q 'KV'; then
            echo "$bar" | grep -Eq 'KV [0-9]+/4096( |$)' || fail "$1x$2 $state: KV field cut: '$bar'"
        fi
        if echo "$bar" | grep -q 'tok'; then
            echo "$bar" | grep -Eq '(^| )[0-9]+ tok \([0-9]+ gen\)( |$)' ||
                fail "$1x$2 $state: token field cut: '$bar'"
        fi
        echo "$bar" | grep -Eq 'not recorded( \| \? help)? *$' || fail "$1x$2 $state: right end cut: '$bar'"
        echo "$bar" | grep -Eq '\|  |  \||^ *\|' && fail "$1x$2 $state: a stray separator: '$bar'"
        [ "$(echo "$bar" | wc -L)" -le "$1" ] || fail "$1x$2 $state: wider than the screen"
        if [ $state = running ]; then
            keys $s Space
            wait_for $s 'PAUSED' 5
        fi
    done
    keys $s q
    wait_exit $s 10 >/dev/null
    echo "ok: status bar at $1x$2: $(echo "$bar" | sed 's/  */ /g')"
done
