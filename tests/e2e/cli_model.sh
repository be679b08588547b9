#!/usr/bin/env bash
# cli_model.sh - end-to-end checks of the model commands through the ponder binary:
# help/usage errors, info/tokenize/score/generate on stories260K against the llama.cpp
# goldens, KV policy and capture output, and clear errors for broken model files.
# Needs $PONDER_BIN, $PONDER_MKMODEL, $PONDER_SOURCE_ROOT; exits 77 without stories260K.
set -u
ponder=${PONDER_BIN:?}
root=${PONDER_SOURCE_ROOT:?}
models=${PONDER_TEST_MODELS:-$root/../shared/models}
model=$models/stories260K.gguf
golden=$root/tests/golden/models/stories260K.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_DATA_HOME=$tmp/xdg # generate records into the default database
fails=0
check() { # check NAME CONDITION-COMMAND...
    local name=$1
    shift
    if "$@"; then
        echo "ok   $name"
    else
        echo "FAIL $name"
        fails=$((fails + 1))
    fi
}

# --- usage errors (no model needed) ---
"$ponder" --help >"$tmp/help" 2>&1
check "help lists commands" grep -q "generate" "$tmp/help"
"$ponder" --bogus >"$tmp/out" 2>"$tmp/err"
check "unknown option exits 2" test $? -eq 2
check "unknown option: one line on stderr" test "$(wc -l <"$tmp/err")" -eq 1
"$ponder" frobnicate >/dev/null 2>&1
check "unknown command exits 2" test $? -eq 2
"$ponder" score -m x --tokens 1 --nope >/dev/null 2>&1
check "unknown score option exits 2" test $? -eq 2

# --- broken model files ---
printf 'GGUF\003\000\000\000' >"$tmp/trunc.gguf"
"$ponder" info -m "$tmp/trunc.gguf" >/dev/null 2>"$tmp/err"
check "truncated file exits 1" test $? -eq 1
check "truncated file message names the file" grep -q "trunc.gguf: header" "$tmp/err"
printf 'NOPE0000000000000000000000000000' >"$tmp/magic.gguf"
"$ponder" info -m "$tmp/magic.gguf" >/dev/null 2>"$tmp/err"
check "bad magic exits 1" test $? -eq 1
check "bad magic message" grep -q "magic" "$tmp/err"

# --- random-weight models of every architecture ---
for arch in llama qwen2 qwen3; do
    "$PONDER_MKMODEL" --arch "$arch" --type q8_0 --out "$tmp/$arch.gguf"
    "$ponder" info -m "$tmp/$arch.gguf" --json >"$tmp/info" 2>&1
    check "info $arch" grep -q "\"architecture\":\"$arch\"" "$tmp/info"
    "$ponder" generate -m "$tmp/$arch.gguf" -p "the time" -n 8 --json >"$tmp/gen" 2>&1
    check "generate $arch: 8 tokens and a summary" grep -q '"n_gen":8' "$tmp/gen"
done

# --- q4_K packed at load on the avx2 and avx512vnni levels: reported by info, the same
# text ---
"$PONDER_MKMODEL" --arch llama --type q4_k --out "$tmp/q4k.gguf"
"$ponder" info -m "$tmp/q4k.gguf" --json >"$tmp/info" 2>&1
if grep -q '"cpu_kernels":"scalar"' "$tmp/info"; then
    check "info: nothing packed at the scalar level" grep -q '"cpu_packed":\[\]' "$tmp/info"
else
    check "info: q4_k packed above the scalar level" grep -q '"cpu_packed":\["q4_k"\]' "$tmp/info"
fi
# q8_0 packed above the scalar level too
if grep -q '"cpu_kernels":"scalar"' "$tmp/info"; then
    check "info: a q8_0 model packs nothing at the scalar level" grep -q '"cpu_packed":\[\]' \
        <("$ponder" info -m "$tmp/llama.gguf" --json 2>&1)
else
    check "info: a q8_0 model packs q8_0 above the scalar level" \
        grep -q '"cpu_packed":\["q8_0"\]' <("$ponder" info -m "$tmp/llama.gguf" --json 2>&1)
fi
check "info: PONDER_SIMD=scalar packs nothing" grep -q '"cpu_packed":\[\]' \
    <(PONDER_SIMD=scalar "$ponder" info -m "$tmp/llama.gguf" --json 2>&1)
