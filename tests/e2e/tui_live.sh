#!/bin/bash
# tui_live.sh - the live workbench on stories260K at 120x40: tokens stream, space pauses
# (the token count stops) and resumes, an injected paragraph starts a step, `a` closes the
# thinking span (the answer marker appears), `p` prunes a step, `t` tags it, `s` saves,
# `q` quits; then `replay` shows the same trace text with the prune and tag. --stats
# prints key latency and draw cost.
source "$(dirname "$0")/tui_lib.sh"
find_model
DB="$TMPD/t.db"
start live 120 40 "$PONDER_BIN" run -m "$MODEL" -p "Once upon a time" --db "$DB" --greedy \
    -n 3000 --throttle 30 --stats
wait_for live ' [0-9]{2,} tok \(' 20
# Surprisal is drawn as 256-colour backgrounds inside tmux (TERM=tmux-256color).
screen_sgr live | grep -q $'\e\\[[0-9;]*48;5;' || fail "no 256-colour backgrounds"

# Pause: the count stops.
keys live Space
wait_for live 'PAUSED' 5
c1=$(tok_count live)
sleep 1.5
c2=$(tok_count live)
[ "$c1" = "$c2" ] || fail "token count moved while paused ($c1 -> $c2)"
keys live Space
for ((i = 0; i < 100; i++)); do
    c3=$(tok_count live)
    [ "$c3" -gt "$c2" ] && break
    sleep 0.1
done
[ "$c3" -gt "$c2" ] || fail "no tokens after resume"

# An injected paragraph break starts a new step.
keys live ':inject \n\nWait, let me check the story.\n\n' Enter
wait_for live 'Wait, let me check the story' 10

# Answer now: the thinking span closes and the answer marker shows.
keys live a
wait_for live '— answer —' 10
wait_for live '\| answer \|' 5

# Prune the first step, tag it, save.
keys live g
keys live ']'
keys live p
wait_for live '\(1 pruned\)' 5
keys live t
wait_for live ':tag' 3
keys live 'important' Enter
wait_for live "tagged step 0 'important'" 5
keys live Space
wait_for live 'PAUSED' 5
keys live s
wait_for live 'saved session [0-9]+' 10
live_text=$(screen live | sed -n '2,6p' | cut -c1-70)

# Quit (a second q when it asks about unsaved work).
quit_confirm live
[ "$(wait_exit live 15)" = 0 ] || fail "run exited with an error"
sid=$(grep -Eo 'session [0-9]+ recorded' "$TMPD/live.err" | grep -Eo '[0-9]+')
[ -n "$sid" ] || fail "no 'session N recorded' line on stderr"
grep 'key to frame' "$TMPD/live.err" || fail "--stats printed nothing"

# Replay shows the same text, the prune and the tag.
start replay 120 40 "$PONDER_BIN" replay "$sid" --db "$DB"
wait_for replay "replay #$sid" 10
wait_for replay '\(1 pruned\)' 5
rep_text=$(screen replay | sed -n '2,6p' | cut -c1-70)
if [ "$live_text" != "$rep_text" ]; then
    echo "live:"; echo "$live_text"; echo "replay:"; echo "$rep_text"
    fail "replay shows different text"
fi
screen replay | grep -Eq '│ +0 x# [a-z]+ ' || fail "step 0 not shown pruned and tagged"
keys replay ':seek 5' Enter
wait_for replay ' 5/[0-9]+ tok' 5
keys replay .
wait_for replay ' 6/[0-9]+ tok' 5
keys replay q
[ "$(wait_exit replay 10)" = 0 ] || fail "replay exited with an error"
echo "ok: live run, pause, inject, answer now, prune, tag, save, replay"
