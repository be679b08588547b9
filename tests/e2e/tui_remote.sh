#!/bin/bash
# tui_remote.sh - the workbench on a remote engine: `ponder run --engine` against a real
# `ponder serve` at 120x40 (tokens stream with their alternatives and attention from the
# ponder extension, the KV pane says the engine does not expose its cache, space pauses
# the stream and resumes it with a new request, an injection is sent as part of the next
# request's prompt, `q` quits), the recording names the engine in its meta and an
# "engine" annotation per request; then a stream cut off mid-token (the scripted server):
# the screen says so and the session keeps the tokens that arrived, not finished. After
# the end, c continues with a new request; run --from is refused with --engine.
source "$(dirname "$0")/tui_lib.sh"
find_model
: "${PONDER_FAKE_ENGINE:?PONDER_FAKE_ENGINE is not set (run through meson test)}"
DB="$TMPD/t.db"
"$PONDER_BIN" serve -m "$MODEL" --port 0 --port-file "$TMPD/port" >/dev/null \
    2>"$TMPD/serve.err" &
SERVE=$!
FAKE=""
stop_servers() {
    kill "$SERVE" 2>/dev/null
    wait "$SERVE" 2>/dev/null
    if [ -n "$FAKE" ]; then
        kill "$FAKE" 2>/dev/null
        wait "$FAKE" 2>/dev/null
    fi
    cleanup
}
trap stop_servers EXIT
for ((i = 0; i < 100; i++)); do
    [ -s "$TMPD/port" ] && break
    sleep 0.1
done
[ -s "$TMPD/port" ] || fail "ponder serve did not start: $(cat "$TMPD/serve.err")"
URL="http://127.0.0.1:$(cat "$TMPD/port")"

start rem 120 40 "$PONDER_BIN" run --engine "$URL" -m "$MODEL" -p "Once upon a time" \
    --db "$DB" --greedy -n 3000 --throttle 30
wait_for rem ' [0-9]{2,} tok \(' 20
wait_for rem '\| ponder \|' 5
wait_for rem 'remote engine: KV cache not exposed' 5
wait_for rem 'attn L0-4' 5

keys rem Space
wait_for rem 'PAUSED' 5
c1=$(tok_count rem)
sleep 1.5
c2=$(tok_count rem)
[ "$c1" = "$c2" ] || fail "token count moved while paused ($c1 -> $c2)"
keys rem ':inject \n\nWait, let me check the story.\n\n' Enter
keys rem Space
wait_for rem 'Wait, let me check the story' 10
# the injected text is on screen; the second request's tokens follow it
c_inj=$(tok_count rem)
for ((i = 0; i < 200; i++)); do
    c3=$(tok_count rem)
    [ "$c3" -gt "$((c_inj + 8))" ] && break
    sleep 0.1
done
[ "$c3" -gt "$((c_inj + 8))" ] || fail "no tokens after the injection ($c_inj -> $c3)"
quit_confirm rem
[ "$(wait_exit rem 15)" = 0 ] || fail "run --engine exited with an error"
sid=$(grep -Eo 'session [0-9]+ recorded' "$TMPD/rem.err" | grep -Eo '[0-9]+')
[ -n "$sid" ] || fail "no 'session N recorded' line on stderr"
"$PONDER_BIN" show --db "$DB" "$sid" >"$TMPD/show" 2>&1
grep -q '"engine":{"url":"http://127.0.0.1' "$TMPD/show" || fail "the meta names no engine"
grep -q 'remote:ponder' "$TMPD/show" || fail "the model row is not the remote engine"
n_spans=$(grep -c 'engine.*request [0-9]' "$TMPD/show")
[ "$n_spans" -ge 2 ] || fail "expected an engine annotation per request, got $n_spans"

# After the end (length) the remote session waits: c continues -n more tokens with a new
# request, and the recording grows with it (one engine annotation per leg).
start cont 120 40 "$PONDER_BIN" run --engine "$URL" -m "$MODEL" -p "Once upon a time" \
    --db "$DB" --greedy -n 20
