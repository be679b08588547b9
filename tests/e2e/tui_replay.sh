#!/bin/bash
# tui_replay.sh - `ponder` with no arguments and no model replays the recorded sample
# session (samples/sample-session.jsonl) from a temporary database: play/pause, seek,
# step, speed, search, and live-only keys refused. Needs no model.
source "$(dirname "$0")/tui_lib.sh"
mkdir -p "$TMPD/nomodels"
start sample 120 40 env -u PONDER_MODEL PONDER_TEST_MODELS="$TMPD/nomodels" TMPDIR="$TMPD" \
    "$PONDER_BIN"
wait_for sample 'replay #1' 10
wait_for sample 'Once upon a time' 5
keys sample Space
wait_for sample '\| paused ' 5
keys sample ':seek 10' Enter
wait_for sample ' 10/[0-9]+ tok' 5
keys sample .
wait_for sample ' 11/[0-9]+ tok' 5
keys sample ,
wait_for sample ' 10/[0-9]+ tok' 5
keys sample '+'
wait_for sample 'replay speed 40.0' 5
keys sample ':seek 362' Enter
keys sample '/' 'sky' Enter
wait_for sample '/sky: match 1 of [0-9]+' 5
keys sample n
wait_for sample '/sky: match 2 of [0-9]+' 5
keys sample a
wait_for sample 'needs a live model' 5
keys sample q
[ "$(wait_exit sample 10)" = 0 ] || fail "exit status"
ls "$TMPD"/ponder-sample-* >/dev/null 2>&1 && fail "the temporary database was left behind"
echo "ok: sample replay"

# An installed ponder finds the sample where meson installs it (<bindir>/../share/ponder/
# samples) and, when it is missing, names every path it looked at.
inst="$TMPD/inst"
mkdir -p "$inst/bin"
cp "$PONDER_BIN" "$inst/bin/ponder"
noenv=(env -u PONDER_MODEL -u PONDER_SOURCE_ROOT -u PONDER_SAMPLES PONDER_TEST_MODELS="$TMPD/nomodels")
"${noenv[@]}" "$inst/bin/ponder" </dev/null >/dev/null 2>"$TMPD/nosample.err" && fail "no sample: exit 0"
grep -q "looked for .*/bin/../share/ponder/samples/sample-session.jsonl" "$TMPD/nosample.err" ||
    fail "no sample: the paths searched are not named: $(cat "$TMPD/nosample.err")"
if [ -n "${PONDER_BUILD_ROOT:-}" ] && command -v meson >/dev/null 2>&1; then
    dest=$(meson introspect "$PONDER_BUILD_ROOT" --installed | tr ',' '\n' |
           grep -o '"[^"]*sample-session.jsonl"' | tail -1 | tr -d '"')
    case "$dest" in
    */share/ponder/samples/sample-session.jsonl) ;;
    *) fail "meson does not install the sample where ponder looks (got '$dest')" ;;
    esac
fi
mkdir -p "$inst/share/ponder/samples"
cp "$PONDER_SOURCE_ROOT/samples/sample-session.jsonl" "$inst/share/ponder/samples/"
start inst 100 30 "${noenv[@]}" TMPDIR="$TMPD" "$inst/bin/ponder"
wait_for inst 'replay #1' 10
keys inst q
[ "$(wait_exit inst 10)" = 0 ] || fail "installed sample: exit status"
echo "ok: installed sample found"
