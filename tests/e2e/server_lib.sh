# server_lib.sh - what the tests that start a server share (sourced, not run): the
# stories260K model in $M (or exit 77), a temporary folder $tmp removed on exit together
# with the server whose pid the test puts in $pid, and check NAME CMD... counting $fails
# (the folder and check come from check_lib.sh).
: "${PONDER_SOURCE_ROOT:?}"
models=${PONDER_TEST_MODELS:-$PONDER_SOURCE_ROOT/../shared/models}
M=$models/stories260K.gguf
[ -r "$M" ] || { echo "SKIP: $M not found (set PONDER_TEST_MODELS)"; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