wait_for cont 'finished \(length\): c continues' 20
n1=$(tok_count cont)
keys cont c
for ((i = 0; i < 100; i++)); do
    n2=$(tok_count cont)
    [ -n "$n2" ] && [ "$n2" -ge $((n1 + 20)) ] && break
    sleep 0.1
done
[ "$n2" -eq $((n1 + 20)) ] || fail "c continued from $n1 to $n2 tokens, not 20 more"
wait_for cont 'finished \(length\): c continues' 10
quit_confirm cont
[ "$(wait_exit cont 15)" = 0 ] || fail "run --engine exited with an error after a continue"
sidc=$(grep -Eo 'session [0-9]+ recorded' "$TMPD/cont.err" | grep -Eo '[0-9]+')
"$PONDER_BIN" show --db "$DB" "$sidc" >"$TMPD/showc" 2>&1
grep -Eq "^tokens +$n2 " "$TMPD/showc" || fail "the recording does not hold the $n2 tokens shown"
[ "$(grep -c 'engine.*request [0-9]' "$TMPD/showc")" -ge 2 ] ||
    fail "expected an engine annotation for the continued request"
# re-opening a saved session needs the model in this process
"$PONDER_BIN" run --engine "$URL" -m "$MODEL" --from "$sidc" --db "$DB" 2>"$TMPD/from.err" &&
    fail "run --from --engine must be refused"
grep -q 'not available with --engine' "$TMPD/from.err" || fail "--from --engine: $(cat "$TMPD/from.err")"

# A stream cut off mid-token (llama-server's format: no prompt scoring request first).
FIX="$PONDER_SOURCE_ROOT/tests/fixtures/remote/llamacpp"
two=$(awk 'BEGIN{RS="\n\n"} NR<=2 {n += length($0) + 2} END{print n}' \
    "$FIX/completion_stream.sse")
"$PONDER_FAKE_ENGINE" --port-file "$TMPD/fport" \
    --route GET /v1/models 200 "$FIX/models.json" \
    --route POST /completion 200 "$FIX/completion_stream.sse" --sse --cut $((two + 20)) &
FAKE=$!
for ((i = 0; i < 100; i++)); do
    [ -s "$TMPD/fport" ] && break
    sleep 0.05
done
start cut 120 40 "$PONDER_BIN" run --engine "http://127.0.0.1:$(cat "$TMPD/fport")" \
    -m "$MODEL" -p "Once upon a time" --db "$DB" -n 10
wait_for cut 'cut off after 2 tokens' 15
quit_confirm cut
wait_exit cut 15 >/dev/null
sid2=$(grep -Eo 'session [0-9]+ recorded' "$TMPD/cut.err" | grep -Eo '[0-9]+')
[ -n "$sid2" ] || fail "the cut session was not recorded"
"$PONDER_BIN" show --db "$DB" "$sid2" >"$TMPD/show2" 2>&1
grep -q 'not finished' "$TMPD/show2" || fail "a cut stream must not mark the session finished"
grep -Eq '^tokens +7 ' "$TMPD/show2" || fail "expected the 5 prompt tokens and the 2 that arrived"
# A server that goes silent mid-stream: q still quits at once (the transfer is cancelled).
one=$(awk 'BEGIN{RS="\n\n"} NR<=1 {n += length($0) + 2} END{print n}' \
    "$FIX/completion_stream.sse")
"$PONDER_FAKE_ENGINE" --port-file "$TMPD/sport" \
    --route GET /v1/models 200 "$FIX/models.json" \
    --route POST /completion 200 "$FIX/completion_stream.sse" --sse --stall "$one" &
STALL=$!
for ((i = 0; i < 100; i++)); do
    [ -s "$TMPD/sport" ] && break
    sleep 0.05
done
start stall 120 40 "$PONDER_BIN" run --engine "http://127.0.0.1:$(cat "$TMPD/sport")" \
    -m "$MODEL" -p "Once upon a time" --no-record -n 10
wait_for stall ' 6 tok \(' 15
quit_confirm stall
wait_exit stall 15 >/dev/null
kill "$STALL" 2>/dev/null
wait "$STALL" 2>/dev/null
echo "ok: run --engine streams, pauses, injects, records; a cut stream keeps what arrived;"
echo "    q quits while the server is silent"
