#!/usr/bin/env bash
# run.sh TARGET_BINARY FUZZ_DIR NAME SECONDS [EXTRA libFuzzer ARGS]
# Replays FUZZ_DIR/corpus/NAME (every committed input must pass), then fuzzes for SECONDS
# with FUZZ_DIR/NAME.dict, new inputs going to a temporary folder (the committed corpus is
# never written). Exit status: the target's (a crash, leak or failed invariant fails).
set -u
bin=$1 dir=$2 name=$3 secs=$4
shift 4
corpus="$dir/corpus/$name"
dict="$dir/$name.dict"
[ -d "$corpus" ] || { echo "no corpus at $corpus" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ponder-fuzz-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
# libFuzzer exits 77 on a crash by default, which meson would report as SKIP: make every
# finding a failure, and keep the input that caused it next to the build
mkdir -p "${PONDER_BUILD_ROOT:-.}/fuzz-artifacts"
args=(-rss_limit_mb=2048 -timeout=20 -print_final_stats=1 -error_exitcode=1
      -timeout_exitcode=1 -artifact_prefix="${PONDER_BUILD_ROOT:-.}/fuzz-artifacts/$name-")
[ -f "$dict" ] && args+=(-dict="$dict")
# 1. the committed corpus, each input once
"$bin" "${args[@]}" -runs=0 "$corpus" "$@" || exit $?
# 2. a bounded run from it
"$bin" "${args[@]}" -max_total_time="$secs" "$work" "$corpus" "$@"
