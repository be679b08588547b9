#!/bin/bash
# tui_heads.sh - per-head attention in the workbench: `:head N` colours the trace by one
# head's attention from the cursor token (rows recomputed by the model for the token under
# the cursor, again when it moves), the inspector shows a layers x heads grid and that
# head's most attended tokens; a head the model lacks is refused with the count; under
# --capture full the grid follows the newest token without a request; a replay without a
# model says the rows need one.
source "$(dirname "$0")/tui_lib.sh"
find_model
DB="$TMPD/t.db"

start t 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy -n 30
wait_for t 'finished \(length\)' 30
screen t | grep -q 'heads H0-' && fail "the grid shows before any rows were asked for"
keys t ':head 2' Enter
wait_for t 'attn from 34 H2 \.01' 10
wait_for t 'heads H0-7, max weight  H2' 10
wait_for t 'most attended \(head 2, mean over layers\)' 5
keys t Left
wait_for t 'attn from 33 H2 \.01' 10
keys t ':layer 1' Enter
wait_for t 'attn from 33 L1 H2 \.01' 10
wait_for t 'most attended \(head 2, layer 1\)' 5
keys t ':head 8' Enter
wait_for t 'head: expected mean or a head in \[0, 7\]' 5
keys t ':head mean' Enter
wait_for t 'attn from 33 L1 \.01' 5
quit_confirm t
[ "$(wait_exit t 15)" = 0 ] || fail "run exit status"

# --capture full: every token brings its rows; the grid follows the newest token
start f 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --no-record --greedy \
    -n 30 --capture full
wait_for f 'finished \(length\)' 30
wait_for f 'heads H0-7, max weight' 5
screen f | grep -Eq '^ *│ L4 ' || screen f | grep -Eq '│ L4  ' || fail "no L4 row in the grid"
quit_confirm f
[ "$(wait_exit f 15)" = 0 ] || fail "capture full exit status"

start r 120 40 "$PONDER_BIN" replay 1 --db "$DB"
wait_for r 'replay' 10
keys r ':head 0' Enter
wait_for r 'ponder replay ID -m MODEL' 5
keys r q
[ "$(wait_exit r 10)" = 0 ] || fail "replay exit status"
echo "ok: :head colours by one head, with the grid and its most attended tokens"
