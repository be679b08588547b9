# check_lib.sh - what the command-line e2e tests share (sourced, not run): a temporary
# folder $tmp removed on exit, and check NAME CMD... which runs CMD, prints "ok   NAME" or
# "FAIL NAME" and counts the failures in $fails; the_model FILE (below).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
# the_model FILE: writes to FILE a tiny bpe llama whose greedy choice is always " the"
# (mkmodel --constant): a model that never ends its text. Exits 1 if mkmodel fails.
the_model() {
    "${PONDER_BUILD_ROOT:?}/tests/mkmodel" --arch llama --vocab bpe --constant $'\xc4\xa0the' \
        --out "$1" >/dev/null || { echo "mkmodel failed"; exit 1; }
}