# --- the decode fetch level: PONDER_PREFETCH chooses it, a bad value is named and ignored
check "info: PONDER_PREFETCH=l1" grep -q '"cpu_prefetch":"l1"' \
    <(PONDER_PREFETCH=l1 "$ponder" info -m "$tmp/llama.gguf" --json 2>/dev/null)
check "info: PONDER_PREFETCH=L2" grep -q '"cpu_prefetch":"l2"' \
    <(PONDER_PREFETCH=L2 "$ponder" info -m "$tmp/llama.gguf" --json 2>/dev/null)
check "info: PONDER_PREFETCH=l1 in the text" grep -q '^cpu prefetch  l1: ' \
    <(PONDER_PREFETCH=l1 "$ponder" info -m "$tmp/llama.gguf" 2>/dev/null)
check "info: a bad PONDER_PREFETCH is named" grep -q 'PONDER_PREFETCH=l3: expected l1 or l2' \
    <(PONDER_PREFETCH=l3 "$ponder" info -m "$tmp/llama.gguf" --json 2>&1 >/dev/null)
PONDER_PACK=0 "$ponder" info -m "$tmp/q4k.gguf" --json >"$tmp/info" 2>&1
check "info: PONDER_PACK=0 packs nothing" grep -q '"cpu_packed":\[\]' "$tmp/info"
"$ponder" generate -m "$tmp/q4k.gguf" -p "the time" -n 24 -t 2 --no-record --json \
    >"$tmp/gen_packed" 2>&1
PONDER_PACK=0 "$ponder" generate -m "$tmp/q4k.gguf" -p "the time" -n 24 -t 2 --no-record --json \
    >"$tmp/gen_file" 2>&1
check "generate: packed and file layouts give the same tokens and metrics" cmp -s \
    <(grep -v '"summary"' "$tmp/gen_packed") <(grep -v '"summary"' "$tmp/gen_file")
check "generate: 24 tokens streamed" grep -q '"n_gen":24' "$tmp/gen_packed"
# a Q4_K_M-style mixture: q6_K for the tied output and one layer's attn_v and ffn_down
"$PONDER_MKMODEL" --arch qwen2 --type q4_k_m --out "$tmp/q4km.gguf"
check "mkmodel q4_k_m: q4_K and q6_K matrices" grep -q '"tensor_types":{"f32":11,"q4_k":12,"q6_k":3}' \
    <("$ponder" info -m "$tmp/q4km.gguf" --json 2>&1)
"$ponder" generate -m "$tmp/q4km.gguf" -p "the time" -n 16 -t 2 --no-record --json \
    >"$tmp/gen_km" 2>&1
PONDER_PACK=0 "$ponder" generate -m "$tmp/q4km.gguf" -p "the time" -n 16 -t 2 --no-record \
    --json >"$tmp/gen_km_file" 2>&1
check "generate q4_k_m: 16 tokens, packed and file layouts alike" cmp -s \
    <(grep -v '"summary"' "$tmp/gen_km") <(grep -v '"summary"' "$tmp/gen_km_file")
check "generate q4_k_m: 16 tokens streamed" grep -q '"n_gen":16' "$tmp/gen_km"

# --- generate records like run: -f FILE, --chat (= --template), --db, --no-record ---
m=$tmp/llama.gguf
printf 'the time of the\nfile prompt' >"$tmp/prompt.txt"
"$ponder" generate -m "$m" -f "$tmp/prompt.txt" -n 6 --db "$tmp/g.db" --json >"$tmp/gen" 2>&1
check "generate -f --db: exit 0" test $? -eq 0
check "generate --db: the summary names the session" grep -q '"session":1}}' "$tmp/gen"
"$ponder" show 1 --db "$tmp/g.db" >"$tmp/show" 2>&1
check "generate --db: the prompt came from the file" grep -q "file prompt" "$tmp/show"
check "generate --db: source generate, finished" grep -q "source generate  finished" "$tmp/show"
check "generate --db: settings stored" grep -q "settings temperature 0 .* mode long kv full" \
    "$tmp/show"
