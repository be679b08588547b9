# server_lib.sh - what the tests that start a server share (sourced, not run): the
# stories260K model in $M (or exit 77), a temporary folder $tmp removed on exit together
# with the server whose pid the test puts in $pid, and check NAME CMD... counting $fails.
: "${PONDER_SOURCE_ROOT:?}"
models=${PONDER_TEST_MODELS:-$PONDER_SOURCE_ROOT/../shared/models}
M=$models/stories260K.gguf
[ -r "$M" ] || { echo "SKIP: $M not found (set PONDER_TEST_MODELS)"; exit 77; }
tmp=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
