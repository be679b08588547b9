#!/usr/bin/env bash
# reasoning.sh - the reasoning-model paths end to end on random-weight models that carry
# the real Qwen vocabulary (151,936 tokens with <think>/</think> as single tokens) and a
# chat template: template detection, the thinking span opened by the DeepSeek-R1 template,
# short mode injecting the end-of-thinking token, no-thinking through R1's pre-filled
# closed block and Qwen3's template switch.
# Needs $PONDER_BIN, $PONDER_MKMODEL, $PONDER_MKQWENVOCAB; exits 77 without the Qwen
# tokenizer files ($PONDER_SOURCE_ROOT/../shared/tokenizers/qwen).
set -u
ponder=${PONDER_BIN:?}
root=${PONDER_SOURCE_ROOT:?}
qdir=${PONDER_TEST_MODELS:-$root/../shared/models}/../tokenizers/qwen
if [ ! -r "$qdir/vocab.json" ]; then
    echo "SKIP: Qwen tokenizer files not found under $qdir"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_DATA_HOME=$tmp/xdg # generate records into the default database
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
THINK=151667
ENDTHINK=151668

"$PONDER_MKQWENVOCAB" "$qdir" qwen2 "$tmp/vocab.gguf" || exit 1
"$PONDER_MKMODEL" --arch qwen2 --type q8_0 --vocab-from "$tmp/vocab.gguf" \
    --chat-template deepseek-r1 --out "$tmp/r1.gguf" || exit 1
"$PONDER_MKMODEL" --arch qwen3 --type q8_0 --vocab-from "$tmp/vocab.gguf" \
    --chat-template qwen3 --out "$tmp/q3.gguf" || exit 1

"$ponder" info -m "$tmp/r1.gguf" >"$tmp/info"
check "R1 template detected" grep -q "template      deepseek-r1" "$tmp/info"
check "Qwen vocabulary" grep -q "151936 tokens" "$tmp/info"

# R1: the generation prompt opens <think>; generated tokens are thinking.
"$ponder" generate -m "$tmp/r1.gguf" -p "What is 2+2?" -n 6 --json >"$tmp/r1"
check "R1 prompt ends inside <think>" grep -q "\"role\":\"prompt\",\"token\":$THINK," "$tmp/r1"
check "R1: generated tokens are thinking" \
    test "$(grep -c '"role":"think"' "$tmp/r1")" -eq 6

# Short mode: after 4 thinking tokens the single </think> token is injected, then answer.
"$ponder" generate -m "$tmp/r1.gguf" -p "What is 2+2?" -n 12 --mode short:4 --json >"$tmp/short"
check "short:4 thinks 4 tokens" test "$(grep -c '"role":"think"' "$tmp/short")" -eq 4
check "short:4 injects </think>" grep -q "\"role\":\"injected\",\"token\":$ENDTHINK," "$tmp/short"
check "short:4 then answers" grep -q '"role":"answer"' "$tmp/short"

# No thinking: R1 gets a pre-filled closed block, everything generated is the answer.
"$ponder" generate -m "$tmp/r1.gguf" -p "What is 2+2?" -n 5 --mode none --json >"$tmp/none"
check "R1 none: closed block in the prompt" \
    grep -q "\"role\":\"prompt\",\"token\":$ENDTHINK," "$tmp/none"
check "R1 none: all answer" test "$(grep -c '"role":"answer"' "$tmp/none")" -eq 5

# Qwen3: the template switch writes <think>\n\n</think>\n\n into the prompt.
"$ponder" generate -m "$tmp/q3.gguf" -p "Hi" -n 4 --mode none --json >"$tmp/q3none"
check "Qwen3 none: <think> in the prompt" grep -q "\"role\":\"prompt\",\"token\":$THINK," "$tmp/q3none"
check "Qwen3 none: </think> in the prompt" \
    grep -q "\"role\":\"prompt\",\"token\":$ENDTHINK," "$tmp/q3none"
check "Qwen3 none: all answer" test "$(grep -c '"role":"answer"' "$tmp/q3none")" -eq 4
"$ponder" generate -m "$tmp/q3.gguf" -p "Hi" -n 4 --json >"$tmp/q3"
check "Qwen3 default: no think block pre-filled" \
    test "$(grep -c "\"token\":$ENDTHINK," "$tmp/q3")" -eq 0
check "Qwen3 chat markers are single tokens" grep -q '"token":151644,"text":"<|im_start|>"' "$tmp/q3"

echo "$fails failures"
[ $fails -eq 0 ]
