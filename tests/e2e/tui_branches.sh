#!/bin/bash
# tui_branches.sh - the branch tree: a recorded session with two branches; B shows the
# family (parent, children, branch points) live and in replay, d diffs a branch against
# its parent from the fork side by side, Enter opens a branch in the replay, and :diff
# refuses a session that is not a branch.
source "$(dirname "$0")/tui_lib.sh"
find_model
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 is not installed" >&2; exit 77; }
DB="$TMPD/b.db"
q() { sqlite3 "$DB" "$1"; }

start live 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy \
    -n 60 --seed 3
wait_for live 'finished \(length\)' 20
keys live ':temp 0.9' Enter
wait_for live 'sampling: temp 0.9' 5
keys live ':goto 20' Enter b
wait_for live ' rec #2 ' 10 # the branch after token 20 records as #2
wait_for live 'finished \(length\)' 20
keys live ':goto 40' Enter b
wait_for live ' rec #3 ' 10
wait_for live 'finished \(length\)' 20
keys live s
wait_for live 'saved' 10
keys live B
wait_for live 'branches - j/k select' 5
wait_for live '#1  65 tok' 5
wait_for live '  #2  from #1 at 21' 5
wait_for live '    #3  from #2 at 41 .*\(shown\)' 5
keys live Escape
quit_confirm live
[ "$(q 'SELECT count(*) FROM sessions')" = 3 ] || fail "expected 3 sessions, got $(q 'SELECT count(*) FROM sessions')"
echo "ok: the live tree shows the family"

start rp 120 40 "$PONDER_BIN" replay 1 --db "$DB"
wait_for rp 'replay #1' 10
keys rp ':diff' Enter
wait_for rp 'diff: .*session 1 is not a branch' 5
keys rp B
wait_for rp '#1 .*\(shown\)' 5
keys rp j d
wait_for rp '#1 \(parent\) vs #2 \(branch\) from position 21' 5
wait_for rp 'parent #1 +│ *branch #2' 5
# the two columns hold each session's own text from the fork
p_text=$("$PONDER_BIN" show 1 --db "$DB" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("".join(t["text"] for t in d["tokens"] if t["pos"] >= 21)[:12].strip())')
screen rp | grep -qF "$p_text" || fail "the diff does not show the parent's text '$p_text'"
keys rp Escape
keys rp B j Enter
wait_for rp 'showing #2' 5
wait_for rp 'replay #2' 5
keys rp q
[ "$(wait_exit rp 10)" = 0 ] || fail "replay exit status"
echo "ok: replay tree, diff and open"