"$ponder" show 1 --db "$tmp/g.db" --json >"$tmp/rec.json" 2>&1
n_rec=$(grep -o '"flags":' "$tmp/rec.json" | wc -l)
n_gen=$(grep -c '"role":' "$tmp/gen")
check "generate --db: every streamed token recorded ($n_rec = $n_gen)" test "$n_rec" -eq "$n_gen"
check "generate --db: the model is recorded" grep -q '"file_name":"llama.gguf"' "$tmp/rec.json"
# alternatives read as text without the model: the vocabulary is stored with the first
# session, and a ponder record carries the pieces into a database that lacks the model
"$ponder" show 1 --tokens --db "$tmp/g.db" >"$tmp/toks" 2>&1
check "show --tokens: exit 0" test $? -eq 0
check "show --tokens: one line per token ($n_gen + header)" \
    test "$(wc -l <"$tmp/toks")" -eq $((n_rec + 1))
check "show --tokens: alternatives as quoted pieces" \
    grep -Eq '^ +[0-9]+ think .*"[^"]*" -[0-9.]+ "[^"]*" -[0-9.]+' "$tmp/toks"
check "show --tokens: no alternative shown as an id" test "$(grep -c ' #[0-9]' "$tmp/toks")" -eq 0
"$ponder" export --format ponder --db "$tmp/g.db" --out "$tmp/g.jsonl" 2>/dev/null
check "ponder records carry the pieces" grep -q '"top":\[\[[0-9]*,-[0-9.e-]*,"' "$tmp/g.jsonl"
"$ponder" import "$tmp/g.jsonl" --db "$tmp/g2.db" >/dev/null 2>&1
"$ponder" show 1 --tokens --db "$tmp/g2.db" >"$tmp/toks2" 2>&1
check "imported record: alternatives read as in the recording database" \
    cmp -s "$tmp/toks" "$tmp/toks2"
"$ponder" show 1 --tokens --from 2 --to 4 --db "$tmp/g.db" >"$tmp/toks3" 2>&1
check "show --tokens --from 2 --to 4: two lines" test "$(wc -l <"$tmp/toks3")" -eq 3
"$ponder" show 1 --from 2 --db "$tmp/g.db" >/dev/null 2>"$tmp/err"
check "show --from without --tokens: exit 2" test $? -eq 2
XDG_DATA_HOME=$tmp/xdg2 "$ponder" generate -m "$m" -p "the time" -n 4 --chat raw --no-record \
    --json >"$tmp/c1" 2>&1
"$ponder" generate -m "$m" -p "the time" -n 4 --template raw --no-record --json >"$tmp/c2" 2>&1
check "generate --chat raw = --template raw" \
    cmp -s <(grep -v summary "$tmp/c1") <(grep -v summary "$tmp/c2")
check "generate --no-record: session null" grep -q '"session":null}}' "$tmp/c1"
check "generate --no-record: no default database" test ! -e "$tmp/xdg2"
XDG_DATA_HOME=$tmp/xdg2 "$ponder" generate -m "$m" -p "the time" -n 4 >"$tmp/out" 2>"$tmp/err"
check "plain generate records into the default database" \
    test -s "$tmp/xdg2/ponder/ponder.db"
check "plain generate says where it recorded" grep -q "recorded session 1 in .*ponder.db" \
    "$tmp/err"
"$ponder" generate -m "$m" -f "$tmp/none.txt" -n 4 --no-record >/dev/null 2>"$tmp/err"
check "generate -f missing file: exit 1 naming it" \
    grep -q "none.txt: No such file" "$tmp/err"
printf 'bad \xff byte' >"$tmp/bad.txt"
"$ponder" generate -m "$m" -f "$tmp/bad.txt" -n 4 --no-record >/dev/null 2>"$tmp/err"
check "generate -f: a prompt that is not UTF-8 is refused" grep -q "not UTF-8" "$tmp/err"
# plot: x axis of positions, a legend entry for every colour drawn, layer labels on the
# KV strip, the shadow divergence timeline, --from/--to, a title cut to the width
long=$(printf 'the time %.0s' $(seq 40))
"$ponder" generate -m "$m" -p "$long" -n 24 --kv h2o:8,shadow --db "$tmp/p.db" >/dev/null 2>&1
"$ponder" plot 1 --db "$tmp/p.db" --out "$tmp/p.svg" >/dev/null 2>&1
check "plot: exit 0" test $? -eq 0
check "plot: well-formed XML" python3 -c "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])" "$tmp/p.svg"
check "plot: the x axis is labelled" grep -q '>position</text>' "$tmp/p.svg"
check "plot: x ticks carry positions" grep -q 'text-anchor="middle">50</text>' "$tmp/p.svg"
for label in "surprisal: prompt" thinking entropy "shadow divergence" "KV shadow-evicted"; do
    check "plot: legend names $label" grep -q ">$label</text>" "$tmp/p.svg"
