# scripts/bench-lib.sh — helpers shared by scripts/bench.sh and scripts/bench-bucket.sh.
# Sourced, not run. The caller sets BENCH_PROG (its name, for messages) first, and later
# LOGS (a directory for per-step logs), WARNINGS (a file collecting failed checks),
# OUTDIR (scratch space for copies), and, for the read measures, DATA, ZIP_REL, ZIP_SIZE
# and ST_ENTRIES (the data tree, its largest zip and the entry count of data/structr).
# shellcheck shell=bash
# The variables set here (M_S, M_RSS, M_CPU, …) are read by the scripts that source this.
# shellcheck disable=SC2034

BENCH_PROG=${BENCH_PROG:-bench}
BENCH_T0=$EPOCHREALTIME
LOGS=""
WARNINGS=/dev/null
CACHES_DROPPED=yes
M_S=0
M_RSS=0
M_CPU=0

log() { printf '==> [%6.1fs] %s\n' "$(awk -v a="$BENCH_T0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$*" >&2; }
die() { printf '%s: %s\n' "$BENCH_PROG" "$*" >&2; exit 1; }

is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts; }

unmount_quietly() {
    fusermount3 -u "$1" 2>/dev/null || fusermount -u "$1" 2>/dev/null || umount -l "$1" 2>/dev/null || true
}

# Seconds between two $EPOCHREALTIME stamps.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }'; }
# calc 'expr' [var=value ...]: awk arithmetic, printed with %.6g unless the expr formats itself.
calc() { local e=$1; shift; awk "$@" "BEGIN { printf \"%.6g\", $e }"; }

drop_caches() {
    sync
    if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        if [[ $CACHES_DROPPED == yes ]]; then
            echo "$BENCH_PROG: cannot drop page caches (not root?); cold numbers will be warm" >&2
        fi
        CACHES_DROPPED=no
    fi
}

# tree_stats DIR -> "entries files dirs symlinks bytes" (bytes of regular files), DIR included.
tree_stats() {
    find "$1" -printf '%y %s\n' | awk '
        { n++ } $1 == "f" { f++; b += $2 } $1 == "d" { d++ } $1 == "l" { l++ }
        END { printf "%d %d %d %d %.0f\n", n, f, d, l, b }'
}

# measure NAME CMD...: run CMD with output to $LOGS/NAME.log; sets M_S (wall seconds), M_RSS
# (peak RSS in MB, of the process CMD execs) and M_CPU (its user + system CPU seconds, with
# its waited-for children). A failure prints the log tail and exits.
measure() {
    local name=$1
    shift
    local lf="$LOGS/$name.log" tf="$LOGS/$name.time" t0=$EPOCHREALTIME
    if ! /usr/bin/time -f '%M %U %S' -o "$tf" "$@" >"$lf" 2>&1; then
        echo "$BENCH_PROG: step '$name' failed: $*" >&2
        tail -n 20 "$lf" >&2
        exit 1
    fi
    M_S=$(since "$t0")
    M_RSS=$(tail -n 1 "$tf" | awk '{ printf "%.1f", $1 / 1024 }')
    M_CPU=$(tail -n 1 "$tf" | awk '{ printf "%.2f", $2 + $3 }')
}

# Failed checks go to a file, as they are often found inside $(...).
warn() {
    echo "$BENCH_PROG: WARNING: $*" >&2
    echo "**Check failed:** $*" >>"$WARNINGS"
}

dir_bytes() { du -sb "$1" | cut -f1; }

# ---------------------------------------------------------------------------------------------
# Reads, each checked against the original.

copy_mbps() { # copy_mbps SRC -> MB/s of cp SRC to OUTDIR, after checking the copy
    local t0 s
    rm -f "$OUTDIR/zip"
    t0=$EPOCHREALTIME
    cp "$1" "$OUTDIR/zip"
    s=$(since "$t0")
    cmp -s "$1" "$OUTDIR/zip" || cmp -s "$DATA/$ZIP_REL" "$OUTDIR/zip" || warn "cp of $1 differs from the original"
    rm -f "$OUTDIR/zip"
    calc 'b / 1e6 / s' -v b="$ZIP_SIZE" -v s="$s"
}

find_s() { # find_s DIR TOOL -> seconds of `find DIR | wc -l`, checking the count
    local t0 n s
    t0=$EPOCHREALTIME
    n=$(find "$1" | wc -l)
    s=$(since "$t0")
    [[ $n == "$ST_ENTRIES" ]] || warn "$2: find over the Structr tree counted $n entries, not $ST_ENTRIES"
    echo "$s"
}

# same_content ORIG COPY WHAT: warns unless COPY holds exactly ORIG's entries, with the same
# bytes in every file and the same symlink targets (rsync --dry-run --checksum, which reads
# both trees in full).
same_content() {
    local diffs
    diffs=$(rsync -rlnci --delete "$1/" "$2/" 2>&1) || { warn "$3: rsync --checksum against the original failed: $(head -n 3 <<<"$diffs")"; return; }
    if [[ -n $diffs ]]; then
        warn "$3 differs from the original in $(wc -l <<<"$diffs") entries, first: $(head -n 3 <<<"$diffs" | tr '\n' ' ')"
    fi
}

# rsync_s DIR TOOL -> seconds of `rsync -a DIR/ OUTDIR/structr/`, checking the copy (entry
# counts and bytes; with RSYNC_CHECKSUM=1 also every file's content).
RSYNC_CHECKSUM=0
rsync_s() {
    local t0 s got
    rm -rf "$OUTDIR/structr"
    t0=$EPOCHREALTIME
    rsync -a "$1/" "$OUTDIR/structr/" >"$LOGS/$2-rsync.log" 2>&1 ||
        { tail -n 20 "$LOGS/$2-rsync.log" >&2; die "$2: rsync -a out of $1 failed"; }
    s=$(since "$t0")
    got=$(tree_stats "$OUTDIR/structr")
    [[ $got == "$(tree_stats "$DATA/structr")" ]] || warn "$2: rsync copy of the Structr tree differs (entries files dirs links bytes: $got)"
    if ((RSYNC_CHECKSUM)); then
        same_content "$DATA/structr" "$OUTDIR/structr" "$2: the rsync copy of the Structr tree"
    fi
    rm -rf "$OUTDIR/structr"
    echo "$s"
}

# ---------------------------------------------------------------------------------------------
# Table cells.

# fmt VALUE DECIMALS: a number, or an en dash when there is none.
fmt() {
    if [[ -z $1 ]]; then printf '–'; else awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; fi
}
ratio() {
    if [[ -z $1 || -z $2 ]]; then
        printf '–'
    else
        awk -v a="$1" -v b="$2" 'BEGIN {
            if (b == 0) { printf "–"; exit }
            r = a / b
            if (r < 0.1) printf "%.3f×", r; else if (r < 10) printf "%.2f×", r; else printf "%.0f×", r }'
    fi
}
