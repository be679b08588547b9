#!/bin/bash
# tui_reopen.sh - a saved session re-opened with its model (`replay SESSION -m MODEL`,
# `run --from SESSION@POS`): the trace is re-encoded, and steering from a middle token
# records a branch whose first token is the chosen alternative and whose text before it
# is the saved session's; continuing a re-opened prefix records a branch at that prefix;
# a model with another vocabulary is refused with a message naming the position.
source "$(dirname "$0")/tui_lib.sh"
find_model
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 is not installed" >&2; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed" >&2; exit 77; }
DB="$TMPD/r.db"
q() { sqlite3 "$DB" "$1"; }

start gen 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy -n 60
wait_for gen 'finished \(length\)' 20
quit_confirm gen
[ "$(wait_exit gen 15)" = 0 ] || fail "recording the first session failed"

# Re-open session 1, put the cursor on position 5, pick the second alternative, Enter.
start re 120 40 "$PONDER_BIN" replay 1 --db "$DB" -m "$MODEL" -n 20
wait_for re 're-encoded 65 tokens' 20
wait_for re 'done:loaded' 5
keys re g l l l l l
wait_for re 'inspector  pos 5 ' 5
keys re Tab Tab j j Enter
wait_for re 'finished \(length\)' 20
# Steer again, before the branch's own fork (position 3): the new branch hangs off 1.
keys re Tab Tab g l l l
wait_for re 'inspector  pos 3 ' 5
keys re Tab Tab j j Enter
wait_for re 'rec #3' 10
wait_for re 'finished \(length\)' 20
quit_confirm re
[ "$(wait_exit re 15)" = 0 ] || fail "the re-opened run exited with an error"
[ "$(q 'SELECT parent_id, fork_pos FROM sessions WHERE id = 2')" = "1|5" ] ||
    fail "the steered branch is not session 2 at 5 of 1: $(q 'SELECT * FROM sessions WHERE id = 2')"
"$PONDER_BIN" show 1 --json --db "$DB" >"$TMPD/s1.json" || fail "show 1"
"$PONDER_BIN" show 2 --json --db "$DB" >"$TMPD/s2.json" || fail "show 2"
python3 - "$TMPD/s1.json" "$TMPD/s2.json" <<'PY' || fail "the branch does not start with the chosen alternative"
import json, sys
s1 = json.load(open(sys.argv[1])); s2 = json.load(open(sys.argv[2]))
t1 = s1["tokens"]; t2 = s2["tokens"]
assert [t["text"] for t in t1[:5]] == [t["text"] for t in t2[:5]], "prefix differs"
alt = t1[5]["top"][1][0]  # [id, logprob] pairs, best first
assert t2[5]["id"] == alt, (t2[5], alt)
assert t2[5]["id"] != t1[5]["id"]
assert len(t2) == 5 + 20, len(t2)
PY
[ "$(q 'SELECT parent_id, fork_pos FROM sessions WHERE id = 3')" = "1|3" ] ||
    fail "a branch at 3 of branch 2 (fork 5) must hang off session 1: $(q 'SELECT * FROM sessions WHERE id = 3')"
"$PONDER_BIN" show 3 --db "$DB" >/dev/null || fail "show 3 (the branch chain) failed"
echo "ok: replay -m re-encoded session 1; steering at 5 recorded branch 2 starting with alternative #2; steering at 3 recorded branch 3 of session 1"

# run --from 1@30: the first 30 tokens, then c generates 20 more: branch 4 at 30 of 1.
start fr 120 40 "$PONDER_BIN" run -m "$MODEL" --from 1@30 --db "$DB" -n 20 --greedy
wait_for fr 're-encoded 30 tokens' 20
keys fr c
wait_for fr 'finished \(length\)' 20
quit_confirm fr
[ "$(wait_exit fr 15)" = 0 ] || fail "run --from exited with an error"
[ "$(q 'SELECT parent_id, fork_pos, n_tokens FROM sessions WHERE id = 4')" = "1|30|50" ] ||
    fail "run --from 1@30 + c: $(q 'SELECT parent_id, fork_pos, n_tokens FROM sessions WHERE id = 4')"
# greedy from the same state: the continuation equals the saved session's
a=$(q "SELECT group_concat(tok) FROM (SELECT tok FROM tokens WHERE session_id = 1 AND pos BETWEEN 30 AND 49 ORDER BY pos)")
b=$(q "SELECT group_concat(tok) FROM (SELECT tok FROM tokens WHERE session_id = 4 ORDER BY pos)")
[ "$a" = "$b" ] || fail "greedy continuation from 30 differs from the saved one: $a vs $b"
echo "ok: run --from 1@30 re-encoded 30 tokens; c recorded branch 4 at 30, equal to the original greedy text"

# Another vocabulary: refused, naming the position.
"$PONDER_MKMODEL" --arch llama --vocab bpe --out "$TMPD/other.gguf" >/dev/null 2>&1 ||
    fail "mkmodel failed"
if "$PONDER_BIN" run -m "$TMPD/other.gguf" --from 1 --db "$DB" >/dev/null 2>"$TMPD/voc.err" </dev/null; then
    fail "a model with another vocabulary was accepted"
fi
grep -q 'vocabulary differs from session 1.s at position' "$TMPD/voc.err" ||
    fail "no vocabulary message: $(cat "$TMPD/voc.err")"
echo "ok: another vocabulary is refused: $(head -1 "$TMPD/voc.err")"
