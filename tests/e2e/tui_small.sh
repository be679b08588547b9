#!/bin/bash
# tui_small.sh - the workbench at 80x24 without colour (NO_COLOR): the narrow layout
# (trace on top, steps and inspector below, KV swapped in by focus), resizing below the
# minimum and back, the help overlay, command-line completion, branching and steering
# by an alternative, :q! and the saved command history.
source "$(dirname "$0")/tui_lib.sh"
find_model
start small 80 24 env NO_COLOR=1 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time 中文 é" \
    --no-record --greedy -n 3000 --throttle 30
wait_for small ' [0-9]+ tok \(' 20
wait_for small ' steps ' 5
wait_for small ' inspector ' 5
wait_for small 'time 中文 é' 5   # wide characters, byte-fallback tokens joined again
# NO_COLOR: attributes only, no colour sequences.
if screen_sgr small | grep -Eq $'\e\\[[0-9;]*(38;5;|48;5;|3[0-7]m|4[0-7]m)'; then
    fail "colour escape sequences despite NO_COLOR"
fi
screen_sgr small | grep -q $'\e\\[[0-9;]*[14]m' || fail "no bold/underline encoding under NO_COLOR"
# Tab to the KV pane: it takes the steps' place.
keys small Tab
keys small Tab
keys small Tab
wait_for small ' KV ' 5
wait_gone small ' steps ' 5
keys small Tab
wait_for small ' steps ' 5
# Too small, then big again.
T resize-window -t small -x 60 -y 20
wait_for small 'ponder needs 80x24' 5
T resize-window -t small -x 100 -y 30
wait_for small ' inspector ' 5
wait_gone small 'ponder needs' 5
# Help overlay from the key table.
keys small '?'
wait_for small 'keys \(live\)' 5
wait_for small 'answer now' 3
keys small Escape
wait_gone small 'keys \(live\)' 5
# Command line: Tab completes a command name; Esc cancels.
keys small ':mo' Tab
wait_for small '^:mode' 5
keys small Escape
wait_for small 'cancelled' 5
keys small ':goto 2' Enter
wait_for small ' trace  3/' 5
# Branch after the cursor token (sampling, since greedy would repeat the parent): the
# trace is cut back to 3 tokens and grows again.
keys small ':temp 0.9' Enter
keys small b
wait_for small 'branched at 3 \(resample\)' 10
# Steer: inspector focus, second alternative, Enter (once the branch has 6 tokens).
wait_for small ' trace +[0-9]+/([6-9]|[1-9][0-9]+) ' 10
keys small ':goto 5' Enter
wait_for small ' trace  6/' 5
keys small Tab Tab
keys small j j Enter
wait_for small 'branched at 5 \(alternative\)' 10
keys small ':q!' Enter
[ "$(wait_exit small 15)" = 0 ] || fail "exit status"
grep -qx 'goto 2' "$PONDER_HISTORY" || fail "command history not saved to $PONDER_HISTORY"
echo "ok: 80x24, resize, help, completion, branch, steer, history"
