#!/bin/bash
# tui_replay.sh - `ponder` with no arguments and no model (not even the shipped reasoner)
# replays the recorded sample session (samples/sample-session.jsonl) from a temporary
# database: play/pause, seek, step, speed, search, and live-only keys refused. Needs no
# model.
source "$(dirname "$0")/tui_lib.sh"
mkdir -p "$TMPD/nomodels" "$TMPD/samples"
# samples/ without its model (samples/models/reasoner.gguf would be run live instead)
cp "$PONDER_SOURCE_ROOT/samples/sample-session.jsonl" "$TMPD/samples/"
start sample 120 40 env -u PONDER_MODEL PONDER_TEST_MODELS="$TMPD/nomodels" TMPDIR="$TMPD" \
    PONDER_SAMPLES="$TMPD/samples" "$PONDER_BIN"
wait_for sample 'replay #1' 10
wait_for sample 'What is 47' 5
keys sample Space
wait_for sample '\| paused ' 5
keys sample ':seek 10' Enter
wait_for sample ' 10/[0-9]+ tok' 5
keys sample .
wait_for sample ' 11/[0-9]+ tok' 5
keys sample ,
wait_for sample ' 10/[0-9]+ tok' 5
keys sample '+'
wait_for sample 'replay speed 40.0' 5
keys sample ':seek 524' Enter
keys sample '/' 'carry' Enter
wait_for sample '/carry: match 1 of [0-9]+' 5
keys sample n
wait_for sample '/carry: match 2 of [0-9]+' 5
keys sample a
wait_for sample 'needs a live model' 5
keys sample q
[ "$(wait_exit sample 10)" = 0 ] || fail "exit status"
ls "$TMPD"/ponder-sample-* >/dev/null 2>&1 && fail "the temporary database was left behind"
echo "ok: sample replay"
