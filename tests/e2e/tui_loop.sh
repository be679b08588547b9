#!/bin/bash
# tui_loop.sh - the research loop around the end of a generation and around branching:
#  1. after the end (length), c continues -n more tokens, and the recording grows with it;
#  2. prunes and tags made before a branch stay with the parent (saved there first) and
#     the branch starts without them; each branch generates its own -n tokens;
#  3. Ctrl-C with unsaved edits asks like q; a second Ctrl-C quits, lists what was
#     discarded and exits 130; Ctrl-C with nothing unsaved quits at once (status 0).
source "$(dirname "$0")/tui_lib.sh"
find_model
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 is not installed" >&2; exit 77; }
DB="$TMPD/l.db"
q() { sqlite3 "$DB" "$1"; }

# 1. continue after the end
start cont 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy -n 40
wait_for cont 'finished \(length\): c continues' 20
wait_for cont '\(40 gen\)' 5
n1=$(tok_count cont)
keys cont c
for ((i = 0; i < 100; i++)); do
    n2=$(tok_count cont)
    [ -n "$n2" ] && [ "$n2" -ge $((n1 + 40)) ] && break
    sleep 0.1
done
[ "$n2" -eq $((n1 + 40)) ] || fail "c continued from $n1 to $n2 tokens, not 40 more"
wait_for cont 'finished \(length\): c continues' 10
quit_confirm cont
[ "$(wait_exit cont 15)" = 0 ] || fail "run exited with an error after a continue"
[ "$(q 'SELECT count(*) FROM tokens WHERE session_id = 1')" = "$n2" ] ||
    fail "the recording holds $(q 'SELECT count(*) FROM tokens WHERE session_id = 1') tokens, the run showed $n2"
echo "ok: c continued 40 more tokens after the end ($n1 -> $n2), all recorded"

# 2. edits before a branch stay with the parent; the branch gets its own -n
rm -f "$DB"*
start br 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy \
    -n 200 --throttle 20
wait_for br ' [0-9]{2,} tok \(' 20
keys br ':inject \n\nFirst, the girl went out.\n\n' Enter
wait_for br 'First, the girl went out' 10
keys br ':inject \n\nWait, she came back.\n\n' Enter
wait_for br 'Wait, she came back' 10
wait_for br 'steps  [4-9] ' 20
keys br Space
wait_for br 'PAUSED' 5
keys br g ']' p
wait_for br '\(1 pruned\)' 5
keys br ':tag doubt looks wrong' Enter
wait_for br 'tagged' 5
keys br ']' ']' h b
wait_for br 'branched at [0-9]+' 10
fork=$(screen br | grep -Eo 'branched at [0-9]+' | grep -Eo '[0-9]+')
wait_for br '\(0 pruned\)' 5
keys br Space
wait_for br 'finished \(length\)' 30
quit_confirm br
[ "$(wait_exit br 15)" = 0 ] || fail "the branch run exited with an error"
[ "$(q 'SELECT count(*) FROM prunes WHERE session_id = 1')" = 1 ] ||
    fail "the parent's prune was not saved to session 1"
[ "$(q "SELECT count(*) FROM annotations WHERE session_id = 1 AND tag = 'doubt'")" = 1 ] ||
    fail "the parent's tag was not saved to session 1"
[ "$(q 'SELECT count(*) FROM prunes WHERE session_id = 2')" = 0 ] ||
    fail "the branch took the parent's prune"
[ "$(q 'SELECT count(*) FROM annotations WHERE session_id = 2')" = 0 ] ||
    fail "the branch took the parent's tag"
gen2=$(q "SELECT count(*) FROM tokens WHERE session_id = 2 AND role <> 3")
[ "$(q 'SELECT fork_pos FROM sessions WHERE id = 2')" = "$fork" ] || fail "fork position"
[ "$gen2" = 200 ] || fail "the branch generated $gen2 tokens, not its own -n 200"
echo "ok: the prune and tag stayed with session 1; branch 2 from $fork generated its own 200"

# 3. Ctrl-C asks when there are unsaved edits, quits on the second, exit 130
start cc 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --no-record --greedy \
    -n 3000 --throttle 20
wait_for cc ' [0-9]{2,} tok \(' 20
keys cc ':tag first' Enter
wait_for cc 'tagged' 5
keys cc C-c
wait_for cc 'unsaved changes \(0 prunes, 1 tag\): Ctrl-C again' 5
[ -s "$TMPD/cc.exit" ] && fail "the first Ctrl-C quit"
keys cc C-c
[ "$(wait_exit cc 15)" = 130 ] || fail "Ctrl-C with unsaved edits must exit 130"
grep -q 'quit without saving: 0 prunes, 1 tag discarded' "$TMPD/cc.err" ||
    fail "the exit does not say what was discarded: $(cat "$TMPD/cc.err")"
start cc2 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --no-record --greedy \
    -n 3000 --throttle 20
wait_for cc2 ' [0-9]{2,} tok \(' 20
keys cc2 C-c
[ "$(wait_exit cc2 15)" = 0 ] || fail "Ctrl-C with nothing unsaved must quit with status 0"
echo "ok: Ctrl-C asks with unsaved edits, then quits 130 listing them; quits at once otherwise"
