#!/usr/bin/env bash
# cli_sessions.sh - finding and managing saved sessions through the ponder binary (no
# model needed): ls filters (--tag, --model, --source, --since, --limit), ponder tag and
# tag --rm, full-text search (words, --phrase, --fts, snippets, a bad query, a read-only
# database), re-imports skipped by content hash (--allow-duplicates keeps them), rm (ids,
# ranges, filters, --dry-run, branches refused unless --branches, all or nothing), show
# --tokens reading the pieces a ponder record carried, and an older database upgraded by
# the first read command. Needs $PONDER_BIN and python3 (to edit a database below ponder).
set -u
ponder=${PONDER_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_DATA_HOME=$tmp/xdg
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
if ! command -v python3 >/dev/null; then
    echo "SKIP: python3 not found (edits a database below ponder)"
    exit 77
fi
sql() { # sql DB STATEMENTS: run SQL on a database the way another program would
    python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()' "$1" "$2"
}
db=$tmp/s.db
sha=$(printf 'e%.0s' $(seq 64))

# --- the traces: three shapes, one ponder record with a model and pieces ---
cat >"$tmp/a.jsonl" <<'EOF'
{"messages":[{"role":"user","content":"What is 7 times 6?"},{"role":"assistant","content":"<think>\nSeven sixes: wait, let me recount the sixes.\n</think>\n\n42"}]}
{"question":"Name a colour","answer":"blue, like the sky"}
{"conversations":[{"from":"human","value":"Is 91 prime?"},{"from":"gpt","value":"<think>\n91 = 7 * 13, so no\n</think>\n\nNo"}]}
EOF
cat >"$tmp/b.jsonl" <<EOF
{"ponder":1,"session":{"model":{"file_name":"Qwen3-0.6B-Q8_0.gguf","file_size":1,"sha256":"$sha","arch":"qwen3"}},"messages":[{"role":"user","content":"count"}],"tokens":[{"pos":0,"id":5,"role":"think","text":" one","logprob":-0.5,"entropy":1.0,"top":[[5,-0.5," one"],[9,-1.5,{"bytes":"4pY="}],[7,-2.5]]},{"pos":1,"id":6,"role":"answer","text":" two","logprob":-0.25,"entropy":0.5,"top":[[6,-0.25," two"],[5,-3," one"]]}]}
EOF
"$ponder" import "$tmp/a.jsonl" "$tmp/b.jsonl" --db "$db" >"$tmp/out" 2>"$tmp/err"
check "import: exit 0" test $? -eq 0
check "import: four traces" grep -q "import: 4 traces" "$tmp/err"

# --- pieces from the record: alternatives read as text, #ID where none was given ---
"$ponder" show 4 --tokens --db "$db" >"$tmp/toks" 2>&1
check "show --tokens: exit 0" test $? -eq 0
check "show --tokens: a piece the record gave" grep -q '" one" -0.50 "\\xe2\\x96" -1.50 #7 -2.50' "$tmp/toks"
check "show --tokens: the answer's alternatives" grep -q '" two" -0.25 " one" -3.00' "$tmp/toks"
check "show --tokens: header names the units" grep -q "LP(nats) S(bits) H(bits)" "$tmp/toks"

# --- tag ---
"$ponder" tag 2 good "a clean answer" --db "$db" >"$tmp/out" 2>&1
check "tag: exit 0" test $? -eq 0
check "tag: says so" grep -q "session 2: tagged good" "$tmp/out"
"$ponder" tag 2 good --db "$db" >"$tmp/out" 2>&1
check "tag again: nothing changes" grep -q "already tagged good" "$tmp/out"
"$ponder" tag 3 good --db "$db" >/dev/null 2>&1
"$ponder" tag 3 loop --db "$db" >/dev/null 2>&1
"$ponder" tag 99 good --db "$db" >/dev/null 2>"$tmp/err"
check "tag a missing session: exit 1" test $? -eq 1
check "tag a missing session: names it" grep -q "no session 99" "$tmp/err"
"$ponder" tag 2 "a,b" --db "$db" >/dev/null 2>"$tmp/err"
check "tag with a comma: exit 2" test $? -eq 2
"$ponder" show 2 --db "$db" >"$tmp/out" 2>&1
check "show lists the tag and its note" grep -q "a clean answer" "$tmp/out"

# --- ls filters ---
ls_ids() { "$ponder" ls "$@" --db "$db" --json 2>/dev/null | grep -o '"id":[0-9]*' | cut -d: -f2 | tr '\n' ' '; }
check "ls: all four, oldest first" test "$(ls_ids)" = "1 2 3 4 "
check "ls --tag good" test "$(ls_ids --tag good)" = "2 3 "
check "ls --tag loop" test "$(ls_ids --tag loop)" = "3 "
check "ls --tag goo (whole tags only)" test "$(ls_ids --tag goo)" = ""
check "ls --model qwen3 (file name, any case)" test "$(ls_ids --model qwen3-0.6b)" = "4 "
check "ls --model (sha256 prefix)" test "$(ls_ids --model eeeeee)" = "4 "
check "ls --source import:FILE" test "$(ls_ids --source "import:$tmp/b.jsonl")" = "4 "
check "ls --limit 2: the newest two" test "$(ls_ids --limit 2)" = "3 4 "
check "ls --since 1h" test "$(ls_ids --since 1h)" = "1 2 3 4 "
check "ls --since a future date" test "$(ls_ids --since 2999-01-01)" = ""
check "ls: filters combine" test "$(ls_ids --tag good --limit 1)" = "3 "
sql "$db" "UPDATE sessions SET created_ms = 86400000 WHERE id = 1"
check "ls --since 2d leaves an old session out" test "$(ls_ids --since 2d)" = "2 3 4 "
check "ls --since a date" test "$(ls_ids --since '1970-01-03 00:00')" = "2 3 4 "
"$ponder" ls --tag good --db "$db" >"$tmp/out" 2>&1
check "ls text: the tags in brackets" grep -q "Name a colour \[good\]" "$tmp/out"
"$ponder" ls --tag nothing --db "$db" >/dev/null 2>"$tmp/err"
check "ls: no match says so" grep -q "no session matches the filters" "$tmp/err"
"$ponder" ls --since tomorrow --db "$db" >/dev/null 2>"$tmp/err"
check "ls --since bad: exit 2" test $? -eq 2
check "ls --since bad: says what it takes" grep -q "^ponder ls: --since: expected an age" "$tmp/err"

# --- search ---
search_ids() { "$ponder" search "$@" --db "$db" --json 2>/dev/null | grep -o '"session":{"id":[0-9]*' | grep -o '[0-9]*$' | tr '\n' ' '; }
check "search: a word of the thinking" test "$(search_ids recount)" = "1 "
check "search: a word of the question" test "$(search_ids colour)" = "2 "
check "search: any case" test "$(search_ids PRIME)" = "3 "
check "search: every word must occur" test "$(search_ids sixes sky)" = ""
check "search: words in any order" test "$(search_ids sixes seven)" = "1 "
check "search --phrase: in order" test "$(search_ids --phrase wait let me)" = "1 "
check "search --phrase: not in that order" test "$(search_ids --phrase me let wait)" = ""
check "search --fts: OR" test "$(search_ids --fts 'colour OR prime')" = "2 3 "
check "search --fts: prefix" test "$(search_ids --fts 'recou*')" = "1 "
check "search: with a filter" test "$(search_ids --fts 'colour OR prime' --tag loop)" = "3 "
check "search: a ponder record's tokens" test "$(search_ids two)" = "4 "
"$ponder" search recount --db "$db" >"$tmp/out" 2>&1
check "search text: the session line" grep -q "What is 7 times 6" "$tmp/out"
check "search text: a snippet with the match marked" grep -q "let me \[recount\] the sixes" "$tmp/out"
"$ponder" search --fts '"unclosed' --db "$db" >/dev/null 2>"$tmp/err"
check "search: a bad FTS5 query exits 2" test $? -eq 2
check "search: a bad query is named" grep -q "^ponder search: bad search query" "$tmp/err"
"$ponder" search nowhere --db "$db" >/dev/null 2>"$tmp/err"
check "search: no match exits 0" test $? -eq 0
check "search: no match says so" grep -q "no session matches" "$tmp/err"
# a session imported after the last search is found: the index catches up first
printf '{"question":"zebra crossing","answer":"stripes"}\n' >"$tmp/c.jsonl"
"$ponder" import "$tmp/c.jsonl" --db "$db" >/dev/null 2>&1
check "search: a new import is indexed" test "$(search_ids stripes)" = "5 "
# read-only: stale rows are searched as they were, with a warning
printf '{"question":"late arrival","answer":"owl"}\n' >"$tmp/d.jsonl"
"$ponder" import "$tmp/d.jsonl" --db "$db" >/dev/null 2>&1
# (as root, permissions do not bind: run it as user nobody)
as_user=()
if [ "$(id -u)" = 0 ]; then
    command -v setpriv >/dev/null || { echo "SKIP: running as root without setpriv"; exit 77; }
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
    chmod 755 "$tmp"
fi
chmod a-w "$db"
"${as_user[@]}" "$ponder" search owl --db "$db" >"$tmp/out" 2>"$tmp/err"
check "search read-only: exit 0" test $? -eq 0
check "search read-only: warns the index is behind" grep -q "read-only" "$tmp/err"
chmod u+w "$db"

# --- duplicates ---
"$ponder" import "$tmp/a.jsonl" --db "$db" >"$tmp/out" 2>"$tmp/err"
check "re-import: exit 0" test $? -eq 0
check "re-import: each line named" test "$(grep -c 'already in the database as session' "$tmp/err")" -eq 3
check "re-import: counted" grep -q "imported 0 traces, 3 duplicates skipped" "$tmp/err"
check "re-import: nothing added" test "$(ls_ids | wc -w)" -eq 6
# the same trace in another shape is the same content
printf '{"prompt":"Name a colour","completion":"blue, like the sky"}\n' >"$tmp/e.jsonl"
"$ponder" import "$tmp/e.jsonl" --db "$db" --json >"$tmp/out" 2>/dev/null
check "another shape of a trace: a duplicate" grep -q '"duplicates":1' "$tmp/out"
# an exported ponder record of a session comes back as the same session
"$ponder" export --format ponder --session 3 --db "$db" --out "$tmp/r.jsonl" 2>/dev/null
"$ponder" import "$tmp/r.jsonl" --db "$db" >/dev/null 2>"$tmp/err"
check "an exported record re-imported: a duplicate of its session" \
    grep -q "already in the database as session 3" "$tmp/err"
"$ponder" import "$tmp/a.jsonl" --db "$db" --allow-duplicates >/dev/null 2>"$tmp/err"
check "--allow-duplicates keeps them" grep -q "imported 3 traces" "$tmp/err"
check "--allow-duplicates: 9 sessions" test "$(ls_ids | wc -w)" -eq 9

# --- rm ---
"$ponder" rm 7-9 --dry-run --db "$db" >"$tmp/out" 2>&1
check "rm --dry-run: lists" grep -q "would delete 3 sessions: 7 8 9" "$tmp/out"
check "rm --dry-run: deletes nothing" test "$(ls_ids | wc -w)" -eq 9
"$ponder" rm 7-9 --db "$db" >"$tmp/out" 2>&1
check "rm a range: exit 0" test $? -eq 0
check "rm a range: says what went" grep -q "deleted 3 sessions: 7 8 9" "$tmp/out"
check "rm a range: gone" test "$(ls_ids)" = "1 2 3 4 5 6 "
"$ponder" rm 6 99 --db "$db" >/dev/null 2>"$tmp/err"
check "rm a missing session: exit 1" test $? -eq 1
check "rm a missing session: named" grep -q "no session 99" "$tmp/err"
check "rm a missing session: nothing deleted" test "$(ls_ids)" = "1 2 3 4 5 6 "
check "search: a deleted session is not found" test "$(search_ids --fts 'owl OR zebra')" = "5 6 "
# a branch (as the workbench makes them) hangs off session 5
sql "$db" "INSERT INTO sessions (parent_id, fork_pos, source, created_ms, updated_ms) VALUES (5, 0, 'live', 1, 1)"
"$ponder" rm 5 --db "$db" >/dev/null 2>"$tmp/err"
check "rm a session with a branch: exit 1" test $? -eq 1
check "rm a session with a branch: says --branches" grep -q "\-\-branches" "$tmp/err"
check "rm a session with a branch: nothing deleted" test "$(ls_ids | wc -w)" -eq 7
"$ponder" rm 5 --branches --db "$db" >"$tmp/out" 2>&1
check "rm --branches: the branch too" grep -q "deleted 2 sessions: 5 7" "$tmp/out"
"$ponder" rm --tag good --source "import:$tmp/a" --db "$db" >"$tmp/out" 2>&1
check "rm by filters" grep -q "deleted 2 sessions: 2 3" "$tmp/out"
check "rm by filters: the rest stays" test "$(ls_ids)" = "1 4 6 "
"$ponder" rm --tag nothing --db "$db" >/dev/null 2>"$tmp/err"
check "rm: no match deletes nothing, exit 0" test $? -eq 0
"$ponder" rm --db "$db" >/dev/null 2>"$tmp/err"
check "rm without sessions: exit 2" test $? -eq 2

# --- tag --rm ---
"$ponder" tag 4 loop --db "$db" >/dev/null 2>&1
"$ponder" tag --rm 4 loop --db "$db" >"$tmp/out" 2>&1
check "tag --rm: removed" grep -q "removed 1 annotation tagged loop" "$tmp/out"
check "tag --rm: ls --tag no longer finds it" test "$(ls_ids --tag loop)" = ""
"$ponder" tag --rm 4 loop --db "$db" >/dev/null 2>"$tmp/err"
check "tag --rm an absent tag: exit 1" test $? -eq 1

# --- an older database is upgraded by the first read command ---
old=$tmp/old.db
"$ponder" import "$tmp/a.jsonl" --db "$old" >/dev/null 2>&1
sql "$old" "DROP TABLE vocab; DROP TABLE pieces; DROP TABLE session_text;
DROP INDEX sessions_content_hash; DROP INDEX sessions_created;
ALTER TABLE sessions DROP COLUMN content_hash; ALTER TABLE sessions DROP COLUMN indexed_ms;
PRAGMA user_version = 4;"
"$ponder" ls --db "$old" >"$tmp/out" 2>"$tmp/err"
check "ls on a version 4 database: exit 0" test $? -eq 0
check "ls on a version 4 database: its sessions" grep -q "Is 91 prime" "$tmp/out"
check "search on an upgraded database: indexed" \
    test "$("$ponder" search prime --db "$old" --json 2>/dev/null | grep -c '"snippet"')" -eq 1

echo "$fails failures"
[ $fails -eq 0 ]
