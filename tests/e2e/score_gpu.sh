#!/bin/sh
# score_gpu.sh - bulk scoring on the device engine: the two sample traces of
# samples/traces/messages.jsonl scored with `ponder score --all --backend cuda` give the same
# token counts, steps and per-token records as on the CPU (logprob and entropy within
# 1.5e-2, the same top-1 token), with attention summaries stored for every token. The bar:
# over these 360-400-token traces (stories260K, f32 weights, f16 cache) the CPU's own scalar
# and AVX2 paths differ by up to 8.8e-3 in logprob; the emulated device by 8.5e-3.
#
#   score_gpu.sh emu    the device engine on the CPU emulator (PONDER_CUDA_EMULATE=1)
#   score_gpu.sh cuda   on a GPU; exits 77 (SKIP) without one
#
# Needs $PONDER_BIN and $PONDER_SOURCE_ROOT (set by meson); stories260K.gguf from
# $PONDER_TEST_MODELS or $PONDER_SOURCE_ROOT/../shared/models (77 when absent).
set -eu

BIN=${PONDER_BIN:?PONDER_BIN is not set}
ROOT=${PONDER_SOURCE_ROOT:?PONDER_SOURCE_ROOT is not set}
MODEL=""
if [ -n "${PONDER_TEST_MODELS:-}" ] && [ -r "$PONDER_TEST_MODELS/stories260K.gguf" ]; then
    MODEL="$PONDER_TEST_MODELS/stories260K.gguf"
elif [ -r "$ROOT/../shared/models/stories260K.gguf" ]; then
    MODEL="$ROOT/../shared/models/stories260K.gguf"
fi
if [ -z "$MODEL" ]; then
    echo "SKIP: stories260K.gguf not found" \
        "(set PONDER_TEST_MODELS or put it in ../shared/models)" >&2
    exit 77
fi
case "${1:-emu}" in
emu) export PONDER_CUDA_EMULATE=1 ;;
cuda)
    unset PONDER_CUDA_EMULATE
    if ! msg=$("$BIN" info -m "$MODEL" --backend cuda 2>&1 >/dev/null); then
        echo "SKIP: no CUDA device: $msg" >&2
        exit 77
    fi
    ;;
*) echo "usage: score_gpu.sh emu|cuda" >&2; exit 2 ;;
esac
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ponder-e2e-XXXXXX")
trap 'rm -rf "$DIR"' EXIT

"$BIN" import "$ROOT/samples/traces/messages.jsonl" --db "$DIR/cpu.db" >/dev/null
cp "$DIR/cpu.db" "$DIR/dev.db"
"$BIN" score -m "$MODEL" --all --db "$DIR/cpu.db" --json >"$DIR/cpu.out"
"$BIN" -v score -m "$MODEL" --all --db "$DIR/dev.db" --json --backend cuda >"$DIR/dev.out" \
    2>"$DIR/dev.err"
if ! grep -q "info: cuda backend" "$DIR/dev.err"; then
    echo "FAIL: score --all --backend cuda did not open the device engine:" >&2
    cat "$DIR/dev.err" >&2
    exit 1
fi
n=$(grep -c '"session"' "$DIR/dev.out" || true)
if [ "$n" != 2 ]; then
    echo "FAIL: score --all --backend cuda scored $n traces, want 2" >&2
    exit 1
fi

# per session: the summaries' tokens and steps equal, then every token of `show --json`
# (one record per line after splitting at "},{" of the token array)
tokens() {
    "$BIN" show "$2" --json --db "$1" | sed 's/"tokens":\[/\n/; s/\],"steps".*//' |
        tail -n 1 | sed 's/},{"pos"/}\n{"pos"/g'
}
fail=0
for s in 1 2; do
    a=$(grep "\"session\":$s," "$DIR/cpu.out" | sed 's/"mean_surprisal".*//')
    b=$(grep "\"session\":$s," "$DIR/dev.out" | sed 's/"mean_surprisal".*//')
    if [ -z "$a" ] || [ "$a" != "$b" ]; then
        echo "FAIL: session $s: cpu '$a', device '$b'" >&2
        fail=1
    fi
    tokens "$DIR/cpu.db" $s >"$DIR/cpu.tok"
    tokens "$DIR/dev.db" $s >"$DIR/dev.tok"
    awk -v s=$s -v bar=1.5e-2 '
    function val(line, key,   t) {
        if (!match(line, "\"" key "\":(-?[0-9.eE+-]+|null)")) return "none"
        t = substr(line, RSTART, RLENGTH); sub(/^[^:]*:/, "", t); return t
    }
    function top1(line,   t) {
        t = substr(line, index(line, "\"top\":[") + 7); sub(/,.*/, "", t); gsub(/[^0-9]/, "", t)
        return t
    }
    function abs(x) { return x < 0 ? -x : x }
    NR == FNR { lp[FNR] = val($0, "logprob"); h[FNR] = val($0, "entropy"); t[FNR] = top1($0)
                at[FNR] = index($0, "\"attn\":\"") > 0; n = FNR; next }
    {
        m++
        a = val($0, "logprob"); b = lp[FNR]
        if ((a == "null") != (b == "null") || (a != "null" && abs(a - b) > bar)) bad++
        a = val($0, "entropy"); b = h[FNR]
        if ((a == "null") != (b == "null") || (a != "null" && abs(a - b) > bar)) bad++
        if (top1($0) != t[FNR]) top++
        if (!at[FNR] || index($0, "\"attn\":\"") == 0) noattn++
        d = abs(val($0, "logprob") - lp[FNR]); if (lp[FNR] != "null" && d > worst) worst = d
    }
    END {
        printf "session %d: %d tokens, max |dlogprob| %.2e, %d values over %g, %d top-1 " \
               "changes, %d without a summary\n", s, m, worst, bad + 0, bar, top + 0, noattn + 0
        exit (m == n && m > 100 && bad == 0 && top == 0 && noattn == 0) ? 0 : 1
    }' "$DIR/cpu.tok" "$DIR/dev.tok" || fail=1
done
exit $fail
