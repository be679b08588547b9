#!/usr/bin/env bash
# record_remote.sh - scripts/record-remote-fixtures end to end against ponder serve (on
# stories260K) standing in for vLLM and SGLang: every file it writes is listed in
# status.txt, non-empty, and has a request in provenance.txt; the requests ponder serve
# implements as vLLM does answer as vLLM's would (SGLang's /generate does not exist there,
# so only the run itself is checked); a model the server does not serve and an unreachable
# server are refused with a message and leave OUTDIR empty.
# Needs $PONDER_BIN, $PONDER_SOURCE_ROOT and stories260K.gguf ($PONDER_TEST_MODELS, default
# ../shared/models); SKIP (77) without the model or curl.
set -u
ponder=${PONDER_BIN:?}
root=${PONDER_SOURCE_ROOT:?}
source "$(dirname "$0")/server_lib.sh"
command -v curl >/dev/null || { echo "SKIP: no curl"; exit 77; }
rec=$root/scripts/record-remote-fixtures

"$ponder" serve -m "$M" --port 0 --port-file "$tmp/port" -t 1 >"$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    [ -s "$tmp/port" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log"; echo "FAIL: ponder serve exited"; exit 1; }
    sleep 0.1
done
[ -s "$tmp/port" ] || { echo "FAIL: ponder serve wrote no port"; exit 1; }
url=http://127.0.0.1:$(cat "$tmp/port")

# every file of DIR but status.txt is in status.txt, non-empty, and has a request in
# provenance.txt; every status.txt line names a file, an HTTP status and a content type
listed() {
    local dir=$1 f name
    for f in "$dir"/*; do
        name=$(basename "$f")
        [ "$name" = status.txt ] && continue
        [ -s "$f" ] || { echo "  $name is empty"; return 1; }
        [ "$name" = provenance.txt ] && continue
        grep -q "^$name [0-9][0-9][0-9] [a-z]" "$dir/status.txt" ||
            { echo "  $name is not in status.txt"; return 1; }
        grep -q "^request: $name: " "$dir/provenance.txt" ||
            { echo "  $name has no request in provenance.txt"; return 1; }
    done
    while read -r name _; do
        [ -s "$dir/$name" ] || { echo "  status.txt lists $name, not written"; return 1; }
    done <"$dir/status.txt"
}
has() { # has DIR NAME STATUS TYPE_PREFIX
    grep -q "^$2 $3 $4" "$1/status.txt" || { echo "  $2: $(grep "^$2 " "$1/status.txt")"; return 1; }
}

v=$tmp/vllm
"$rec" --server vllm "$url" stories260K.gguf "$v" >"$tmp/vllm.out" 2>&1
check "vllm run exits 0" [ $? -eq 0 ]
check "vllm files listed" listed "$v"
for n in models.json tokenize.json tokenize_special.json detokenize.json stream_logprobs.sse \
    echo_score.json prompt_logprobs_only.json error_400.json error_422_fastapi.json; do
    check "vllm wrote $n" [ -s "$v/$n" ]
done
check "vllm 9 responses" [ "$(wc -l <"$v/status.txt")" -eq 9 ]
check "stream is an event stream" has "$v" stream_logprobs.sse 200 text/event-stream
check "stream ends with [DONE]" grep -q '^data: \[DONE\]' "$v/stream_logprobs.sse"
check "stream tokens as ids" grep -q '"token_id:[0-9]*"' "$v/stream_logprobs.sse"
check "echo scored" has "$v" echo_score.json 200 application/json
check "context refusal" has "$v" error_400.json 400 application/json
check "context refusal message" grep -q 'maximum context length is 2048' "$v/error_400.json"
check "prompt ids with BOS" grep -q '= \[1,' "$v/provenance.txt"
check "provenance names the server" grep -q "^server:  vllm unknown (GET /version: HTTP 404) at $url" \
    "$v/provenance.txt"
# ponder serve refuses these two differently from vLLM: reported, not hidden
check "vllm differences reported" grep -q 'prompt_logprobs_only.json:400(want 200)' "$tmp/vllm.out"

s=$tmp/sglang
"$rec" --server sglang "$url" stories260K.gguf "$s" >"$tmp/sglang.out" 2>&1
check "sglang run exits 0" [ $? -eq 0 ]
check "sglang files listed" listed "$s"
check "sglang 8 responses" [ "$(wc -l <"$s/status.txt")" -eq 8 ]
check "sglang long prompt abbreviated" grep -q 'request: error_400.json: POST /generate {"input_ids":\[2049 x ' \
    "$s/provenance.txt"

"$rec" --server vllm "$url" no-such-model "$tmp/none" >"$tmp/none.out" 2>&1
check "unknown model refused" [ $? -eq 1 ]
check "unknown model named" grep -q "does not serve a model named 'no-such-model'.*stories260K.gguf" \
    "$tmp/none.out"
check "unknown model writes nothing" [ ! -e "$tmp/none" ]

kill "$pid"
wait "$pid" 2>/dev/null
pid=""
"$rec" --server sglang "$url" stories260K.gguf "$tmp/down" >"$tmp/down.out" 2>&1
check "unreachable refused" [ $? -eq 1 ]
check "unreachable named" grep -q "no answer from $url" "$tmp/down.out"
check "unreachable writes nothing" [ ! -e "$tmp/down" ]

if [ $fails -ne 0 ]; then
    for f in vllm sglang none down; do echo "--- $f"; cat "$tmp/$f.out"; done
    echo "$fails checks failed"
    exit 1
fi
echo "all checks passed"
