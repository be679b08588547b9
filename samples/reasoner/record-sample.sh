#!/bin/bash
# record-sample.sh - re-makes samples/sample-session.jsonl, the session `ponder` replays
# when it finds no model: the shipped reasoner thinking about the demo question in the
# live workbench (what `ponder` with no arguments shows), recorded, then exported in the
# ponder format. Needs tmux and a build in build/. Deterministic: greedy decoding.
#   samples/reasoner/record-sample.sh [BUILD_DIR]
set -eu
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/ponder-record.XXXXXX")
SOCK="pdrec-$$"
trap 'tmux -L "$SOCK" kill-server 2>/dev/null || true; rm -rf "$TMPD"' EXIT
tmux -L "$SOCK" -f /dev/null new-session -d -s rec -x 120 -y 40 \
    "$BUILD/ponder run -m samples/models/reasoner.gguf -p 'What is 47 * 36?' --greedy \
     --db $TMPD/s.db --throttle 5; echo \$? > $TMPD/exit; sleep 60"
# wait for the end of the generation, then quit the workbench
for _ in $(seq 1 600); do
    tmux -L "$SOCK" capture-pane -p -t rec | grep -q ' done:' && break
    sleep 0.1
done
tmux -L "$SOCK" send-keys -t rec q
for _ in $(seq 1 100); do
    [ -f "$TMPD/exit" ] && break
    sleep 0.1
done
[ "$(cat "$TMPD/exit")" = 0 ] || { echo "record-sample: ponder run failed" >&2; exit 1; }
"$BUILD/ponder" export --db "$TMPD/s.db" --format ponder --session 1 \
    --out samples/sample-session.jsonl
echo "wrote samples/sample-session.jsonl"
