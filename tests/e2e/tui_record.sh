#!/bin/bash
# tui_record.sh - a recording that cannot commit is never reported as saved. Another
# process holds the database's write lock past the busy timeout: the status bar says
# REC FAILED with the unsaved count and a message explains; once the lock is gone `s`
# retries and every token is saved (the database then holds as many tokens as the trace).
# When the lock outlives the run, quitting says how many tokens were NOT saved and the
# exit status is 1.
source "$(dirname "$0")/tui_lib.sh"
find_model
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 is not installed" >&2; exit 77; }
DB="$TMPD/r.db"
# lock_db SECONDS: holds the write lock in the background (a FIFO keeps sqlite3 waiting)
lock_db() {
    mkfifo "$TMPD/lock.fifo"
    (sqlite3 -cmd ".timeout 5000" "$DB" <"$TMPD/lock.fifo" >/dev/null 2>&1 &) # waits out a commit
    exec 7>"$TMPD/lock.fifo"
    echo "BEGIN IMMEDIATE;" >&7
    echo "SELECT 1;" >&7
    # the lock is taken once sqlite3 has read both lines: wait until a writer is refused
    for ((i = 0; i < 100; i++)); do
        sqlite3 -cmd ".timeout 50" "$DB" "BEGIN IMMEDIATE; ROLLBACK;" 2>/dev/null || return 0
        sleep 0.1
    done
    fail "the lock was not taken"
}
unlock_db() {
    echo "COMMIT;" >&7
    exec 7>&-
    rm -f "$TMPD/lock.fifo"
    for ((i = 0; i < 50; i++)); do
        sqlite3 -cmd ".timeout 100" "$DB" "BEGIN IMMEDIATE; ROLLBACK;" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "the lock was not released"
}

# 1. Locked for a while, then released: s saves everything.
start rec 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy \
    -n 3000 --throttle 20
wait_for rec ' rec #1 ' 20
lock_db
wait_for rec 'REC FAILED #1 [0-9]+ unsaved' 20
wait_for rec 'recording failed: .*locked' 5
unlock_db
keys rec Space
wait_for rec 'PAUSED' 5
keys rec s
wait_for rec 'saved session 1' 15
wait_gone rec 'REC FAILED' 5
quit_confirm rec
[ "$(wait_exit rec 20)" = 0 ] || fail "run exited with an error after a successful retry"
grep -q 'session 1 recorded' "$TMPD/rec.err" || fail "no 'recorded' line"
n_err=$(grep -Eo 'recorded in .* \(([0-9]+) tokens\)' "$TMPD/rec.err" | grep -Eo '[0-9]+ tokens' | grep -Eo '[0-9]+')
n_db=$(sqlite3 "$DB" "SELECT count(*) FROM tokens WHERE session_id = 1")
[ "$n_err" = "$n_db" ] || fail "reported $n_err tokens, the database holds $n_db"
echo "ok: locked, reported, retried, all $n_db tokens saved"

# 2. Locked until after the run: quitting reports what was not saved, exit status 1.
rm -f "$DB" "$DB-wal" "$DB-shm"
start rec2 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy \
    -n 3000 --throttle 20
wait_for rec2 ' rec #1 ' 20
lock_db
wait_for rec2 'REC FAILED #1 [0-9]+ unsaved' 20
quit_confirm rec2 30
[ "$(wait_exit rec2 30)" = 1 ] || fail "run must exit 1 when tokens were lost"
grep -Eq 'session 1 in .*: [0-9]+ tokens recorded, [0-9]+ NOT saved' "$TMPD/rec2.err" ||
    fail "the exit message does not say what was lost: $(cat "$TMPD/rec2.err")"
unlock_db
echo "ok: lost tokens reported on exit (status 1): $(grep -Eo '[0-9]+ NOT saved' "$TMPD/rec2.err")"