done
check "plot: no legend entry for what is not drawn" bash -c "! grep -q '>injected</text>' '$tmp/p.svg'"
check "plot: KV rows labelled by layer" grep -q '>L0</text>' "$tmp/p.svg"
check "plot: the divergence timeline" grep -q 'shadow divergence: share of the KV cache' "$tmp/p.svg"
"$ponder" plot 1 --from 2 --to 10 --width 300 --db "$tmp/p.db" --out "$tmp/q.svg" >/dev/null 2>&1
check "plot --from/--to: the range in the title" grep -q 'positions 2-9: ' "$tmp/q.svg"
check "plot --from/--to: eight bars" test "$(grep -c '<rect x="[0-9.]*" y="[0-9.]*" width="[0-9.]*" height="[0-9.]*" fill="#adb5bd"/>' "$tmp/q.svg")" -eq 8
check "plot --width 300: the title is cut to fit" grep -q '\.\.\.<title>' "$tmp/q.svg"
"$ponder" plot 1 --from 500 --db "$tmp/p.db" --out "$tmp/r.svg" >/dev/null 2>"$tmp/err"
check "plot --from past the end: exit 1" test $? -eq 1
check "plot --from past the end: says so" grep -q "past the end of session 1" "$tmp/err"
check "plot --from past the end: no file" test ! -e "$tmp/r.svg"
"$ponder" plot 1 --from 9 --to 3 --db "$tmp/p.db" >/dev/null 2>&1
check "plot --to before --from: exit 2" test $? -eq 2
# a recording killed mid-generation (blocked on a full output pipe nobody reads, so it
# is surely mid-way): the file opens clean with contiguous tokens
mkfifo "$tmp/fifo"
"$ponder" generate -m "$m" -p "the time" -n 0 --temp 1 --capture full:0,1 --json \
    --db "$tmp/k.db" >"$tmp/fifo" 2>/dev/null &
pid=$!
exec 3<"$tmp/fifo"
sleep 1.5
kill -9 $pid
wait $pid 2>/dev/null
exec 3<&-
"$ponder" ls --db "$tmp/k.db" --json >"$tmp/ls" 2>&1
check "killed generate: the database opens" test $? -eq 0
n_ls=$(grep -o '"n_tokens":[0-9]*' "$tmp/ls" | cut -d: -f2)
"$ponder" show 1 --db "$tmp/k.db" --json >"$tmp/k.json" 2>&1
check "killed generate: the session replays" test $? -eq 0
n_k=$(grep -o '"pos":' "$tmp/k.json" | wc -l)
check "killed generate: n_tokens ($n_ls) = contiguous rows ($n_k)" test "$n_ls" -eq "$n_k"
check "killed generate: not finished" grep -q '"finished":false' "$tmp/k.json"

if [ ! -r "$model" ]; then
    echo "SKIP: $model not found (set PONDER_TEST_MODELS); $fails failures before the skip"
    [ $fails -eq 0 ] && exit 77
    exit 1
fi

# --- stories260K against llama.cpp ---
want_prompt=$(tr -d ' \n' <"$golden" | sed 's/.*"prompt_tokens":\[\([0-9,]*\)\].*/\1/')
"$ponder" tokenize -m "$model" --text "Once upon a time" --json >"$tmp/tok"
check "tokenize equals llama.cpp" grep -q "{\"tokens\":\[$want_prompt\]}" "$tmp/tok"

want_greedy=$(tr -d ' \n' <"$golden" | sed 's/.*"greedy":\[\([0-9,]*\)\].*/\1/')
"$ponder" generate -m "$model" -p "Once upon a time" -n 200 --greedy --kv-type f32 --json \
    >"$tmp/gen"
got_greedy=$(grep -v '"role":"prompt"' "$tmp/gen" | grep -o '"token":[0-9]*' |
             cut -d: -f2 | paste -sd,)
