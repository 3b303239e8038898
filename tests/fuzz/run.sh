#!/bin/bash
# tests/fuzz/run.sh [SECONDS]: builds every fuzz target under --config=fuzz
# (clang, libFuzzer, ASan + UBSan) and runs each in turn for SECONDS
# (default 60) on a scratch copy of its corpus tests/fuzz/corpus/<name>/,
# with tests/fuzz/<dict>.dict where there is one. Prints one line per target
# (execs, coverage, crash file) and exits 1 if any target found a crash, a
# leak, a timeout or ran out of memory (its inputs are kept and named), 2 if
# the build failed.
#
# Bazel runs with an output base of its own (${TMPDIR:-/tmp}/smtp-tls-proxy-fuzz)
# and no convenience symlinks, so the clang build never evicts the normal
# build's cache or moves bazel-bin. About targets x SECONDS plus the build;
# CI runs `tests/fuzz/run.sh 20`.
set -u

secs=${1:-60}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/../.." || exit 2
tmp=${TMPDIR:-/tmp}
# The server goes away five minutes after the last run rather than in hours.
bazel=(bazel --output_base="$tmp/smtp-tls-proxy-fuzz" --max_idle_secs=300)
flags=(--config=fuzz --symlink_prefix=/)

targets=()
for d in tests/fuzz/corpus/*_fuzz; do
    targets+=("$(basename "$d")")
done
if ! "${bazel[@]}" build "${flags[@]}" "${targets[@]/#/\/\/tests\/fuzz:}"; then
    echo "fuzz: build failed" >&2
    exit 2
fi
bin=$("${bazel[@]}" info "${flags[@]}" bazel-bin 2>/dev/null)/tests/fuzz

# The dictionary of a target: <name>.dict, inbound_fuzz shares smtp's.
dict_of() {
    local base=${1%_fuzz}
    case $base in inbound) base=smtp ;; esac
    [ -f "tests/fuzz/$base.dict" ] && echo "-dict=tests/fuzz/$base.dict"
}

scratch=$(mktemp -d "$tmp/smtp-tls-proxy-fuzz-run.XXXXXX")
failed=0
printf '%-16s %10s %8s  %s\n' target execs cov result
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t/corpus" "$scratch/$t/artifacts"
    cp tests/fuzz/corpus/"$t"/* "$scratch/$t/corpus/"
    # libFuzzer stops itself at -max_total_time; timeout only catches a
    # fuzzer stuck outside an input. Niced: a shared machine stays usable.
    timeout --kill-after=10 $((secs + 60)) nice -n 10 "$bin/$t" $(dict_of "$t") \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$scratch/$t/artifacts/" \
        "$scratch/$t/corpus" >"$scratch/$t/log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$t/log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$scratch/$t/log" | tail -1 | cut -d' ' -f2)
    crash=$(find "$scratch/$t/artifacts" -type f | head -1)
    if [ "$rc" -ne 0 ] || [ -n "$crash" ]; then
        failed=1
        printf '%-16s %10s %8s  FAILED rc=%s %s (log %s)\n' "$t" "${execs:-?}" "${cov:-?}" \
            "$rc" "${crash:-no input saved}" "$scratch/$t/log"
        grep -m5 -E 'ERROR|invariant failed|SUMMARY' "$scratch/$t/log" | sed 's/^/    /'
    else
        printf '%-16s %10s %8s  ok\n' "$t" "${execs:-?}" "${cov:-?}"
        rm -rf "${scratch:?}/$t"
    fi
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz: failures kept under $scratch; add a reproducer to tests/fuzz/corpus/<target>/ with the fix"
    exit 1
fi
rmdir "$scratch" 2>/dev/null
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no crash"
