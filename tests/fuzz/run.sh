#!/bin/bash
# run.sh - run the libFuzzer targets of tests/fuzz for a while each.
#
#   tests/fuzz/run.sh [--merge] [SECONDS] [TARGET...]
#
# Builds build-fuzz (clang, -Dfuzzing=true, ASan+UBSan) when it is missing,
# then runs every target (or the ones named: config, response, ...) for
# SECONDS (default $FUZZ_SECONDS or 60), $FUZZ_JOBS (default 2) at a time.
# Each target starts from a scratch copy of its committed corpus
# (tests/fuzz/corpus/TARGET), so new inputs never land in the tree; with
# --merge the inputs that add coverage are merged back into the committed
# corpus afterwards (libFuzzer -merge=1; review and commit them).
#
# Exits 1 if a target crashed, leaked, timed out, ran out of memory or broke
# a property, naming the reproducer and how to replay it. Prints a table:
# runs, exec/s, cov (edges) and ft (features) per target.
#
# Needs (Debian 12): clang libclang-rt-14-dev, plus the build dependencies.
# Environment: FUZZ_SECONDS, FUZZ_JOBS, FUZZ_BUILD (build dir, default
# build-fuzz in the source tree), FUZZ_WORKDIR (scratch; default a new
# directory under ${TMPDIR:-/tmp}, kept for the logs and any reproducer).
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
all_targets=(config jfield jptr json response retry-after template units)

merge=0
secs=${FUZZ_SECONDS:-60}
targets=()
for a in "$@"; do
    case $a in
    --merge) merge=1 ;;
    -h | --help)
        sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    '' | *[!0-9]*)
        if [[ " ${all_targets[*]} " != *" $a "* ]]; then
            echo "run.sh: unknown target or option '$a' (targets: ${all_targets[*]})" >&2
            exit 2
        fi
        targets+=("$a")
        ;;
    *) secs=$a ;;
    esac
done
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
jobs_max=${FUZZ_JOBS:-2}
build=${FUZZ_BUILD:-$top/build-fuzz}

# ---- build -------------------------------------------------------------------
if [ ! -f "$build/build.ninja" ]; then
    echo "run.sh: configuring $build (clang, libFuzzer, ASan+UBSan)"
    CC=${CC_FUZZ:-clang} meson setup "$build" "$top" -Dfuzzing=true \
        -Db_sanitize=address,undefined -Db_lundef=false >"${TMPDIR:-/tmp}/fetchd-fuzz-setup.log" 2>&1 || {
        cat "${TMPDIR:-/tmp}/fetchd-fuzz-setup.log" >&2
        echo "run.sh: meson setup failed (apt-get install -y clang libclang-rt-14-dev?)" >&2
        exit 2
    }
fi
if [ "$(meson introspect "$build" --buildoptions 2>/dev/null |
    python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="fuzzing"][0])' 2>/dev/null)" != True ]; then
    echo "run.sh: $build is not a -Dfuzzing=true build; remove it or set FUZZ_BUILD" >&2
    exit 2
fi
ninja -C "$build" $(printf 'tests/fuzz/fuzz-%s ' "${targets[@]}") >/dev/null || {
    ninja -C "$build" $(printf 'tests/fuzz/fuzz-%s ' "${targets[@]}") >&2
    exit 2
}

# ---- run ---------------------------------------------------------------------
work=${FUZZ_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/fetchd-fuzz.XXXXXX")}
mkdir -p "$work"
# loopback only, as in the test suite; sanitizer findings are fatal
export http_proxy= https_proxy= HTTP_PROXY= HTTPS_PROXY= ALL_PROXY= all_proxy= \
    no_proxy='*' NO_PROXY='*'
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

dict_of() {
    case $1 in
    config) echo config.dict ;;
    json | jptr) echo json.dict ;;
    response) echo response.dict ;;
    units) echo units.dict ;;
    retry-after) echo retry-after.dict ;;
    template) echo template.dict ;;
    esac
}
max_len_of() {
    case $1 in
    config | json | response) echo 16384 ;;
    jptr) echo 8192 ;;
    *) echo 4096 ;;
    esac
}

run_one() {
    local t=$1 d="$work/$1"
    rm -rf "$d"
    mkdir -p "$d/corpus" "$d/artifacts"
    cp "$here/corpus/$t/"* "$d/corpus/" 2>/dev/null
    local dict=() df
    df=$(dict_of "$t")
    [ -n "$df" ] && dict=(-dict="$here/$df")
    # new inputs go to the scratch copy, never into the tree
    (cd "$d" && exec "$build/tests/fuzz/fuzz-$t" "${dict[@]}" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len_of "$t")" \
        -print_final_stats=1 -artifact_prefix="$d/artifacts/" \
        "$d/corpus") >"$d/log" 2>&1
    echo $? >"$d/rc"
}

echo "run.sh: ${targets[*]}: ${secs}s each, $jobs_max at a time; logs in $work"
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
        wait -n
    done
    echo "run.sh: fuzz-$t started"
    run_one "$t" &
done
wait

# ---- report ------------------------------------------------------------------
failed=0
printf '\n%-12s %12s %9s %7s %8s %7s  %s\n' target runs exec/s cov ft corpus result
for t in "${targets[@]}"; do
    d="$work/$t"
    rc=$(cat "$d/rc" 2>/dev/null || echo 99)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$d/log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$d/log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$d/log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    arts=$(ls "$d/artifacts" 2>/dev/null | grep -Ev '^slow-unit-' || true)
    result=ok
    if [ "$rc" != 0 ] || [ -n "$arts" ]; then
        result="FAILED (exit $rc)"
        failed=1
    fi
    printf '%-12s %12s %9s %7s %8s %7s  %s\n' "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" \
        "${ft:-?}" "${corp:-?}" "$result"
done
for t in "${targets[@]}"; do
    d="$work/$t"
    rc=$(cat "$d/rc" 2>/dev/null || echo 99)
    arts=$(ls "$d/artifacts" 2>/dev/null | grep -Ev '^slow-unit-' || true)
    if [ "$rc" = 0 ] && [ -z "$arts" ]; then
        continue
    fi
    echo
    echo "== fuzz-$t failed; the end of $d/log:"
    grep -E 'ERROR: |SUMMARY: |property violated|runtime error|Test unit written' "$d/log" | tail -8
    for a in $arts; do
        echo "reproducer: $d/artifacts/$a"
        echo "  replay:   $build/tests/fuzz/fuzz-$t $d/artifacts/$a"
        echo "  keep it:  cp $d/artifacts/$a $here/corpus/$t/  (then it runs in every 'meson test')"
    done
done

if [ "$merge" = 1 ]; then
    for t in "${targets[@]}"; do
        before=$(ls "$here/corpus/$t" | wc -l)
        "$build/tests/fuzz/fuzz-$t" -merge=1 -max_len="$(max_len_of "$t")" \
            "$here/corpus/$t" "$work/$t/corpus" >"$work/$t/merge.log" 2>&1 ||
            echo "run.sh: merging fuzz-$t failed, see $work/$t/merge.log" >&2
        echo "run.sh: corpus/$t: $before -> $(ls "$here/corpus/$t" | wc -l) files"
    done
fi
exit $failed
