#!/usr/bin/env bash
# scripts/bench.sh — strata side by side with restic and borg, in one run, on one machine.
#
#   scripts/bench.sh [--quick] [--scale F] [--keep] [--out FILE] [--baseline BIN | --unencrypted-base]
#
# Builds strata, strata-gen and randread (tools/randread) in release mode, installs restic,
# borgbackup and python3-llfuse from Debian if they are missing, generates a Jira / Structr /
# Confluence / pg_dump tree with strata-gen, and measures, per tool: first ingest, next-day
# ingest, mount, find, cp, rsync and random reads through the mount, and a full restore, plus
# native baselines on the same files. Page caches are dropped before every cold measure (needs
# root). Prints one markdown table on stdout and writes it, with the machine, versions and
# dataset, into docs/BENCHMARKS.md between the `bench:begin` / `bench:end` markers (the rest of
# that file is left alone). --quick uses a small scale and writes target/bench-quick.md instead,
# so it never overwrites the full results.
#
# --baseline BIN measures a second strata binary (say, one built from an older commit) as a
# fourth tool, `strata-base`, with its own archive and mount, on every row strata is measured;
# the table gains its column and a "strata / base" column (above 1: the current strata is
# better), and a line lists the rows where the two differ by more than 5%. Without it the
# output is the three-tool table. --unencrypted-base measures this strata twice instead: as
# `strata` on an encrypted archive (the default) and as `strata-base` with `init
# --no-encryption`, so the column says what encryption costs.
#
# strata encrypts (STRATA_PASSWORD), restic always does, and borg runs with `repokey`
# (BORG_PASSPHRASE), so the three are compared like for like.
#
# Environment: BENCH_DIR (work directory, default /var/tmp/strata-bench; must be on a real
# disk, not tmpfs; it is deleted at the end unless --keep), BENCH_SEED (default 1).
# Every mount it starts is unmounted on the way out, also on failure or Ctrl-C.

set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C
BENCH_PROG=bench.sh
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

usage() {
    sed -n '/^# *scripts\/bench\.sh \[/ { s/^# *//; p; q; }' "$0"
    echo "  --quick         small scale (0.03, about 40 MB): a smoke run in under two minutes"
    echo "  --scale F       strata-gen scale factor (default 1.0, about 1.5 GB)"
    echo "  --keep          keep the work directory (data, archives, logs) afterwards"
    echo "  --out FILE      write the results there instead of docs/BENCHMARKS.md / target/bench-quick.md"
    echo "  --baseline BIN  also measure BIN, a strata binary built from another commit, as strata-base"
    echo "  --unencrypted-base  measure this strata unencrypted (init --no-encryption) as strata-base"
}

QUICK=0
KEEP=0
SCALE=""
OUT=""
BASELINE=""
BASE_VERSION=""
BASE_PLAIN=0
BASE_INIT=()
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --scale)
            [[ $# -ge 2 ]] || { echo "bench.sh: --scale needs a value" >&2; exit 2; }
            SCALE=$2
            shift
            ;;
        --out)
            [[ $# -ge 2 ]] || { echo "bench.sh: --out needs a value" >&2; exit 2; }
            OUT=$2
            shift
            ;;
        --baseline)
            [[ $# -ge 2 ]] || { echo "bench.sh: --baseline needs a strata binary" >&2; exit 2; }
            BASELINE=$2
            shift
            ;;
        --unencrypted-base) BASE_PLAIN=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n $BASELINE ]]; then
    [[ -f $BASELINE && -x $BASELINE ]] ||
        { echo "bench.sh: --baseline $BASELINE is not an executable file; build it first (cargo build --release -p strata in a worktree of the older commit)" >&2; exit 2; }
    BASELINE=$(cd "$(dirname "$BASELINE")" && pwd -P)/$(basename "$BASELINE")
    BASE_VERSION=$("$BASELINE" --version 2>/dev/null || true)
    [[ $BASE_VERSION == strata\ * ]] ||
        { echo "bench.sh: --baseline $BASELINE does not answer --version like strata does" >&2; exit 2; }
fi
if ((QUICK)); then
    SCALE=${SCALE:-0.03}
    OUT=${OUT:-$ROOT/target/bench-quick.md}
else
    SCALE=${SCALE:-1.0}
    OUT=${OUT:-$ROOT/docs/BENCHMARKS.md}
fi
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "bench.sh: --scale must be a number" >&2; exit 2; }
SEED=${BENCH_SEED:-1}
WORK=${BENCH_DIR:-/var/tmp/strata-bench}
RR_COUNT=2000
RR_SIZE=4096
RR_SEED=42

