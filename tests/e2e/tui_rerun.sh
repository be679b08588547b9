#!/bin/bash
# tui_rerun.sh - editing the question or the system message and asking again: `:question`
# opens the command line with the question to edit (line breaks as \n), `:question TEXT`
# saves this session's edits (a prune here) and runs TEXT as a new root session with the
# same model and settings; `:system TEXT` runs the question again with a system message;
# a replay without a model refuses with the reason.
source "$(dirname "$0")/tui_lib.sh"
find_model
DB="$TMPD/t.db"
Q() { sqlite3 "$DB" "$1"; }

start t 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy -n 12
wait_for t 'finished \(length\)' 30
keys t ':question' Enter
wait_for t '^:question Once upon a time' 5
keys t C-u Escape
wait_gone t '^:question' 5
keys t p
wait_for t 'steps +1 +\(1 pruned\)' 5
keys t ':question The cat sat\n\\nOn the mat' Enter
wait_for t 'rec #2 ' 30
wait_for t 'finished \(length\)' 30
wait_for t 'The cat sat' 5
keys t ':system Be brief.' Enter
wait_for t 'rec #3 ' 30
wait_for t 'finished \(length\)' 30
quit_confirm t
[ "$(wait_exit t 15)" = 0 ] || fail "run exit status"
grep -q 'asking again as a new session' "$TMPD/t.err" || fail "no note on stderr"

[ "$(Q 'select count(*) from sessions')" = 3 ] || fail "expected 3 sessions"
[ "$(Q 'select count(*) from sessions where parent_id is not null')" = 0 ] ||
    fail "a rerun is a new root session, not a branch"
[ "$(Q 'select count(*) from prunes where session_id = 1')" = 1 ] ||
    fail "the prune made before :question was not saved to session 1"
[ "$(Q 'select count(*) from prunes where session_id > 1')" = 0 ] ||
    fail "the prune moved to the new session"
want=$(printf 'The cat sat\n\\nOn the mat')
[ "$(Q "select content from messages where session_id = 2 and role = 'user'")" = "$want" ] ||
    fail "session 2's question: $(Q "select content from messages where session_id = 2")"
[ "$(Q "select count(*) from messages where session_id = 2 and role = 'system'")" = 0 ] ||
    fail "session 2 has a system message"
[ "$(Q "select content from messages where session_id = 3 and role = 'system'")" = "Be brief." ] ||
    fail "session 3's system message"
[ "$(Q "select content from messages where session_id = 3 and role = 'user'")" = "$want" ] ||
    fail "session 3 asks session 2's question"
for s in 1 2 3; do # the run's settings carry over: -n 12 generated tokens each
    [ "$(Q "select count(*) from tokens where session_id = $s and role != 0")" = 12 ] ||
        fail "session $s: $(Q "select count(*) from tokens where session_id = $s and role != 0") generated tokens, not 12"
done

# a replay has no model to ask with
start r 120 40 "$PONDER_BIN" replay 2 --db "$DB"
wait_for r 'replay' 10
keys r ':question Why?' Enter
wait_for r 'question: needs the model' 5
keys r q
[ "$(wait_exit r 10)" = 0 ] || fail "replay exit status"
echo "ok: :question and :system ask again as new sessions"
