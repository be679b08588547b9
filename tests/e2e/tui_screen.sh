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

# ---- colour modes: v cycles them, the legend says which, :colour and :layer pick one ----
start col 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --no-record --greedy -n 120
wait_for col 'finished' 20
wait_for col 'surprisal bits <1 1 2 3.5 5 7 9 12\+' 5
before=$(screen_sgr col | sed -n 2,12p)
keys col v
wait_for col 'entropy bits <1 1 2 3.5 5 7 9 12\+' 5
after=$(screen_sgr col | sed -n 2,12p)
[ "$before" != "$after" ] || fail "colour: entropy colours the trace as surprisal did"
keys col v
wait_for col 'attn from [0-9]+ \.01 \.02' 5
keys col v
wait_for col 'attn received \.05 \.1' 5
keys col v
wait_for col 'step .*plan' 5
keys col v
wait_for col 'surprisal bits <1' 5
keys col ':layer 3' Enter
wait_for col 'attn from [0-9]+ L3' 5
keys col ':colour received' Enter
wait_for col 'attn received L3' 5
keys col ':layer 9' Enter
wait_for col 'layer: expected all or a layer in \[0, 4\]' 5
keys col ':colour heat' Enter
wait_for col "colour: expected surprisal, entropy, attention, received or step, got 'heat'" 5
keys col q
wait_exit col 10 >/dev/null
echo "ok: colour modes"

# ---- mouse: a click moves the cursor to the token or step under it, the wheel scrolls ----
# (xterm mouse reports written to the pane as the terminal would send them)
mouse() { # NAME BUTTON X Y
    keys "$1" -l "$(printf '\033[M%b%b%b' "\\x$(printf %x $((32 + $2)))" \
        "\\x$(printf %x $((33 + $3)))" "\\x$(printf %x $((33 + $4)))")"
}
click() { mouse "$1" 0 "$2" "$3"; mouse "$1" 3 "$2" "$3"; }
start mo 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --no-record --greedy -n 100
wait_for mo 'finished' 20
click mo 10 1 # " upon", the third token
wait_for mo ' trace  3/[0-9]+  browsing' 5
wait_for mo 'inspector  pos 2 ' 5
click mo 5 2 # a token on the second line
wait_for mo ' trace  (1[0-9]|2[0-9]|3[0-9])/[0-9]+  browsing' 5
click mo 80 2 # the first row of the step list (under its header): its first token
wait_for mo ' trace  6/[0-9]+  browsing' 5 # the step begins after the 5 prompt tokens
mouse mo 65 10 10 # wheel down over the trace: three lines
wait_for mo ' trace  ([4-9][0-9]|[3-9][0-9])/[0-9]+  browsing' 5
keys mo q
wait_exit mo 10 >/dev/null
echo "ok: mouse"
