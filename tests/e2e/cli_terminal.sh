#!/usr/bin/env bash
# cli_terminal.sh - text from models, files and databases never reaches the terminal raw:
# escape sequences (ESC), C1 controls (U+009B is a CSI by itself) and bidi overrides in a
# GGUF's general.name, in vocabulary pieces a model generates, and in imported traces show
# as visible replacements in `info`, `generate`, `show`, `ls` and error messages, while
# `--json` output keeps the exact text.
set -u
ponder=${PONDER_BIN:?}
mkmodel=${PONDER_MKMODEL:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_DATA_HOME=$tmp/xdg # generate records into the default database
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
# raw_free FILE: no ESC byte, no C1 control (C2 80..C2 9F), no bidi override (E2 80 AA..AE)
raw_free() {
    ! LC_ALL=C grep -q $'\x1b' "$1" &&
        ! LC_ALL=C grep -qP '\xC2[\x80-\x9F]|\xE2\x80[\xAA-\xAE]|\xE2\x81[\xA6-\xA9]' "$1"
}

evil=$'name\x1b[2J\xc2\x9b31m\xe2\x80\xaeevil'
"$mkmodel" --arch llama --type f32 --name "$evil" --out "$tmp/m.gguf"
"$ponder" info -m "$tmp/m.gguf" >"$tmp/info" 2>&1
check "info: general.name filtered" raw_free "$tmp/info"
check "info: ESC shown as a control picture" grep -q $'\xe2\x90\x9b\\[2J' "$tmp/info"
"$ponder" info -m "$tmp/m.gguf" --json >"$tmp/info.json" 2>&1
check "info --json: the exact name, JSON-escaped" grep -q 'name\\u001b\[2J'$'\xc2\x9b''31m' "$tmp/info.json"

# A model that always generates the vocabulary's byte token for ESC (GPT-2 byte U+011B).
"$mkmodel" --arch llama --vocab bpe --constant $'\xc4\x9b' --out "$tmp/esc.gguf"
"$ponder" generate -m "$tmp/esc.gguf" -p "hi" -n 5 >"$tmp/gen" 2>&1
check "generate text mode: no raw ESC" raw_free "$tmp/gen"
check "generate text mode: ESC shown" grep -q $'\xe2\x90\x9b' "$tmp/gen"
"$ponder" generate -m "$tmp/esc.gguf" -p "hi" -n 5 --json >"$tmp/gen.json" 2>&1
check "generate --json keeps the byte (escaped)" grep -q '"text":"\\u001b"' "$tmp/gen.json"

# An imported trace with an escape sequence, a C1 CSI and a bidi override.
printf '{"prompt":"Q \\u001b[31mred\\u009b0m","response":"<think>a\\u202eb</think>ok","source":"s\\u001b]0;title\\u0007"}\n' >"$tmp/t.jsonl"
"$ponder" import --db "$tmp/t.db" "$tmp/t.jsonl" >"$tmp/imp" 2>&1
check "import" test $? -eq 0
"$ponder" show 1 --db "$tmp/t.db" >"$tmp/show" 2>&1
check "show: filtered" raw_free "$tmp/show"
check "show: the text is there" grep -q 'red' "$tmp/show"
"$ponder" ls --db "$tmp/t.db" >"$tmp/ls" 2>&1
check "ls: filtered" raw_free "$tmp/ls"
"$ponder" show 1 --db "$tmp/t.db" --json >"$tmp/show.json" 2>&1
check "show --json: exact text" grep -qi 'Q \\u001b\[31mred'$'\xc2\x9b''0m' "$tmp/show.json"

# Error messages quote untrusted names through the same filter.
"$ponder" info -m "$tmp/"$'x\x1b[2Jy.gguf' >"$tmp/err" 2>&1
check "error message: filtered" raw_free "$tmp/err"

echo "$fails failures"
[ $fails -eq 0 ]