# ---------------------------------------------------------------------------------------------
# Cleanup: every mount we start is recorded here and undone on exit, whatever the exit.
MOUNTS=()
BGPIDS=()
WORK_OURS=0

cleanup() {
    local rc=$? m p i
    set +e
    trap - EXIT INT TERM
    for m in "${MOUNTS[@]}"; do
        if is_mounted "$m"; then unmount_quietly "$m"; fi
    done
    for p in "${BGPIDS[@]}"; do
        # Only a process we started that is still a mount process (pids are not reused by then,
        # but be sure).
        if kill -0 "$p" 2>/dev/null && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q mount; then
            kill "$p" 2>/dev/null
        fi
    done
    for i in $(seq 50); do
        local alive=0
        for p in "${BGPIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for m in "${MOUNTS[@]}"; do
        if is_mounted "$m"; then umount -l "$m" 2>/dev/null; fi
    done
    local busy=0
    for m in "${MOUNTS[@]}"; do is_mounted "$m" && busy=1; done
    if ((busy)); then
        echo "bench.sh: some mounts under $WORK could not be removed; not deleting it" >&2
    elif ((WORK_OURS)) && ((KEEP == 0)); then
        rm -rf "$WORK"
    elif ((WORK_OURS)); then
        echo "bench.sh: kept $WORK" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Helpers (the rest are in scripts/bench-lib.sh).

# R[tool.key] = value: every number the table shows.
declare -A R=()

# ---------------------------------------------------------------------------------------------
# Tools.

need_pkgs=()
command -v restic >/dev/null || need_pkgs+=(restic)
command -v borg >/dev/null || need_pkgs+=(borgbackup)
# borg mount needs llfuse (or pyfuse3) importable by borg's own interpreter.
BORG_PY=/usr/bin/python3
if command -v borg >/dev/null; then
    BORG_PY=$(head -n 1 "$(command -v borg)" | sed -n 's/^#! *\([^ ]*\).*/\1/p')
    [[ -x $BORG_PY ]] || BORG_PY=/usr/bin/python3
fi
"$BORG_PY" -c 'import llfuse' 2>/dev/null || "$BORG_PY" -c 'import pyfuse3' 2>/dev/null || need_pkgs+=(python3-llfuse)
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
command -v zstd >/dev/null || need_pkgs+=(zstd)
command -v rsync >/dev/null || need_pkgs+=(rsync)
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]} from Debian"
    [[ $(id -u) == 0 ]] || die "need root to install ${need_pkgs[*]} (or install them first)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2; }
fi
[[ -e /dev/fuse ]] || die "/dev/fuse is missing: the mount measures need FUSE"

log "building strata, strata-gen and randread (release)"
(cd "$ROOT" && cargo build --release --quiet -p strata -p strata-gen -p randread) ||
    die "cargo build failed"
STRATA=$ROOT/target/release/strata
if ((BASE_PLAIN)); then
    [[ -z $BASELINE ]] || { echo "bench.sh: give --baseline or --unencrypted-base, not both" >&2; exit 2; }
    BASELINE=$STRATA
    BASE_VERSION="$("$STRATA" --version) unencrypted (init --no-encryption)"
    BASE_INIT=(--no-encryption)
fi
GEN=$ROOT/target/release/strata-gen
RANDREAD=$ROOT/target/release/randread

# ---------------------------------------------------------------------------------------------
# Work directory.

