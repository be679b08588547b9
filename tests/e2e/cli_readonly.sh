#!/usr/bin/env bash
# cli_readonly.sh - read commands never write and never create: on a database in a
# read-only folder (and read-only file) ls, show, plot and export work and replay gets as
# far as needing a terminal; a mistyped --db is "no such database" and no file appears;
# commands that write say the database is read-only. As root (permissions do not bind
# root) the read-only part runs as user nobody through setpriv.
set -u
ponder=${PONDER_BIN:?}
root=${PONDER_SOURCE_ROOT:?}
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}

# --- a mistyped database is never created ---
for cmd in ls show plot export; do
    args=(--db "$tmp/typo.db")
    case $cmd in
    show | plot) args+=(1) ;;
    export) args+=(--format messages --out "$tmp/x.jsonl") ;;
    esac
    "$ponder" $cmd "${args[@]}" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    check "$cmd --db typo.db exits 1" test $rc -eq 1
    check "$cmd --db typo.db says so" grep -q 'typo.db: no such database' "$tmp/err"
    check "$cmd --db typo.db creates nothing" test ! -e "$tmp/typo.db"
done
XDG_DATA_HOME="$tmp/xdg" "$ponder" ls >"$tmp/out" 2>"$tmp/err"
check "ls without a default database exits 1" test $? -eq 1
check "ls without a default database explains" grep -q 'no database yet at' "$tmp/err"
check "ls creates no default database" test ! -e "$tmp/xdg/ponder/ponder.db"

# --- a database in a read-only folder ---
mkdir "$tmp/ro" "$tmp/out.d"
chmod 777 "$tmp/out.d"
"$ponder" import --db "$tmp/ro/t.db" "$root/samples/traces/messages.jsonl" >/dev/null 2>&1
check "import" test $? -eq 0
check "the import left no -wal file" test ! -s "$tmp/ro/t.db-wal"
rm -f "$tmp/ro/t.db-shm" "$tmp/ro/t.db-wal"
chmod 444 "$tmp/ro/t.db"
chmod 555 "$tmp/ro"
as_user=()
if [ "$(id -u)" = 0 ]; then
    command -v setpriv >/dev/null || { echo "SKIP: running as root without setpriv"; exit 77; }
    cp "$ponder" "$tmp/ponder"
    chmod 755 "$tmp/ponder"
    ponder="$tmp/ponder"
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
fi
run() { "${as_user[@]}" env HOME="$tmp/out.d" XDG_DATA_HOME="$tmp/out.d" "$ponder" "$@"; }
run ls --db "$tmp/ro/t.db" >"$tmp/ls" 2>"$tmp/err"
check "ls on a read-only folder" test $? -eq 0
check "ls lists the session" grep -q '^ *1 ' "$tmp/ls"
run show 1 --db "$tmp/ro/t.db" >"$tmp/show" 2>"$tmp/err"
check "show on a read-only folder" test $? -eq 0
run plot 1 --db "$tmp/ro/t.db" --out "$tmp/out.d/p.svg" >/dev/null 2>"$tmp/err"
check "plot on a read-only folder" test $? -eq 0
run export --format messages --db "$tmp/ro/t.db" --out "$tmp/out.d/e.jsonl" >/dev/null 2>"$tmp/err"
check "export on a read-only folder" test $? -eq 0
check "export wrote the traces" test -s "$tmp/out.d/e.jsonl"
if "$ponder" --help | grep -q '^  replay '; then
    run replay 1 --db "$tmp/ro/t.db" </dev/null >/dev/null 2>"$tmp/err"
    check "replay opens it (then needs a terminal)" grep -q 'needs a terminal' "$tmp/err"
else
    echo "note replay: this ponder is built without the workbench (-Dtui=disabled)"
fi
run import --db "$tmp/ro/t.db" "$root/samples/traces/messages.jsonl" >/dev/null 2>"$tmp/err"
check "import into it fails" test $? -ne 0
check "nothing was written next to it" test ! -e "$tmp/ro/t.db-wal"

echo "$fails failures"
[ $fails -eq 0 ]
