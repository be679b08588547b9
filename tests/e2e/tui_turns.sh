#!/bin/bash
# tui_turns.sh - a follow-up user turn: after the answer of a DeepSeek-R1-template model
# (random weights, the real Qwen vocabulary), :ask renders the end of the turn, the user
# message and the generation prompt with the template, and the model thinks again after
# it; asking while it still answers is refused with the reason.
source "$(dirname "$0")/tui_lib.sh"
: "${PONDER_MKMODEL:?}" "${PONDER_MKQWENVOCAB:?}"
qdir=${PONDER_TEST_MODELS:-$PONDER_SOURCE_ROOT/../shared/models}/../tokenizers/qwen
if [ ! -r "$qdir/vocab.json" ]; then
    echo "SKIP: Qwen tokenizer files not found under $qdir" >&2
    exit 77
fi
"$PONDER_MKQWENVOCAB" "$qdir" qwen2 "$TMPD/vocab.gguf" >/dev/null || fail "mkqwenvocab"
"$PONDER_MKMODEL" --arch qwen2 --type q8_0 --vocab-from "$TMPD/vocab.gguf" \
    --chat-template deepseek-r1 --out "$TMPD/r1.gguf" >/dev/null || fail "mkmodel"
DB="$TMPD/t.db"

start t 120 40 "$PONDER_BIN" run -m "$TMPD/r1.gguf" -p "What is 2+2?" --db "$DB" --greedy \
    -n 12 --mode short:4 --throttle 200
wait_for t ' [0-9]+ tok \(' 30
keys t ':ask too early' Enter
wait_for t 'ask: the model is still answering' 5
wait_for t 'finished \(length\)' 30
keys t ':ask And 3+4?' Enter
wait_for t 'And 3\+4\?' 10
wait_for t 'finished \(length\)' 30
quit_confirm t
[ "$(wait_exit t 15)" = 0 ] || fail "run exit status"
"$PONDER_BIN" show 1 --db "$DB" --json >"$TMPD/s.json" || fail "show --json"
python3 - "$TMPD/s.json" <<'PY' || fail "the second turn is not as the template renders it"
import base64, json, sys
d = json.load(open(sys.argv[1]))
toks = d["tokens"]
# a token that is not whole UTF-8 comes as base64 "bytes"
raw = b"".join(t["text"].encode() if "text" in t else base64.b64decode(t["bytes"])
               for t in toks)
text = raw.decode("utf-8", "replace")
turn = "<｜end▁of▁sentence｜><｜User｜>And 3+4?<｜Assistant｜><think>\n"
i = text.find("And 3+4?")
assert i > 0, text
assert turn in text, repr(text[i - 40:i + 40])
# the turn's tokens are injected; the model thinks again after it: under short:4 four
# thinking tokens, then the end of thinking, then the answer, 12 tokens in all
pos = 0
for k, t in enumerate(toks):
    pos += len(t["text"].encode()) if "text" in t else len(base64.b64decode(t["bytes"]))
    if pos >= len(raw[:raw.find(turn.encode()) + len(turn.encode())]):
        break
after = [t["role"] for t in toks[k + 1:]]
assert after[0] == "think", after
assert after.count("think") == 4, after
assert "answer" in after, after
assert len(after) == 12, after
PY
echo "ok: :ask starts another turn and the model thinks again"