if [[ -e $WORK ]]; then
    [[ -e $WORK/.strata-bench ]] || die "$WORK exists and is not a bench.sh work directory; remove it or set BENCH_DIR"
    awk -v w="$WORK/" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/self/mounts &&
        die "something is still mounted under $WORK; unmount it first"
    rm -rf "$WORK"
fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd -P)
WORK_OURS=1
touch "$WORK/.strata-bench"
LOGS=$WORK/logs
WARNINGS=$WORK/warnings
DATA=$WORK/data
OUTDIR=$WORK/out
MNT=$WORK/mnt
mkdir -p "$LOGS" "$OUTDIR" "$MNT" "$WORK/native"
ARCH_STRATA=$WORK/strata.archive
ARCH_BASE=$WORK/strata-base.archive
REPO_RESTIC=$WORK/restic.repo
REPO_BORG=$WORK/borg.repo
export RESTIC_PASSWORD=strata-bench
# strata encrypts new archives by default (issue 14); a baseline from before ignores it.
export STRATA_PASSWORD=strata-bench
export RESTIC_CACHE_DIR=$WORK/cache/restic
export BORG_BASE_DIR=$WORK/cache/borg
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_PASSPHRASE=strata-bench
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START_T=$EPOCHREALTIME
log "work directory $WORK; scale $SCALE; load average $START_LOAD"

# ---------------------------------------------------------------------------------------------
# Data, day 1.

log "generating data (strata-gen --scale $SCALE --seed $SEED)"
measure gen "$GEN" "$DATA" --scale "$SCALE" --seed "$SEED"
read -r D1_ENTRIES D1_FILES D1_DIRS D1_LINKS D1_BYTES < <(tree_stats "$DATA")
D1_MB=$(calc 'b / 1e6' -v b="$D1_BYTES" | xargs printf '%.1f')
log "day 1: $D1_MB MB in $D1_FILES files ($D1_ENTRIES entries)"

# Native baseline for the first ingest: tar | zstd -3 -T0.
drop_caches
t0=$EPOCHREALTIME
tar -cf - -C "$WORK" data | zstd -3 -T0 -q >"$WORK/native/day1.tar.zst"
R[native.ingest1.s]=$(since "$t0")
R[native.size1.mb]=$(calc 'b / 1e6' -v b="$(stat -c %s "$WORK/native/day1.tar.zst")")
rm -f "$WORK/native/day1.tar.zst"
log "native tar | zstd -3 -T0: ${R[native.ingest1.s]} s"

TOOLS=(strata restic borg)
if [[ -n $BASELINE ]]; then
    TOOLS=(strata strata-base restic borg)
fi

bin_of() { # bin_of strata|strata-base -> the binary
    case $1 in
        strata) echo "$STRATA" ;;
        strata-base) echo "$BASELINE" ;;
    esac
}

ingest() { # ingest TOOL DAY
    case $1 in
        strata | strata-base) measure "$1-ingest$2" "$(bin_of "$1")" ingest "$(store_of "$1")" "$DATA" --json ;;
        restic) measure "restic-ingest$2" restic -r "$REPO_RESTIC" backup --compression auto "$DATA" ;;
        borg) measure "borg-ingest$2" env -C "$WORK" borg create --compression zstd,3 "$REPO_BORG::day$2" data ;;
    esac
}

measure strata-init "$STRATA" init "$ARCH_STRATA"
if [[ -n $BASELINE ]]; then
    measure strata-base-init "$BASELINE" init "${BASE_INIT[@]}" "$ARCH_BASE"
fi
measure restic-init restic -r "$REPO_RESTIC" init --repository-version 2
measure borg-init borg init --encryption repokey "$REPO_BORG"
store_of() {
    case $1 in
        strata) echo "$ARCH_STRATA" ;;
        strata-base) echo "$ARCH_BASE" ;;
        restic) echo "$REPO_RESTIC" ;;
        borg) echo "$REPO_BORG" ;;
    esac
}
declare -A SIZE1=()

