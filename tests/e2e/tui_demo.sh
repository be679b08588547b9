#!/bin/bash
# tui_demo.sh - `ponder` with no arguments and no model configured opens the workbench on
# the reasoner shipped in samples/models, thinking live about the sample question: the
# question, the model's own <think> block with its first step, and the thinking role in
# the status bar appear; q quits cleanly. Needs tmux and the committed model.
source "$(dirname "$0")/tui_lib.sh"
if [ ! -f "$PONDER_SOURCE_ROOT/samples/models/reasoner.gguf" ]; then
    echo "FAIL: samples/models/reasoner.gguf not found (it is committed)" >&2
    exit 1
fi
mkdir -p "$TMPD/nomodels"
start demo 120 40 env -u PONDER_MODEL PONDER_TEST_MODELS="$TMPD/nomodels" TMPDIR="$TMPD" \
    XDG_DATA_HOME="$TMPD/data" PONDER_SAMPLES="$PONDER_SOURCE_ROOT/samples" "$PONDER_BIN"
wait_for demo 'What is 47 \* 36\?' 20
wait_for demo 'We multiply 47 by 36' 20
wait_for demo 'reasoner' 5
keys demo q
[ "$(wait_exit demo 10)" = 0 ] || fail "exit status"
echo "ok: the workbench opens on the shipped reasoner"
