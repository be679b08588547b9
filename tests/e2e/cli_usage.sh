#!/usr/bin/env bash
# cli_usage.sh - every subcommand's usage contract (docs/cli.md): `--help` anywhere among
# the arguments prints that command's usage on stdout and exits 0 (also after an option
# that takes a value, `score --in --help`); an unknown option and a bad option value exit
# 2 with one line "ponder <command>: ..." on stderr, before any file is opened or written
# (the model named is missing on purpose: a value must be checked before it is loaded).
# The commands come from `ponder --help`, so a new command without a row here fails.
set -u
ponder=${PONDER_BIN:?}
. "$(dirname "$0")/check_lib.sh"
work=$tmp/work
mkdir "$work"
export XDG_DATA_HOME=$tmp/xdg # the default database: never created by a usage error

# Bad option values per command, one case per line (word-split; no quoting needed).
declare -A bad
bad[run]='-m nope.gguf -p hi --capture bogus
-m nope.gguf -p hi --throttle x
-m nope.gguf -p hi -f x --bogus'
bad[replay]='--speed x
--speed 0'
bad[keys]='--bogus'
bad[info]='-m nope.gguf --backend gpu
-m nope.gguf --kv-type f8
-m nope.gguf --threads 0'
bad[tokenize]='-m nope.gguf --text hi --threads x'
bad[score]='-m nope.gguf --text hi --topk 99
-m nope.gguf --text hi --capture bogus
-m nope.gguf --text hi --kv-type f8
-m nope.gguf --in x.jsonl --chat bogus
-m nope.gguf --in x.jsonl --topk x
-m nope.gguf --all --min-chars x'
bad[generate]='-m nope.gguf -p hi --kv bogus
-m nope.gguf -p hi --kv window:0
-m nope.gguf -p hi --mode bogus
-m nope.gguf -p hi --chat bogus
-m nope.gguf -p hi --template bogus
-m nope.gguf -p hi --capture bogus
-m nope.gguf -p hi --temp x
-m nope.gguf -p hi -n -1
-m nope.gguf -f x.txt -p hi
-m nope.gguf -p hi --db x.db --no-record
-m nope.gguf --in x.jsonl --mode bogus
-m nope.gguf --in x.jsonl --chat bogus
-m nope.gguf --in x.jsonl --samples 0'
bad[bench]='-m nope.gguf -p x
-m nope.gguf --capture bogus'
bad[import]='--bogus x.jsonl
--db= x.jsonl'
bad[export]='--format csv
--format messages --session abc
--format messages --min-difficulty 2'
bad[ls]='--limit x
--since yesterday
--bogus'
bad[show]='abc
0'
bad[analyze]='--session abc
--all -m nope.gguf --chat bogus
--all --min-chars x'
bad[prune]='--strategy bogus --all
--strategy asap --keep x --all
--strategy asap --all --verify -m nope.gguf --chat bogus'
bad[plot]='1 --width x
1 --from x
1 --from 9 --to 3'
bad[rm]='abc
0'
bad[tag]='abc good
1
1 bad,tag'
bad[serve]='-m nope.gguf --port x
-m nope.gguf --queue x
-m nope.gguf --kv bogus
-m nope.gguf --chat bogus'
bad[search]='
--limit x hello'
bad[eval]='--in x.jsonl
-m nope.gguf --in x.jsonl --kv bogus
-m nope.gguf --in x.jsonl --mode bogus
-m nope.gguf --in x.jsonl --answer-now-at 2
-m nope.gguf --in x.jsonl --prune bogus
-m nope.gguf --in x.jsonl --keep x
-m nope.gguf --in x.jsonl --limit x'

cmds=$("$ponder" --help | sed -n '/^commands:/,/^$/p' | awk 'NF >= 2 {print $1}')
check "the command list is read from ponder --help" test -n "$cmds"
for c in $cmds; do
    # --help: first, last, and after an option that takes a value
    for form in "--help" "-h" "--db --help" "--json --help"; do
        (cd "$work" && "$ponder" $c $form >"$tmp/out" 2>"$tmp/err")
        rc=$?
        check "$c $form: exit 0" test $rc -eq 0
        check "$c $form: usage on stdout" grep -q "usage: ponder $c" "$tmp/out"
        check "$c $form: nothing on stderr" test ! -s "$tmp/err"
    done
    (cd "$work" && "$ponder" $c --no-such-option >"$tmp/out" 2>"$tmp/err")
    rc=$?
    check "$c --no-such-option: exit 2" test $rc -eq 2
    check "$c --no-such-option: 'ponder $c:' prefix" grep -q "^ponder $c: " "$tmp/err"
    if [ -z "${bad[$c]+set}" ]; then
        check "$c has bad-value cases in cli_usage.sh" false
        continue
    fi
    while IFS= read -r args; do
        (cd "$work" && "$ponder" $c $args >"$tmp/out" 2>"$tmp/err")
        rc=$?
        check "$c $args: exit 2 (got $rc)" test $rc -eq 2
        check "$c $args: 'ponder $c:' prefix" grep -q "^ponder $c: " "$tmp/err"
        check "$c $args: one line" test "$(wc -l <"$tmp/err")" -eq 1
        check "$c $args: nothing on stdout" test ! -s "$tmp/out"
        # the same with --help anywhere is the usage
        (cd "$work" && "$ponder" $c $args --help >"$tmp/out" 2>"$tmp/err")
        check "$c $args --help: exit 0 with usage" grep -q "usage: ponder $c" "$tmp/out"
    done <<<"${bad[$c]}"
    check "$c: nothing written by usage errors" test -z "$(ls -A "$work")"
    check "$c: no default database made" test ! -e "$tmp/xdg"
    rm -rf "$tmp/xdg"
done

# modes chosen by an option keep their own usage with --help anywhere
"$ponder" score --in --help >"$tmp/out" 2>&1
check "score --in --help: exit 0" test $? -eq 0
check "score --in --help: the batch usage" grep -q -- "--in FILE" "$tmp/out"
"$ponder" score --in x.jsonl -m m.gguf --help >"$tmp/out" 2>&1
check "score --in x --help: the batch usage" grep -q -- "--force" "$tmp/out"
"$ponder" generate --in --help >"$tmp/out" 2>&1
check "generate --in --help: exit 0" test $? -eq 0
check "generate --in --help: the samples usage" grep -q -- "--samples" "$tmp/out"
"$ponder" export --format --help >"$tmp/out" 2>&1
check "export --format --help: exit 0" test $? -eq 0
# global usage errors
"$ponder" --bogus >"$tmp/out" 2>"$tmp/err"
check "ponder --bogus: exit 2" test $? -eq 2
"$ponder" bogus >"$tmp/out" 2>"$tmp/err"
check "ponder bogus: exit 2" test $? -eq 2
check "ponder bogus: names the command" grep -q "unknown command 'bogus'" "$tmp/err"

echo "$fails failures"
[ $fails -eq 0 ]
