# Sourced by the GPU scripts: `step SECONDS NAME command...` runs the command under a time
# limit, its output in $OUT/NAME.log, prints the last ${TAIL} lines of it (each script sets its
# default; blank and Python warning lines left out, lines cut at 300 characters) and the exit
# status with the seconds it took.
step() {
    local t=$1 name=$2
    shift 2
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "$t" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    grep -v "^\s*$" "$OUT/$name.log" | grep -v "Warning\|warn(" | tail -n "${TAIL:-12}" \
        | cut -c1-300
    echo "== $name rc $rc ($((SECONDS - t0)) s)" | tee -a "$OUT/$name.log"
}
