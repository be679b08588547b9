# tui_lib.sh - helpers for the tmux-driven workbench tests (sourced, not run).
# Each test gets its own tmux server socket and temporary folder, removed on exit.
set -u
: "${PONDER_BIN:?PONDER_BIN is not set (run through meson test)}"
if ! command -v tmux >/dev/null 2>&1; then
    echo "SKIP: tmux is not installed" >&2
    exit 77
fi
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/ponder-tui.XXXXXX")
SOCK="pdt-$$"
T() { tmux -L "$SOCK" -f /dev/null "$@"; }
cleanup() {
    T kill-server >/dev/null 2>&1 || true
    rm -rf "$TMPD"
}
trap cleanup EXIT
export PONDER_HISTORY="$TMPD/history"
export LC_ALL=C.UTF-8 # tmux and the screen checks read UTF-8

# The stories260K model, or exit 77.
find_model() {
    local m
    for m in "${PONDER_TEST_MODELS:-}/stories260K.gguf" \
             "${PONDER_SOURCE_ROOT:-.}/../shared/models/stories260K.gguf"; do
        if [ -f "$m" ]; then
            MODEL="$m"
            return 0
        fi
    done
    echo "SKIP: stories260K.gguf not found (PONDER_TEST_MODELS or ../shared/models)" >&2
    exit 77
}

# start NAME COLS ROWS CMD... : runs CMD in a detached window; its exit status lands in
# $TMPD/NAME.exit and its stderr in $TMPD/NAME.err.
start() {
    local name=$1 cols=$2 rows=$3
    shift 3
    local cmd
    printf -v cmd '%q ' "$@"
    T new-session -d -s "$name" -x "$cols" -y "$rows" \
        "$cmd 2>$TMPD/$name.err; echo \$? > $TMPD/$name.exit; sleep 600"
}

screen() { T capture-pane -p -t "$1"; }
# The screen with its attributes as escape sequences (to check colours).
screen_sgr() { T capture-pane -e -p -t "$1"; }
keys() { local n=$1; shift; T send-keys -t "$n" "$@"; }

fail() {
    echo "FAIL: $*" >&2
    for s in $(T list-sessions -F '#S' 2>/dev/null); do
        echo "---- screen of $s ----" >&2
        screen "$s" >&2
        echo "---- stderr of $s ----" >&2
        cat "$TMPD/$s.err" >&2 2>/dev/null
    done
    exit 1
}

# wait_for NAME REGEX [SECONDS]: until the screen matches (extended regex).
wait_for() {
    local n=$1 re=$2 t=${3:-15} i
    for ((i = 0; i < t * 10; i++)); do
        if screen "$n" | grep -Eq -- "$re"; then
            return 0
        fi
        sleep 0.1
    done
    fail "timed out after ${t}s waiting for /$re/ on $n"
}

# wait_gone NAME REGEX [SECONDS]
wait_gone() {
    local n=$1 re=$2 t=${3:-10} i
    for ((i = 0; i < t * 10; i++)); do
        if ! screen "$n" | grep -Eq -- "$re"; then
            return 0
        fi
        sleep 0.1
    done
    fail "timed out after ${t}s waiting for /$re/ to go away on $n"
}

# Token count from the live status bar ("123 tok (118 gen)").
tok_count() { screen "$1" | grep -Eo '[0-9]+ tok \(' | head -1 | cut -d' ' -f1; }

# wait_exit NAME [SECONDS]: the command ended; prints its exit status.
# quit_confirm NAME [SECONDS]: presses q, and q again if the workbench asks about unsaved
# work; waits for one or the other (never for a fixed time).
quit_confirm() {
    local n=$1 t=${2:-15} i asked=0
    keys "$n" q
    for ((i = 0; i < t * 10; i++)); do
        [ -s "$TMPD/$n.exit" ] && return 0
        if [ $asked = 0 ] && screen "$n" | grep -q 'unsaved changes'; then
            keys "$n" q
            asked=1
        fi
        sleep 0.1
    done
    fail "$n did not quit within ${t}s"
}

wait_exit() {
    local n=$1 t=${2:-15} i
    for ((i = 0; i < t * 10; i++)); do
        if [ -s "$TMPD/$n.exit" ]; then
            cat "$TMPD/$n.exit"
            return 0
        fi
        sleep 0.1
    done
    fail "$n did not exit within ${t}s"
}