for t in "${TOOLS[@]}"; do
    drop_caches
    ingest "$t" 1
    R[$t.ingest1.s]=$M_S
    R[$t.ingest1.rss]=$M_RSS
    SIZE1[$t]=$(dir_bytes "$(store_of "$t")")
    R[$t.size1.mb]=$(calc 's / 1e6' -v s="${SIZE1[$t]}")
    log "$t first ingest: $M_S s, peak RSS $M_RSS MB, archive ${R[$t.size1.mb]} MB"
done
for t in "${TOOLS[@]}" native; do
    R[$t.ingest1.mbps]=$(calc 'b / 1e6 / s' -v b="$D1_BYTES" -v s="${R[$t.ingest1.s]}")
done

# ---------------------------------------------------------------------------------------------
# Day 2.

log "strata-gen --next-day"
measure nextday "$GEN" --next-day "$DATA"
read -r _ D2_FILES _ _ D2_BYTES < <(tree_stats "$DATA")
D2_MB=$(calc 'b / 1e6' -v b="$D2_BYTES" | xargs printf '%.1f')
read -r ST_ENTRIES _ < <(tree_stats "$DATA/structr")
read -r ZIP_SIZE ZIP_REL < <(find "$DATA/jira/export" -name '*.zip' -type f -printf '%s %P\n' | sort -n | tail -n 1)
ZIP_REL=jira/export/$ZIP_REL
ZIP_MB=$(calc 's / 1e6' -v s="$ZIP_SIZE" | xargs printf '%.1f')
log "day 2: $D2_MB MB in $D2_FILES files; Structr tree $ST_ENTRIES entries; largest zip $ZIP_REL ($ZIP_MB MB)"

drop_caches
t0=$EPOCHREALTIME
tar -cf - -C "$WORK" data | zstd -3 -T0 -q >"$WORK/native/day2.tar.zst"
R[native.ingest2.s]=$(since "$t0")
R[native.added.mb]=$(calc 'b / 1e6' -v b="$(stat -c %s "$WORK/native/day2.tar.zst")")

for t in "${TOOLS[@]}"; do
    drop_caches
    ingest "$t" 2
    R[$t.ingest2.s]=$M_S
    R[$t.ingest2.rss]=$M_RSS
    size2=$(dir_bytes "$(store_of "$t")")
    R[$t.added.mb]=$(calc '(b - a) / 1e6' -v a="${SIZE1[$t]}" -v b="$size2")
    log "$t next-day ingest: $M_S s, added ${R[$t.added.mb]} MB"
done

# ---------------------------------------------------------------------------------------------
# Native reads from disk.

randread() { # randread FILE TOOL KIND [--compare ORIG] -> sets R[TOOL.rrKIND.p50/p99]
    local file=$1 tool=$2 kind=$3 line
    shift 3
    line=$("$RANDREAD" "$file" --count "$RR_COUNT" --size "$RR_SIZE" --seed "$RR_SEED" "$@") ||
        die "$tool: random reads of $file failed"
    R[$tool.rr$kind.p50]=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    R[$tool.rr$kind.p99]=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    echo "$tool random reads ($kind): $line" >>"$LOGS/randread.log"
}

log "native reads from disk"
drop_caches
R[native.find.s]=$(find_s "$DATA/structr" native)
drop_caches
R[native.cpcold.mbps]=$(copy_mbps "$DATA/$ZIP_REL")
R[native.cpwarm.mbps]=$(copy_mbps "$DATA/$ZIP_REL")
drop_caches
R[native.rsync.s]=$(rsync_s "$DATA/structr" native)
drop_caches
randread "$DATA/$ZIP_REL" native cold
randread "$DATA/$ZIP_REL" native warm
log "native: find ${R[native.find.s]} s, cp ${R[native.cpcold.mbps]}/${R[native.cpwarm.mbps]} MB/s, rsync ${R[native.rsync.s]} s"

# ---------------------------------------------------------------------------------------------
# Mounts.

MOUNT_PID=""
SNAPROOT=""
snap_listed() { # true once `ls $SNAPROOT` shows the Structr tree
    local list
    list=$(ls "$SNAPROOT" 2>/dev/null) || return 1
    [[ $'\n'$list$'\n' == *$'\nstructr\n'* ]]
}

