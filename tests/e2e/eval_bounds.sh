#!/usr/bin/env bash
# eval_bounds.sh - `ponder eval` ends on a model that never ends its answer: on a model
# that writes " the" forever, without -n every run stops after a context's worth of new
# tokens, the full cache's run (the context fills) and a KV policy's run (the cache never
# fills: before the bound it ran until killed) alike; -n N bounds both at N.
set -u
ponder=${PONDER_BIN:?}
. "$(dirname "$0")/check_lib.sh"
the_model "$tmp/m.gguf"
printf '{"question":"What is 2+2?","answer":"4"}\n{"question":"What is 3+3?","answer":"6"}\n' \
    >"$tmp/p.jsonl"
# ev ARGS...: one eval run, its JSON in $tmp/out.json, killed after 60 s (status 124)
ev() {
    timeout 60 "$ponder" eval -m "$tmp/m.gguf" --in "$tmp/p.jsonl" -t 1 --json "$@" \
        >"$tmp/out.json"
}
# think SETTING: the setting's mean thinking tokens
think() { jq -r --arg s "$1" '.settings[] | select(.setting == $s) | .think_mean' "$tmp/out.json"; }
check "eval under a window policy ends without -n" ev -c 64 --kv window:16
check "full cache: the context bounds the run" test "$(think long)" -le 64
check "window policy: a context's worth of new tokens" test "$(think 'long kv=window:16')" -eq 64
check "eval -n 20 under a window policy" ev -c 64 -n 20 --kv window:16
check "-n bounds the policy's run" test "$(think 'long kv=window:16')" -eq 20
check "-n bounds the full cache's run" test "$(think long)" -le 20
exit $((fails > 0))
