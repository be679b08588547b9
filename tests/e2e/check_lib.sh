# check_lib.sh - what the command-line e2e tests share (sourced, not run): a temporary
# folder $tmp removed on exit, and check NAME CMD... which runs CMD, prints "ok   NAME" or
# "FAIL NAME" and counts the failures in $fails.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
