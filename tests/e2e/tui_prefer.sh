#!/bin/bash
# tui_prefer.sh - a preference marked in the live workbench becomes a step-dpo pair: on
# stories260K, inject two paragraphs (steps), pause, put the cursor before a step's first
# token, branch (b), steer the branch with injected text, resume, :prefer, save, quit; then
# `export --format step-dpo` gives one pair whose shared prefix is the parent's steps
# before the branch point and whose chosen / rejected are the branch's and the parent's
# next steps; `show` and the replay's status bar show the mark.
source "$(dirname "$0")/tui_lib.sh"
find_model
DB="$TMPD/t.db"
start live 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy \
    -n 3000 --throttle 30
wait_for live ' [0-9]{2,} tok \(' 20

# Two injected paragraphs make steps 1 and 3.
keys live ':inject \n\nFirst, the girl went out.\n\n' Enter
wait_for live 'First, the girl went out' 10
keys live ':inject \n\nWait, she came back.\n\n' Enter
wait_for live 'Wait, she came back' 10
wait_for live 'steps  [4-9] ' 20
keys live Space
wait_for live 'PAUSED' 5

# The cursor on the last token of step 1, then branch: the fork is where step 2 begins.
keys live g ']' ']' ']' h
keys live b
wait_for live 'branched at [0-9]+' 10
keys live ':inject Then she sang a song.\n\n' Enter
wait_for live 'injecting' 5
c1=$(tok_count live)
keys live Space
for ((i = 0; i < 200; i++)); do
    c2=$(tok_count live)
    [ -n "$c2" ] && [ "$c2" -gt $((c1 + 30)) ] && break
    sleep 0.1
done
keys live Space
wait_for live 'PAUSED' 5
wait_for live 'Then she sang a song' 5

# :prefer marks the branch chosen over its parent; s saves it.
keys live ':prefer' Enter
wait_for live 'session 2 chosen over 1' 5
wait_for live 'chosen>#1 unsaved' 5
keys live s
wait_for live 'saved session 2' 10
quit_confirm live
[ "$(wait_exit live 15)" = 0 ] || fail "run exited with an error"

"$PONDER_BIN" show 2 --db "$DB" >"$TMPD/show" || fail "show failed"
grep -q '^prefer   chosen over session 1' "$TMPD/show" || fail "show does not give the mark"
"$PONDER_BIN" export --format step-dpo --db "$DB" --out "$TMPD/steps.jsonl" --json \
    >"$TMPD/sum" 2>"$TMPD/export.err" || fail "export failed: $(cat "$TMPD/export.err")"
grep -q '"written":1' "$TMPD/sum" || fail "step-dpo: $(cat "$TMPD/sum")"
"$PONDER_BIN" show 1 --json --db "$DB" >"$TMPD/parent.json" || fail "show --json 1"
"$PONDER_BIN" show 2 --json --db "$DB" >"$TMPD/branch.json" || fail "show --json 2"
if ! python3 - "$TMPD/steps.jsonl" "$TMPD/parent.json" "$TMPD/branch.json" >"$TMPD/py" 2>&1 \
    <<'EOF'
import json, sys
rec = json.loads(open(sys.argv[1]).read())
parent = json.loads(open(sys.argv[2]).read())
branch = json.loads(open(sys.argv[3]).read())
m = rec["metadata"]
assert (m["source"], m["chosen_session"], m["rejected_session"]) == ("marked", 2, 1), m
fork = branch["session"]["fork_pos"]
assert branch["session"]["parent"] == 1
pb = [s["pos_begin"] for s in parent["steps"]]
assert fork in pb, (fork, pb)  # the branch parts at a step boundary
assert m["step"] == pb.index(fork)
def text(rec, lo, hi):
    return "".join(t["text"] for t in rec["tokens"]
                   if lo <= t["pos"] < hi and t["role"] in ("think", "injected"))
# the shared prefix: the parent's steps before the branch point
assert rec["initial_reason_steps"] == text(parent, pb[0], fork), rec["initial_reason_steps"]
# rejected: the parent's step at the branch point; chosen: the branch's own next step
# (its step beginning there, or up to its next step)
def step_end(rec, pos):
    at = [s["pos_end"] for s in rec["steps"] if s["pos_begin"] == pos]
    later = [s["pos_begin"] for s in rec["steps"] if s["pos_begin"] > pos]
    return at[0] if at else min(later) if later else 10**9
assert rec["rejected"] == text(parent, fork, step_end(parent, fork)).rstrip(), rec["rejected"]
assert rec["chosen"] == text(branch, fork, step_end(branch, fork)).rstrip(), rec["chosen"]
assert "Then she sang a song." in rec["chosen"], rec["chosen"]
assert rec["prompt"] == "Once upon a time"
EOF
then
    fail "step-dpo record: $(tail -3 "$TMPD/py")"
fi

# The mark is shown when the branch is replayed.
start replay 120 40 "$PONDER_BIN" replay 2 --db "$DB"
wait_for replay 'replay #2' 10
wait_for replay 'chosen>#1' 5
keys replay q
[ "$(wait_exit replay 10)" = 0 ] || fail "replay exited with an error"
echo "ok: branch, steer, :prefer, save; step-dpo pair from the parent's steps"