mount_start() { # mount_start TOOL MNT: mounts, waits until the snapshot's data root lists
    local tool=$1 mnt=$2 lf="$LOGS/$1-mount.log" t0 i
    mkdir -p "$mnt"
    MOUNTS+=("$mnt")
    case $tool in
        strata | strata-base)
            "$(bin_of "$tool")" mount --daemon "$(store_of "$tool")" "$mnt" >"$lf" 2>&1 ||
                { cat "$lf" >&2; die "$tool mount failed"; }
            MOUNT_PID=$(sed -n 's/^mount process \([0-9][0-9]*\) serves.*/\1/p' "$lf")
            [[ -n $MOUNT_PID ]] || { cat "$lf" >&2; die "$tool mount --daemon did not say which process serves"; }
            SNAPROOT=$mnt/latest/data
            ;;
        restic)
            restic -r "$REPO_RESTIC" mount "$mnt" >"$lf" 2>&1 &
            MOUNT_PID=$!
            SNAPROOT=$mnt/snapshots/latest$DATA
            ;;
        borg)
            borg mount -f "$REPO_BORG" "$mnt" >"$lf" 2>&1 &
            MOUNT_PID=$!
            SNAPROOT=$mnt/day2/data
            ;;
    esac
    BGPIDS+=("$MOUNT_PID")
    t0=$EPOCHREALTIME
    i=0
    until snap_listed; do
        kill -0 "$MOUNT_PID" 2>/dev/null || { cat "$lf" >&2; die "$tool mount process exited"; }
        ((++i % 200 == 0)) && awk -v s="$(since "$t0")" 'BEGIN { exit !(s > 600) }' &&
            { cat "$lf" >&2; die "$tool mount: $SNAPROOT did not list within 600 s"; }
        sleep 0.002
    done
}

mount_stop() { # mount_stop TOOL MNT
    local i
    case $1 in
        strata | strata-base) "$(bin_of "$1")" umount "$2" >>"$LOGS/$1-mount.log" 2>&1 || unmount_quietly "$2" ;;
        *) fusermount3 -u "$2" 2>>"$LOGS/$1-mount.log" || unmount_quietly "$2" ;;
    esac
    for i in $(seq 300); do
        kill -0 "$MOUNT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$MOUNT_PID" 2>/dev/null; then
        warn "$1 mount process $MOUNT_PID still running 30 s after unmount; killing it"
        kill "$MOUNT_PID" 2>/dev/null || true
    fi
    # strata's mount process is a daemon, not our child; the others are our background jobs.
    [[ $1 == strata || $1 == strata-base ]] || wait "$MOUNT_PID" 2>/dev/null || true
    is_mounted "$2" && die "$1: $2 is still mounted"
    return 0
}

for t in "${TOOLS[@]}"; do
    m=$MNT/$t
    log "$t mount: session 1 (mount, find, cp, rsync, warm random reads)"
    drop_caches
    t0=$EPOCHREALTIME
    mount_start "$t" "$m"
    R[$t.mount.s]=$(since "$t0")
    drop_caches
    R[$t.find.s]=$(find_s "$SNAPROOT/structr" "$t")
    drop_caches
    R[$t.cpcold.mbps]=$(copy_mbps "$SNAPROOT/$ZIP_REL")
    R[$t.cpwarm.mbps]=$(copy_mbps "$SNAPROOT/$ZIP_REL")
    drop_caches
    R[$t.rsync.s]=$(rsync_s "$SNAPROOT/structr" "$t")
    # A first pass checks every block against the original and warms the caches.
    randread "$SNAPROOT/$ZIP_REL" "$t" warmup --compare "$DATA/$ZIP_REL"
    randread "$SNAPROOT/$ZIP_REL" "$t" warm
    R[$t.mountrss.mb]=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$MOUNT_PID/status")
    log "$t: ready ${R[$t.mount.s]} s, find ${R[$t.find.s]} s, cp ${R[$t.cpcold.mbps]}/${R[$t.cpwarm.mbps]} MB/s, rsync ${R[$t.rsync.s]} s, RSS ${R[$t.mountrss.mb]} MB"
    mount_stop "$t" "$m"

    log "$t mount: session 2 (cold random reads on a fresh mount)"
    drop_caches
    mount_start "$t" "$m"
    drop_caches
    randread "$SNAPROOT/$ZIP_REL" "$t" cold
    mount_stop "$t" "$m"
