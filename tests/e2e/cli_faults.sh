#!/usr/bin/env bash
# cli_faults.sh - what ponder promises when things go wrong (docs/reliability.md):
#  * kill -9 at random points of an import: the database passes integrity_check, the
#    sessions imported before are intact, and only whole batches (256 traces) are there;
#  * kill -9 while recording generations (generate --in --samples --db): integrity_check
#    ok, earlier sessions intact, every recorded session's tokens contiguous from 0;
#  * a full disk (a file-size limit) during an import: a clear error, the database intact;
#  * a stalled output pipe: generate with full capture waits instead of buffering.
set -u
ponder=${PONDER_BIN:?}
root=${PONDER_SOURCE_ROOT:?}
models=${PONDER_TEST_MODELS:-$root/../shared/models}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_DATA_HOME=$tmp/xdg # generate records into the default database
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 is not installed"; exit 77; }
q() { sqlite3 "$1" "$2"; }
integrity() { [ "$(q "$1" 'PRAGMA integrity_check')" = ok ]; }
contiguous() { # every session's tokens are 0..n-1
    [ "$(q "$1" 'SELECT count(*) FROM (SELECT session_id, min(pos) lo, max(pos) hi, count(*) n
         FROM tokens GROUP BY session_id) WHERE lo <> 0 OR hi <> n - 1')" = 0 ]
}
snapshot() { q "$1" "SELECT id || ':' || (SELECT count(*) FROM tokens t WHERE t.session_id = s.id)
                     FROM sessions s WHERE id <= $2 ORDER BY id" | md5sum; }

# ---- kill -9 during an import ----
for ((i = 0; i < 30000; i++)); do
    printf '{"prompt":"q %d","response":"<think>one.\\n\\ntwo.</think>a %d"}\n' $i $i
done >"$tmp/big.jsonl"
head -100 "$tmp/big.jsonl" >"$tmp/first.jsonl"
"$ponder" import --db "$tmp/i.db" "$tmp/first.jsonl" >/dev/null 2>&1
before=$(snapshot "$tmp/i.db" 100)
for k in 1 2 3 4 5; do
    n0=$(q "$tmp/i.db" 'SELECT count(*) FROM sessions')
    # the same file each time (its first lines are already in): duplicates allowed, so
    # every batch is 256 new sessions
    "$ponder" import --allow-duplicates --db "$tmp/i.db" "$tmp/big.jsonl" >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 9 + 1))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    n1=$(q "$tmp/i.db" 'SELECT count(*) FROM sessions')
    check "import kill -9 #$k: integrity_check" integrity "$tmp/i.db"
    check "import kill -9 #$k: earlier sessions intact" test "$(snapshot "$tmp/i.db" 100)" = "$before"
    check "import kill -9 #$k: whole batches only ($((n1 - n0)) new)" \
        test $(((n1 - n0) % 256)) -eq 0 -o $((n1 - n0)) -eq 30000
    check "import kill -9 #$k: tokens contiguous" contiguous "$tmp/i.db"
done

# ---- a full disk during an import ----
cp "$tmp/i.db" "$tmp/f.db"
last=$(q "$tmp/f.db" 'SELECT max(id) FROM sessions')
before=$(snapshot "$tmp/f.db" "$last")
(trap '' XFSZ; ulimit -f 2048; "$ponder" import --allow-duplicates --db "$tmp/f.db" "$tmp/big.jsonl" \
    >/dev/null 2>"$tmp/err")
check "full disk: import fails" test $? -ne 0
check "full disk: the error says so" grep -qi 'disk\|full\|too large\|I/O' "$tmp/err"
check "full disk: integrity_check" integrity "$tmp/f.db"
check "full disk: earlier sessions intact" test "$(snapshot "$tmp/f.db" "$last")" = "$before"
check "full disk: what it committed is whole" contiguous "$tmp/f.db"

model=$models/stories260K.gguf
if [ ! -r "$model" ]; then
    echo "SKIP: $model not found; $fails failures before the skip"
    [ $fails -eq 0 ] && exit 77
    exit 1
fi

# ---- kill -9 while recording generations ----
for ((i = 0; i < 200; i++)); do printf '{"question":"Once upon a time %d","answer":"x"}\n' $i; done \
    >"$tmp/prompts.jsonl"
"$ponder" import --db "$tmp/g.db" "$tmp/first.jsonl" >/dev/null 2>&1
before=$(snapshot "$tmp/g.db" 100)
for k in 1 2 3; do
    "$ponder" generate -m "$model" --in "$tmp/prompts.jsonl" --samples 2 --temp 1 -n 200 \
        --db "$tmp/g.db" >/dev/null 2>&1 &
    pid=$!
    # kill once it records (a cuBLAS-linked ponder spends ~1.8 s starting), at a random point
    for ((w = 0; w < 300; w++)); do
        [ "$(q "$tmp/g.db" 'SELECT count(*) FROM sessions' 2>/dev/null)" -gt 100 ] 2>/dev/null &&
            break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    sleep "0.$((RANDOM % 9))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    check "recording kill -9 #$k: integrity_check" integrity "$tmp/g.db"
    check "recording kill -9 #$k: earlier sessions intact" test "$(snapshot "$tmp/g.db" 100)" = "$before"
    check "recording kill -9 #$k: tokens contiguous" contiguous "$tmp/g.db"
done
check "recording: something was recorded" test "$(q "$tmp/g.db" 'SELECT count(*) FROM sessions')" -gt 100

# ---- a stalled output pipe ----
mkfifo "$tmp/pipe"
"$ponder" generate -m "$model" -p "Once upon a time" -n 3000 --ctx 3100 --json --capture full \
    >"$tmp/pipe" 2>/dev/null &
pid=$!
exec 8<"$tmp/pipe" # opened, never read: the writer blocks once the pipe buffer is full
# Once the pipe is full the worker must wait: RSS stops growing (measured as growth, since
# a build linked with the CUDA libraries starts at ~200 MB). Without backpressure it grows
# ~30 MB/s for as long as the reader stalls; a loaded machine may take a few seconds to
# fill the pipe, so up to 15 one-second samples are taken for one that stays flat.
rss1=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null)
flat=0
for ((i = 0; i < 15 && flat == 0; i++)); do
    sleep 1
    rss2=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null)
    grew=$(( ${rss2:-999999} - ${rss1:-0} ))
    [ "$grew" -lt 1024 ] && flat=1
    rss1=$rss2
done
check "stalled pipe: the generation waits (RSS flat at ${rss2:-?} KiB after $i s, last second +$grew KiB)" \
    test "$flat" = 1
kill $pid 2>/dev/null
exec 8<&-
wait $pid 2>/dev/null

echo "$fails failures"
[ $fails -eq 0 ]
