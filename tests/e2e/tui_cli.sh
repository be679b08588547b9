#!/bin/bash
# tui_cli.sh - the workbench commands' argument and input errors, without a terminal:
# usage errors exit 2, bad files and specs exit 1 with a message naming them, the
# workbench refuses to start without a terminal, and `keys --markdown` reproduces
# docs/keys.md.
set -u
: "${PONDER_BIN:?PONDER_BIN is not set (run through meson test)}"
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/ponder-tui-cli.XXXXXX")
trap 'rm -rf "$TMPD"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect STATUS REGEX CMD...: runs CMD with stdin from /dev/null, checks status and stderr.
expect() {
    local want=$1 re=$2
    shift 2
    "$@" </dev/null >"$TMPD/out" 2>"$TMPD/err"
    local got=$?
    [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want: $(cat "$TMPD/err")"
    grep -Eq -- "$re" "$TMPD/err" || fail "'$*': stderr lacks /$re/: $(cat "$TMPD/err")"
}

expect 2 '-m MODEL is required' "$PONDER_BIN" run -p hello
expect 2 'exactly one of -p PROMPT, -f FILE or --from SESSION' "$PONDER_BIN" run -m x.gguf
expect 2 'exactly one of' "$PONDER_BIN" run -m x.gguf -p hi --from 1
expect 2 'run: --from' "$PONDER_BIN" run -m x.gguf --from 1@zero
expect 2 'need -m MODEL' "$PONDER_BIN" replay 1 -n 5
expect 2 'unknown option' "$PONDER_BIN" run -m x.gguf -p hi --frobnicate
expect 2 '--capture' "$PONDER_BIN" run -m x.gguf -p hi --capture most
expect 2 'exclude each other' "$PONDER_BIN" run -m x.gguf -p hi --db a.db --no-record
expect 1 'nonexistent\.gguf' "$PONDER_BIN" run -m "$TMPD/nonexistent.gguf" -p hi --no-record
printf 'bad \xff bytes' >"$TMPD/bad.txt"
expect 1 'bad\.txt: the prompt is not UTF-8' "$PONDER_BIN" run -m x.gguf -f "$TMPD/bad.txt"
expect 1 'missing\.txt' "$PONDER_BIN" run -m x.gguf -f "$TMPD/missing.txt"
expect 2 'SESSION' "$PONDER_BIN" replay 0
expect 2 'unknown argument' "$PONDER_BIN" replay 1 2
expect 1 'none\.db' "$PONDER_BIN" replay --db "$TMPD/none.db"
expect 2 'unknown argument' "$PONDER_BIN" keys --html

# A database with a session, opened without a terminal.
if [ -n "${PONDER_SOURCE_ROOT:-}" ] && [ -f "$PONDER_SOURCE_ROOT/samples/sample-session.jsonl" ]; then
    "$PONDER_BIN" import --db "$TMPD/s.db" "$PONDER_SOURCE_ROOT/samples/sample-session.jsonl" \
        >/dev/null 2>&1 || fail "importing the sample failed"
    expect 1 'needs a terminal' "$PONDER_BIN" replay --db "$TMPD/s.db"
    expect 1 'session 7' "$PONDER_BIN" replay 7 --db "$TMPD/s.db"
    "$PONDER_BIN" keys --markdown | diff -u "$PONDER_SOURCE_ROOT/docs/keys.md" - ||
        fail "docs/keys.md differs from 'ponder keys --markdown'"
fi

# A bad KV spec names the option (needs the model to get that far).
for m in "${PONDER_TEST_MODELS:-}/stories260K.gguf" \
         "${PONDER_SOURCE_ROOT:-.}/../shared/models/stories260K.gguf"; do
    if [ -f "$m" ]; then
        expect 1 '--kv.*banana' "$PONDER_BIN" run -m "$m" -p hi --no-record --kv h2o:banana
        expect 1 '--mode' "$PONDER_BIN" run -m "$m" -p hi --no-record --mode sideways
        break
    fi
done
echo "ok: workbench command errors"