done

# ---------------------------------------------------------------------------------------------
# Full restores of the day-2 snapshot.

check_restore() { # check_restore DIR TOOL
    local got want
    got=$(tree_stats "$1")
    want=$(tree_stats "$DATA")
    [[ $got == "$want" ]] || warn "$2: restored tree differs (entries files dirs links bytes: $got, want $want)"
}

for t in "${TOOLS[@]}"; do
    target=$OUTDIR/restore-$t
    rm -rf "$target"
    mkdir -p "$target"
    drop_caches
    case $t in
        strata | strata-base)
            measure "$t-restore" "$(bin_of "$t")" restore "$(store_of "$t")" latest "$target"
            restored=$target/data
            ;;
        restic)
            measure restic-restore restic -r "$REPO_RESTIC" restore latest --target "$target"
            restored=$target$DATA
            ;;
        borg)
            measure borg-restore env -C "$target" borg extract "$REPO_BORG::day2"
            restored=$target/data
            ;;
    esac
    R[$t.restore.s]=$M_S
    R[$t.restore.rss]=$M_RSS
    check_restore "$restored" "$t"
    rm -rf "$target"
    log "$t restore: $M_S s, peak RSS $M_RSS MB"
done
target=$OUTDIR/restore-native
mkdir -p "$target"
drop_caches
t0=$EPOCHREALTIME
zstd -dc -q "$WORK/native/day2.tar.zst" | tar -xf - -C "$target"
R[native.restore.s]=$(since "$t0")
check_restore "$target/data" native
rm -rf "$target"
for t in "${TOOLS[@]}" native; do
    R[$t.restore.mbps]=$(calc 'b / 1e6 / s' -v b="$D2_BYTES" -v s="${R[$t.restore.s]}")
done

# ---------------------------------------------------------------------------------------------
# Report.

END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL_MIN=$(awk -v s="$(since "$START_T")" 'BEGIN { printf "%.1f", s / 60 }')

# base_ratio BETTER STRATA BASE: strata against the baseline, above 1 when strata is better now
# (base ÷ strata in "lower" rows, strata ÷ base in "higher" rows).
base_ratio() {
    if [[ $1 == lower ]]; then ratio "$3" "$2"; else ratio "$2" "$3"; fi
}
# differs A B: true when A and B differ by more than 5% (the larger over the smaller), or when
# only one of them is there.
differs() {
    [[ -z $1 && -z $2 ]] && return 1
    [[ -z $1 || -z $2 ]] && return 0
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == b) exit 1
        if (a <= 0 || b <= 0) exit 0
        r = a > b ? a / b : b / a
        exit !(r > 1.05) }'
}
# The labels of the rows where strata and strata-base differ by more than 5%, with the ratio.
BASE_DIFFS=()
BASE_ROWS=0
# row LABEL BETTER KEY DECIMALS [NATIVE_NOTE]
row() {
    local label=$1 better=$2 key=$3 d=$4 nnote=${5:-} s r b n
    s=${R[strata.$key]:-}
    r=${R[restic.$key]:-}
    b=${R[borg.$key]:-}
    n=${R[native.$key]:-}
    local ncell
    ncell=$(fmt "$n" "$d")
    [[ -n $n && -n $nnote ]] && ncell="$ncell ($nnote)"
    if [[ -z $BASELINE ]]; then
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$better" \
            "$(fmt "$s" "$d")" "$(fmt "$r" "$d")" "$(fmt "$b" "$d")" "$ncell" \
            "$(ratio "$s" "$r")" "$(ratio "$s" "$b")" "$(ratio "$s" "$n")"
        return
    fi
    local bs=${R[strata-base.$key]:-} br
    br=$(base_ratio "$better" "$s" "$bs")
    BASE_ROWS=$((BASE_ROWS + 1))
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$better" \
        "$(fmt "$s" "$d")" "$(fmt "$bs" "$d")" "$br" "$(fmt "$r" "$d")" "$(fmt "$b" "$d")" "$ncell" \
        "$(ratio "$s" "$r")" "$(ratio "$s" "$b")" "$(ratio "$s" "$n")"
    if differs "$s" "$bs"; then
        BASE_DIFFS+=("$label ($br)")
    fi
}