check "greedy 200 tokens equal llama.cpp" test "$got_greedy" = "$want_greedy"
check "generate summary" grep -q '"stop":"length"' "$tmp/gen"
check "attention summary in token lines" grep -q '"attn":\[\[\[' "$tmp/gen"

"$ponder" generate -m "$model" -p "Once upon a time" -n 3 --capture full:0,4 --json >"$tmp/full"
check "full capture rows of the chosen layers" grep -q '"rows":\[{"layer":0,"pos":\[0,1,2,3,4,5\]' "$tmp/full"
check "full capture: only the chosen layers" test "$(grep -o '"layer":[0-9]*' "$tmp/full" | sort -u | paste -sd,)" = '"layer":0,"layer":4'

"$ponder" score -m "$model" --tokens "$want_prompt,$want_greedy" --topk 3 --json >"$tmp/score"
check "score: one line per position" test "$(wc -l <"$tmp/score")" -eq 204
check "score line shape" grep -q '^{"pos":1,"token":403,"logprob":-0.24' "$tmp/score"

"$ponder" generate -m "$model" -p "Once upon a time" -n 40 --kv window:16 --json >"$tmp/kv"
check "window policy evicts" grep -q '"event":"evict"' "$tmp/kv"
check "evictions counted" grep -q '"evictions":[1-9]' "$tmp/kv"
"$ponder" generate -m "$model" -p "Once upon a time" -n 40 --kv h2o:16,shadow --json >"$tmp/sh"
check "shadow evictions are marked" grep -q '"shadow":true' "$tmp/sh"
"$ponder" generate -m "$model" -p "Once upon a time" -n 30 --mode short:10 --json >"$tmp/mode"
check "short mode injects the end of thinking" grep -q '"role":"injected"' "$tmp/mode"
check "short mode then answers" grep -q '"role":"answer"' "$tmp/mode"
"$ponder" generate -m "$model" -p "Once upon a time" -n 10 --kv nope --json >/dev/null 2>"$tmp/err"
check "bad --kv exits 2" test $? -eq 2
check "bad --kv names the policy" grep -q '"nope"' "$tmp/err"
# Every accepted option value is one the code handles (--topk 0 used to crash the probe).
for k in 0 20; do
    "$ponder" score -m "$model" --text "Once upon a time" --topk $k --json >"$tmp/tk" 2>&1
    check "score --topk $k runs" test $? -eq 0
    "$ponder" generate -m "$model" -p "Once upon a time" -n 4 --topk $k --json >"$tmp/tk" 2>&1
    check "generate --topk $k runs" test $? -eq 0
done
"$ponder" score -m "$model" --text "Once upon" --topk 0 --json >"$tmp/score0"
check "--topk 0: no alternatives" grep -q '"top":\[\]' "$tmp/score0"
"$ponder" generate -m "$model" -p "Once upon a time" -n 50 --ctx 16 --json >"$tmp/ctx" 2>&1
check "generate --ctx 16 stops at the context" grep -q '"stop":"context"' "$tmp/ctx"
"$ponder" generate -m "$model" -p "Once" -n 3 --temp 100 --top-p 1e-9 --min-p 1 \
    --top-k 16777216 --json >"$tmp/ext" 2>&1
check "extreme sampling values run" grep -q '"n_gen":3' "$tmp/ext"
"$ponder" bench -m "$model" -p 16 -n 16 -r 1 --json >"$tmp/bench"
check "bench reports capture levels" grep -q '"decode_tok_s":{"off":' "$tmp/bench"
"$ponder" bench -m "$model" -p 4 -n 4 -r 1 --capture off --bandwidth --json >"$tmp/bw"
check "bench --bandwidth reports the memory roofline" \
    grep -Eq '"cpu_memory":\{"read_gbs":[0-9.]*[1-9][0-9.]*,"bytes_per_token":[1-9][0-9]*,' "$tmp/bw"
# (above 1 where the model fits in the caches and the buffer's scan is slowed by
# the tests running beside it)
check "bench --bandwidth: a fraction above zero" \
    grep -Eq '"roofline_fraction":[0-9]*\.[0-9]*[1-9]' "$tmp/bw"

echo "$fails failures"
[ $fails -eq 0 ]