RESULT=$WORK/result.md
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
RAM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
DISK_SRC=$(findmnt -no SOURCE -T "$WORK" 2>/dev/null || echo '?')
DISK_FS=$(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || echo '?')
DISK_INFO=$(lsblk -dno SIZE,MODEL "$DISK_SRC" 2>/dev/null | awk '{ $1 = $1; print }' || true)
GIT_REV=$(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    GIT_REV="$GIT_REV (with uncommitted changes in src/ or Cargo files)"
fi
{
    echo "## Results: scale $SCALE, $START_DATE"
    echo
    echo "\`scripts/bench.sh$( ((QUICK)) && printf ' --quick')$([[ $SCALE != 1.0 ]] && ((QUICK == 0)) && printf ' --scale %s' "$SCALE")${BASELINE:+ --baseline $BASELINE}\` took $TOTAL_MIN min."
    echo "Load average (1, 5, 15 min) at the start: $START_LOAD; at the end: $END_LOAD."
    echo "Page caches dropped before each cold measure: $CACHES_DROPPED."
    echo
    echo "- **Machine**: $(nproc) CPUs ($CPU), $RAM_GIB GiB RAM, work directory on $DISK_SRC ($DISK_FS${DISK_INFO:+, $DISK_INFO}), kernel $(uname -r)."
    echo "- **Versions**: $("$STRATA" --version) at git $GIT_REV,${BASELINE:+ baseline (strata-base) $BASE_VERSION from \`$BASELINE\`,} $(restic version | cut -d' ' -f1-2), $(borg --version), zstd $(zstd -q --version), $(rsync --version | head -n 1 | awk '{ print $1, $3 }'), $(tar --version | head -n 1)."
    echo "- **Dataset** (\`strata-gen --scale $SCALE --seed $SEED\`): day 1 is $D1_MB MB in $D1_FILES files ($D1_DIRS directories, $D1_LINKS symlinks); after \`--next-day\`, day 2 is $D2_MB MB in $D2_FILES files. The Structr tree (\`data/structr\`) has $ST_ENTRIES entries; the largest zip is \`$ZIP_REL\`, $ZIP_MB MB."
    echo "- **Settings**: strata defaults (1 MiB chunks, zstd 3); restic \`--compression auto\`, repository v2; borg \`--compression zstd,3\`, \`--encryption repokey\`; strata encrypted (its default); the mount measures read the day-2 snapshot."
    echo
    if [[ -z $BASELINE ]]; then
        echo "| measure | better | strata | restic | borg | native | strata÷restic | strata÷borg | strata÷native |"
        echo "|---|---|---|---|---|---|---|---|---|"
    else
        echo "| measure | better | strata | strata-base | strata / base (>1: strata now better) | restic | borg | native | strata÷restic | strata÷borg | strata÷native |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
    fi
    row "first ingest, wall time (s)" lower ingest1.s 2 "tar \| zstd"
    row "first ingest, MB/s" higher ingest1.mbps 1 "tar \| zstd"
    row "first ingest, peak RSS (MB)" lower ingest1.rss 1
    row "archive size after first ingest (MB)" lower size1.mb 1 ".tar.zst"
    row "next-day ingest, wall time (s)" lower ingest2.s 2 "full tar \| zstd"
    row "next-day ingest, peak RSS (MB)" lower ingest2.rss 1
    row "next-day ingest, bytes added (MB)" lower added.mb 1 "full .tar.zst"
    row "mount until the snapshot lists (s)" lower mount.s 3
    row "\`find\` Structr tree \| wc -l, cold (s)" lower find.s 3
    row "\`cp\` largest zip, cold (MB/s)" higher cpcold.mbps 1
    row "\`cp\` largest zip, warm (MB/s)" higher cpwarm.mbps 1
    row "\`rsync -a\` Structr tree, cold (s)" lower rsync.s 2
    row "random 4 KiB reads, cold, p50 (ms)" lower rrcold.p50 3
    row "random 4 KiB reads, cold, p99 (ms)" lower rrcold.p99 3
    row "random 4 KiB reads, warm, p50 (ms)" lower rrwarm.p50 4
    row "random 4 KiB reads, warm, p99 (ms)" lower rrwarm.p99 4
    row "mount process RSS after the reads (MB)" lower mountrss.mb 1
    row "full restore of day 2, cold (s)" lower restore.s 2 "zstd -d \| tar -x"
    row "full restore, MB/s" higher restore.mbps 1 "zstd -d \| tar -x"
    row "full restore, peak RSS (MB)" lower restore.rss 1
    echo
    if [[ -n $BASELINE ]]; then
        if ((${#BASE_DIFFS[@]})); then
            printf '**strata and strata-base differ by more than 5%%** in %d of %d rows: %s.\n' \
                "${#BASE_DIFFS[@]}" "$BASE_ROWS" "$(printf '%s; ' "${BASE_DIFFS[@]}" | sed 's/; $//')"
        else
            echo "**strata and strata-base differ by more than 5%** in no row."
        fi
        echo
        echo "strata-base is \`$BASELINE\` ($BASE_VERSION), measured like strata right after it, with its own archive and mount. The strata / base column is oriented so that above 1 is better for the current strata: base ÷ strata in \"lower\" rows (times, sizes, RSS, latencies), strata ÷ base in \"higher\" rows (MB/s); 5% is the threshold for the line above, not a measure of the noise."
    fi
    echo "Ratios are strata's value divided by the other's: below 1 is better for strata in \"lower\" rows, above 1 in \"higher\" rows."
    echo "MB are 10^6 bytes; MB/s is the bytes of files (day 1 for the first ingest, day 2 for restores) divided by the wall time."
    echo "Native: \`tar -cf - data | zstd -3 -T0\` for ingest and \`zstd -dc | tar -x\` for restore; \`cp\`, \`find\`, \`rsync -a\` and the random reads on the files on disk."
    echo "Mount: time from starting the mount until \`ls\` of the snapshot's data directory shows it (\`strata mount --daemon\`, which returns once the mount is ready; \`restic mount\` and \`borg mount -f\` started as background jobs)."
    echo "Random reads: $RR_COUNT preads of $RR_SIZE bytes at seeded random offsets (\`tools/randread\`, seed $RR_SEED); \"cold\" is on a fresh mount after dropping caches, \"warm\" is a second pass after \`cp\`, \`rsync\` and a first pass in the same mount."
    echo "Every copy, restore and random read was checked against the original (entry counts and bytes; every random block)."
    if [[ -s $WARNINGS ]]; then
        echo
        cat "$WARNINGS"
    fi
} >"$RESULT"

cat "$RESULT"

mkdir -p "$(dirname "$OUT")"
if [[ -f $OUT ]] && grep -qx '<!-- bench:begin -->' "$OUT" && grep -qx '<!-- bench:end -->' "$OUT"; then
    {
        sed '/^<!-- bench:begin -->$/q' "$OUT"
        cat "$RESULT"
        sed -n '/^<!-- bench:end -->$/,$p' "$OUT"
    } >"$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
else
    {
        echo "# Benchmarks"
        echo
        echo "<!-- bench:begin -->"
        cat "$RESULT"
        echo "<!-- bench:end -->"
    } >"$OUT"
fi
log "results written to $OUT"

# A smoke run that found a wrong byte or a missing file must fail (CI runs --quick).
if [[ -s $WARNINGS ]]; then
    echo "bench.sh: some copies or restores did not match the original (see above)" >&2
    exit 1
fi
