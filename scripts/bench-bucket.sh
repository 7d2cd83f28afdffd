#!/usr/bin/env bash
# scripts/bench-bucket.sh — strata and restic on one S3 bucket (a three-node Garage cluster on
# this machine), side by side in one run, against the plain-GET speed of that cluster.
#
#   scripts/bench-bucket.sh [--quick] [--scale F] [--keep] [--out FILE] [--jobs LIST]
#
# Builds strata and strata-gen in release mode, installs restic from Debian if it is missing,
# starts a throw-away three-node Garage cluster on 127.0.0.1 (scripts/garage-cluster.sh, the
# configuration of the Rust tests), and measures, with the page caches dropped before every
# cold step:
#
#  - first and next-day ingest (the day-1 / day-2 data of scripts/bench.sh) into
#    s3:http://127.0.0.1:PORT/strata-bench/strata (strata, encrypted, default settings, an
#    empty cache directory) and s3:…/strata-bench/restic (restic's own S3 backend);
#  - the physical reference: plain requests for the same bytes to the same cluster with curl
#    (SigV4): the largest zip uploaded as one object and fetched in 4 MiB ranges, 1, 4 and 8
#    at a time (4 at a time is what strata's chunk cache asks for when it reads ahead), and
#    in 1 MiB ranges 4 at a time, median of three each; every strata pack object fetched
#    whole, 4 at a time;
#    and, for ingest, the local archive's pack files uploaded with one PUT each, 1 and 4 at
#    a time;
#  - mounts: strata on the bucket with an EMPTY chunk cache (a copy of the cache directory
#    holding only the index), then `find`, a cold `cp` of the largest zip and `rsync -a` of
#    the Structr tree; then three more mounts on the same cache (tree packs now cached on
#    disk), each a fresh process for one cold `find` (the median counts; the tools take
#    turns, so load from other work hits them alike), the first also for `cp` and `rsync`
#    again; then two more fresh mounts with empty chunk caches for two more cold `cp`s
#    (the table shows the median of three). restic's mount the same way,
#    except the later `rsync` (restic caches no file data: it would repeat the first, the
#    slowest step of the run). A strata archive in a local directory (same data, same
#    ingests, same mounts) gives the local `find` the bucket is held against;
#  - restores of the day-2 snapshot: strata with a new, empty cache directory (it rebuilds
#    the index from the bucket), strata with the index but no cached chunks, restic with an
#    empty cache directory.
#
# It prints a markdown table, the goals of issue 15 as pass/fail lines, and where the time
# went: client and Garage CPU seconds per step, and the S3 requests of each step from node
# 0's metrics (`scripts/garage-cluster.sh metrics`). It writes them to target/bench-bucket.md
# (--quick: target/bench-bucket-quick.md; --out FILE elsewhere). Every copy and restore is
# checked against the original (cmp; rsync --dry-run --checksum); a failed check is printed
# under the table and makes the exit status 1.
#
# Environment: BENCH_DIR (work directory, default /var/tmp/strata-bench-bucket; on a real disk;
# deleted at the end unless --keep), BENCH_SEED (default 1), STRATA_GARAGE (the garage binary).
# Every mount is unmounted and the cluster stopped on the way out, also on failure or Ctrl-C.

set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C
BENCH_PROG=bench-bucket.sh
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

usage() {
    sed -n '/^# *scripts\/bench-bucket\.sh \[/ { s/^# *//; p; q; }' "$0"
    echo "  --quick       small scale (0.03, about 40 MB): a smoke run"
    echo "  --scale F     strata-gen scale factor (default 0.2, about 290 MB on day 1)"
    echo "  --keep        keep the work directory (data, cluster, caches, logs) afterwards"
    echo "  --out FILE    write the results there instead of target/bench-bucket.md"
    echo "  --jobs LIST   how many 4 MiB GETs at a time for the zip reference, comma-separated (default 1,4,8)"
}

QUICK=0
KEEP=0
SCALE=""
OUT=""
JOBS=1,4,8
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --scale | --out | --jobs)
            [[ $# -ge 2 ]] || { echo "$BENCH_PROG: $1 needs a value" >&2; exit 2; }
            case $1 in
                --scale) SCALE=$2 ;;
                --out) OUT=$2 ;;
                --jobs) JOBS=$2 ;;
            esac
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "$BENCH_PROG: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ((QUICK)); then
    SCALE=${SCALE:-0.03}
    OUT=${OUT:-$ROOT/target/bench-bucket-quick.md}
else
    SCALE=${SCALE:-0.2}
    OUT=${OUT:-$ROOT/target/bench-bucket.md}
fi
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "$BENCH_PROG: --scale must be a number" >&2; exit 2; }
[[ $JOBS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "$BENCH_PROG: --jobs must be a list like 1,4,8" >&2; exit 2; }
IFS=, read -r -a JOB_LIST <<<"$JOBS"
SEED=${BENCH_SEED:-1}
WORK=${BENCH_DIR:-/var/tmp/strata-bench-bucket}
PART=$((4 << 20)) # bytes per ranged GET of the reference
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Cleanup: mounts, mount processes and the cluster, whatever the exit.
MOUNTS=()
BGPIDS=()
WORK_OURS=0
CLUSTER=""

cleanup() {
    local rc=$? m p i alive busy=0
    set +e
    trap - EXIT INT TERM
    for m in "${MOUNTS[@]}"; do
        if is_mounted "$m"; then unmount_quietly "$m"; fi
    done
    for p in "${BGPIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null && tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q mount; then
            kill "$p" 2>/dev/null
        fi
    done
    for i in $(seq 50); do
        alive=0
        for p in "${BGPIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for m in "${MOUNTS[@]}"; do
        if is_mounted "$m"; then umount -l "$m" 2>/dev/null; fi
    done
    if [[ -n $CLUSTER ]]; then
        "$ROOT/scripts/garage-cluster.sh" stop "$CLUSTER" ||
            echo "$BENCH_PROG: could not stop the Garage cluster in $CLUSTER; run: scripts/garage-cluster.sh stop $CLUSTER" >&2
    fi
    for m in "${MOUNTS[@]}"; do is_mounted "$m" && busy=1; done
    if ((busy)); then
        echo "$BENCH_PROG: some mounts under $WORK could not be removed; not deleting it" >&2
    elif ((WORK_OURS)) && ((KEEP == 0)); then
        rm -rf "$WORK"
    elif ((WORK_OURS)); then
        echo "$BENCH_PROG: kept $WORK" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# R[tool.key] = value: every number the tables show.
declare -A R=()

# ---------------------------------------------------------------------------------------------
# Tools.

need_pkgs=()
command -v restic >/dev/null || need_pkgs+=(restic)
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v curl >/dev/null || need_pkgs+=(curl)
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]} from Debian"
    [[ $(id -u) == 0 ]] || die "need root to install ${need_pkgs[*]} (or install them first)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2; }
fi
[[ -e /dev/fuse ]] || die "/dev/fuse is missing: the mount measures need FUSE"
curl --help all 2>/dev/null | grep -q -- --aws-sigv4 ||
    die "curl $(curl --version | head -n 1 | cut -d' ' -f2) has no --aws-sigv4 (needs 7.75 or later) for the plain-GET reference"

log "building strata and strata-gen (release)"
(cd "$ROOT" && cargo build --release --quiet -p strata -p strata-gen) || die "cargo build failed"
STRATA=$ROOT/target/release/strata
GEN=$ROOT/target/release/strata-gen

# ---------------------------------------------------------------------------------------------
# Work directory and cluster.

# One run per work directory: a second one would stop this one's cluster and delete its files.
mkdir -p "$(dirname "$WORK")"
exec 9>>"$WORK.lock"
flock -n 9 || die "another $BENCH_PROG run is using $WORK (it holds $WORK.lock); wait for it, or set BENCH_DIR"
if [[ -e $WORK ]]; then
    [[ -e $WORK/.strata-bench-bucket ]] || die "$WORK exists and is not a $BENCH_PROG work directory; remove it or set BENCH_DIR"
    awk -v w="$WORK/" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/self/mounts &&
        die "something is still mounted under $WORK; unmount it first"
    "$ROOT/scripts/garage-cluster.sh" stop "$WORK/garage"
    rm -rf "$WORK"
fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd -P)
WORK_OURS=1
touch "$WORK/.strata-bench-bucket"
LOGS=$WORK/logs
WARNINGS=$WORK/warnings
DATA=$WORK/data
OUTDIR=$WORK/out
MNT=$WORK/mnt
CACHES=$WORK/cache
mkdir -p "$LOGS" "$OUTDIR" "$MNT" "$CACHES"
ARCH_LOCAL=$WORK/strata-local.archive
export STRATA_PASSWORD=strata-bench
export RESTIC_PASSWORD=strata-bench
export RESTIC_CACHE_DIR=$CACHES/restic
# strata's cache for init and the ingests (what a backup host keeps between nights).
CACHE_HOST=$CACHES/host

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START_T=$EPOCHREALTIME
log "work directory $WORK; scale $SCALE; load average $START_LOAD"

log "starting a three-node Garage cluster"
CLUSTER=$WORK/garage
"$ROOT/scripts/garage-cluster.sh" start "$CLUSTER" >"$LOGS/garage-start.log" 2>&1 ||
    { cat "$LOGS/garage-start.log" >&2; die "the Garage cluster did not start"; }
# shellcheck source=/dev/null
. "$CLUSTER/env"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION
GARAGE_PIDS=()
for f in "$CLUSTER"/node*/pid; do GARAGE_PIDS+=("$(cat "$f")"); done
GARAGE_VERSION=$("${STRATA_GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}" --version 2>/dev/null | head -n 1 || echo garage)
URL_STRATA=s3:$S3_ENDPOINT/$S3_BUCKET/strata
REPO_RESTIC=s3:$S3_ENDPOINT/$S3_BUCKET/restic
log "cluster up: $S3_ENDPOINT, bucket $S3_BUCKET"

# curl with SigV4 for the plain-GET reference and the listings; the key stays off the
# command line.
CURLRC=$WORK/curlrc
(
    umask 077
    printf 'silent\nshow-error\nfail\naws-sigv4 = "aws:amz:%s:s3"\nuser = "%s:%s"\nheader = "x-amz-content-sha256: UNSIGNED-PAYLOAD"\n' \
        "$AWS_DEFAULT_REGION" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$CURLRC"
)
s3curl() { curl -K "$CURLRC" "$@"; }

# uri_encode STRING: every byte but A-Z a-z 0-9 - . _ ~ as %XX (SigV4's encoding).
uri_encode() {
    local LC_ALL=C s=$1 i c out=""
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9.~_-]) out+=$c ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

# s3_list PREFIX -> "KEY SIZE" lines of the objects under PREFIX (ListObjectsV2, every page).
# curl 7.88 signs the query string as given, so it is built here in SigV4's canonical form:
# parameters sorted by name, values encoded.
s3_list() {
    local token="" page q
    while :; do
        q="list-type=2&prefix=$(uri_encode "$1")"
        [[ -z $token ]] || q="continuation-token=$(uri_encode "$token")&$q"
        page=$(s3curl "$S3_ENDPOINT/$S3_BUCKET?$q") || die "listing $1 in the bucket failed"
        # shellcheck disable=SC2001 # one object a line, then its key and size
        sed 's/<Contents>/\n&/g' <<<"$page" |
            sed -n 's/.*<Key>\([^<]*\)<\/Key>.*<Size>\([0-9]*\)<\/Size>.*/\1 \2/p'
        grep -q '<IsTruncated>true</IsTruncated>' <<<"$page" || break
        token=$(sed -n 's/.*<NextContinuationToken>\([^<]*\)<\/NextContinuationToken>.*/\1/p' <<<"$page")
        [[ -n $token ]] || die "a truncated listing of $1 has no continuation token"
    done
}
prefix_bytes() { s3_list "$1" | awk '{ b += $2 } END { printf "%.0f\n", b }'; }

# cpu_s PID... -> CPU seconds (user + system, with reaped children) of these processes so far.
cpu_s() {
    local p ticks=0 t
    for p in "$@"; do
        t=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null) || continue
        ticks=$((ticks + t))
    done
    calc 't / hz' -v t="$ticks" -v hz="$CLK_TCK"
}
garage_cpu() { cpu_s "${GARAGE_PIDS[@]}"; }
# s3_requests -> "GETS GET_S PUTS PUT_S OTHER OTHER_S": the S3 requests node 0 has served so
# far (every client talks to node 0) and the seconds Garage spent on them until each
# response started; PUT counts PutObject and UploadPart, other is the rest (HEAD, list,
# multipart create/complete, delete).
s3_requests() {
    "$ROOT/scripts/garage-cluster.sh" metrics "$CLUSTER" | awk '
        /^api_s3_request_(counter|duration_sum)\{/ {
            ep = $0; sub(/.*api_endpoint="/, "", ep); sub(/".*/, "", ep)
            k = (ep == "GetObject") ? "get" : (ep == "PutObject" || ep == "UploadPart") ? "put" : "other"
            if ($1 ~ /^api_s3_request_counter/) n[k] += $2; else d[k] += $2 }
        END { printf "%d %.4f %d %.4f %d %.4f\n", n["get"], d["get"], n["put"], d["put"], n["other"], d["other"] }'
}
# g_mark ... g_end KEY: over a step, Garage's CPU seconds (R[KEY.gcpu]) and the S3 requests
# (R[KEY.req], "GETS GET_S PUTS PUT_S OTHER OTHER_S" as in s3_requests).
G0=0
Q0=""
g_mark() { G0=$(garage_cpu); Q0=$(s3_requests); }
g_end() {
    R[$1.gcpu]=$(calc 'b - a' -v a="$G0" -v b="$(garage_cpu)" | xargs printf '%.2f')
    R[$1.req]=$(paste -d' ' <(tr ' ' '\n' <<<"$Q0") <(s3_requests | tr ' ' '\n') |
        awk '{ printf "%s%s", (NR > 1 ? " " : ""), $2 - $1 }')
}
# median V... -> the middle value (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# ---------------------------------------------------------------------------------------------
# Data, day 1; archives.

log "generating data (strata-gen --scale $SCALE --seed $SEED)"
measure gen "$GEN" "$DATA" --scale "$SCALE" --seed "$SEED"
read -r _ D1_FILES _ _ D1_BYTES < <(tree_stats "$DATA")
D1_MB=$(calc 'b / 1e6' -v b="$D1_BYTES" | xargs printf '%.1f')
log "day 1: $D1_MB MB in $D1_FILES files"

TOOLS=(strata restic local)

ingest() { # ingest TOOL DAY
    case $1 in
        strata) measure "strata-ingest$2" "$STRATA" --cache-dir "$CACHE_HOST" ingest "$URL_STRATA" "$DATA" --json ;;
        restic) measure "restic-ingest$2" restic -r "$REPO_RESTIC" backup --compression auto "$DATA" ;;
        local) measure "local-ingest$2" "$STRATA" ingest "$ARCH_LOCAL" "$DATA" --json ;;
    esac
}
stored_bytes() { # what the tool's archive holds now
    case $1 in
        strata) prefix_bytes strata/ ;;
        restic) prefix_bytes restic/ ;;
        local) dir_bytes "$ARCH_LOCAL" ;;
    esac
}

measure strata-init "$STRATA" --cache-dir "$CACHE_HOST" init "$URL_STRATA"
measure restic-init restic -r "$REPO_RESTIC" init --repository-version 2
measure local-init "$STRATA" init "$ARCH_LOCAL"

declare -A SIZE1=()
for t in "${TOOLS[@]}"; do
    drop_caches
    g_mark
    ingest "$t" 1
    R[$t.ingest1.s]=$M_S
    R[$t.ingest1.rss]=$M_RSS
    R[$t.ingest1.cpu]=$M_CPU
    g_end "$t.ingest1"
    SIZE1[$t]=$(stored_bytes "$t")
    R[$t.size1.mb]=$(calc 's / 1e6' -v s="${SIZE1[$t]}")
    R[$t.ingest1.mbps]=$(calc 'b / 1e6 / s' -v b="$D1_BYTES" -v s="$M_S")
    log "$t first ingest: $M_S s (${R[$t.ingest1.mbps]} MB/s), CPU $M_CPU s, Garage CPU ${R[$t.ingest1.gcpu]} s, peak RSS $M_RSS MB, stored ${R[$t.size1.mb]} MB"
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

for t in "${TOOLS[@]}"; do
    drop_caches
    g_mark
    ingest "$t" 2
    R[$t.ingest2.s]=$M_S
    R[$t.ingest2.rss]=$M_RSS
    R[$t.ingest2.cpu]=$M_CPU
    g_end "$t.ingest2"
    R[$t.added.mb]=$(calc '(b - a) / 1e6' -v a="${SIZE1[$t]}" -v b="$(stored_bytes "$t")")
    log "$t next-day ingest: $M_S s, CPU $M_CPU s, Garage CPU ${R[$t.ingest2.gcpu]} s, added ${R[$t.added.mb]} MB"
done

# ---------------------------------------------------------------------------------------------
# The physical reference: plain GETs and PUTs of the same bytes on the same cluster.

log "plain GETs: uploading the zip as one object"
s3curl -T "$DATA/$ZIP_REL" "$S3_ENDPOINT/$S3_BUCKET/reference/zip" -o /dev/null ||
    die "uploading the zip to the bucket failed"
GETDIR=$OUTDIR/get
GET_MAX=0
GET_BEST=""
REPEATS=3
# "PART_BYTES JOBS" pairs: 4 MiB ranges at each --jobs count (4 at a time is what strata's
# chunk cache asks for when it reads ahead: 4 MiB blocks, 4 workers), and 1 MiB ranges 4 at
# a time, to show what the range size does.
GET_SPECS=()
for j in "${JOB_LIST[@]}"; do GET_SPECS+=("$PART $j"); done
GET_SPECS+=("$((1 << 20)) 4")
for spec in "${GET_SPECS[@]}"; do
    read -r part j <<<"$spec"
    g=$((part >> 20))m$j # the key of this row: 4m8 is 4 MiB ranges, 8 at a time
    runs=()
    for ((k = 1; k <= REPEATS; k++)); do
        rm -rf "$GETDIR"
        mkdir -p "$GETDIR"
        drop_caches
        g_mark
        t0=$EPOCHREALTIME
        # One line per part, "NNNNNN FIRST-LAST", appended by xargs to sh's arguments (curlrc,
        # directory, URL); j curls at a time, each writing its part to a file of its own.
        # shellcheck disable=SC2016 # sh expands them
        awk -v size="$ZIP_SIZE" -v part="$part" 'BEGIN {
                for (o = 0; o < size; o += part) {
                    e = o + part - 1; if (e >= size) e = size - 1
                    printf "%06d %d-%d\n", o / part, o, e } }' |
            xargs -P "$j" -L 1 sh -c 'curl -K "$0" -r "$4" -o "$1/$3" "$2"' \
                "$CURLRC" "$GETDIR" "$S3_ENDPOINT/$S3_BUCKET/reference/zip" 2>"$LOGS/get-$g.log" ||
            { cat "$LOGS/get-$g.log" >&2; die "ranged GETs of the zip failed ($((part >> 20)) MiB, $j at a time)"; }
        s=$(since "$t0")
        g_end "get.$g.$k"
        cat "$GETDIR"/* | cmp -s - "$DATA/$ZIP_REL" || warn "plain GETs of the zip ($((part >> 20)) MiB, $j at a time) do not match the zip"
        runs+=("$(calc 'b / 1e6 / s' -v b="$ZIP_SIZE" -v s="$s")")
    done
    R[get.$g.mbps]=$(median "${runs[@]}")
    R[get.$g.runs]=$(printf '%.0f, ' "${runs[@]}" | sed 's/, $//')
    R[get.$g.gcpu]=${R[get.$g.1.gcpu]}
    R[get.$g.req]=${R[get.$g.1.req]}
    log "GET of the zip in $((part >> 20)) MiB ranges, $j at a time: median ${R[get.$g.mbps]} MB/s (runs: ${R[get.$g.runs]})"
    if awk -v a="${R[get.$g.mbps]}" -v b="$GET_MAX" 'BEGIN { exit !(a > b) }'; then
        GET_MAX=${R[get.$g.mbps]}
        GET_BEST="$((part >> 20)) MiB ranges, $j at a time"
    fi
done
rm -rf "$GETDIR"

log "plain GETs: every strata pack object, whole, 4 at a time"
s3_list strata/packs/ >"$WORK/packs.list"
PACKS_N=$(wc -l <"$WORK/packs.list")
PACKS_BYTES=$(awk '{ b += $2 } END { printf "%.0f\n", b }' "$WORK/packs.list")
drop_caches
g_mark
t0=$EPOCHREALTIME
awk '{ print $1 }' "$WORK/packs.list" |
    xargs -P 4 -I '{}' curl -K "$CURLRC" -o /dev/null "$S3_ENDPOINT/$S3_BUCKET/{}" 2>"$LOGS/get-packs.log" ||
    { cat "$LOGS/get-packs.log" >&2; die "GETs of the pack objects failed"; }
s=$(since "$t0")
g_end get.packs
R[get.packs.mbps]=$(calc 'b / 1e6 / s' -v b="$PACKS_BYTES" -v s="$s")
log "GET of $PACKS_N pack objects ($(calc 'b / 1e6' -v b="$PACKS_BYTES") MB), 4 at a time: ${R[get.packs.mbps]} MB/s"

# What ingest has to upload, at the cluster's plain PUT speed: the local archive's pack files
# (the same data, the same ~64 MiB packs) as single PUTs, read from the page cache.
LPACKS_BYTES=$(cat "$ARCH_LOCAL"/packs/*.pack | wc -c)
LPACKS_N=$(find "$ARCH_LOCAL/packs" -name '*.pack' | wc -l)
for j in 1 4; do
    drop_caches
    cat "$ARCH_LOCAL"/packs/*.pack >/dev/null
    g_mark
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2016 # sh expands them
    find "$ARCH_LOCAL/packs" -name '*.pack' -print0 |
        xargs -0 -P "$j" -I '{}' sh -c 'curl -K "$1" -T "$0" -o /dev/null "$2/$(basename "$0")"' \
            '{}' "$CURLRC" "$S3_ENDPOINT/$S3_BUCKET/reference/put$j" 2>"$LOGS/put-$j.log" ||
        { cat "$LOGS/put-$j.log" >&2; die "PUTs of the local pack files failed ($j at a time)"; }
    s=$(since "$t0")
    g_end "put.j$j"
    R[put.j$j.mbps]=$(calc 'b / 1e6 / s' -v b="$LPACKS_BYTES" -v s="$s")
    R[put.j$j.s]=$s
    log "PUT of the local archive's $LPACKS_N pack files ($(calc 'b / 1e6' -v b="$LPACKS_BYTES") MB), $j at a time: ${R[put.j$j.mbps]} MB/s (Garage CPU ${R[put.j$j.gcpu]} s)"
done

# ---------------------------------------------------------------------------------------------
# Mounts.

MOUNT_PID=""
SNAPROOT=""
snap_listed() { # true once `ls $SNAPROOT` shows the Structr tree
    local list
    list=$(ls "$SNAPROOT" 2>/dev/null) || return 1
    [[ $'\n'$list$'\n' == *$'\nstructr\n'* ]]
}

mount_start() { # mount_start TOOL MNT [CACHE_DIR]: mounts, waits until the data root lists
    local tool=$1 mnt=$2 cache=${3:-} lf="$LOGS/$1-mount.log" t0 i
    mkdir -p "$mnt"
    MOUNTS+=("$mnt")
    case $tool in
        strata | local)
            if [[ $tool == strata ]]; then
                "$STRATA" --cache-dir "$cache" mount --daemon "$URL_STRATA" "$mnt" >>"$lf" 2>&1 ||
                    { cat "$lf" >&2; die "strata mount of the bucket failed"; }
            else
                "$STRATA" mount --daemon "$ARCH_LOCAL" "$mnt" >>"$lf" 2>&1 ||
                    { cat "$lf" >&2; die "strata mount of the local archive failed"; }
            fi
            MOUNT_PID=$(sed -n 's/^mount process \([0-9][0-9]*\) serves.*/\1/p' "$lf" | tail -n 1)
            [[ -n $MOUNT_PID ]] || { cat "$lf" >&2; die "$tool mount --daemon did not say which process serves"; }
            SNAPROOT=$mnt/latest/data
            ;;
        restic)
            restic -r "$REPO_RESTIC" mount "$mnt" >>"$lf" 2>&1 &
            MOUNT_PID=$!
            SNAPROOT=$mnt/snapshots/latest$DATA
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
        strata | local) "$STRATA" umount "$2" >>"$LOGS/$1-mount.log" 2>&1 || unmount_quietly "$2" ;;
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
    [[ $1 != restic ]] || wait "$MOUNT_PID" 2>/dev/null || true
    is_mounted "$2" && die "$1: $2 is still mounted"
    return 0
}

# A step through a mount: `step TOOL KEY CMD...` runs CMD (which prints the figure), stores
# it in R[TOOL.KEY], with the mount process's and Garage's CPU seconds over the step.
step() {
    local tool=$1 key=$2 c0 v
    shift 2
    g_mark
    c0=$(cpu_s "$MOUNT_PID")
    v=$("$@")
    R[$tool.$key]=$v
    R[$tool.$key.cpu]=$(calc 'b - a' -v a="$c0" -v b="$(cpu_s "$MOUNT_PID")" | xargs printf '%.2f')
    g_end "$tool.$key"
}

# The mount sessions' chunk cache: a copy of the host's cache directory without the cached
# chunks (the index and what else it keeps, but no pack bytes).
CACHE_MOUNT=$CACHES/mount
cp -a "$CACHE_HOST" "$CACHE_MOUNT"
rm -rf "$CACHE_MOUNT"/*/chunks
log "mount cache $CACHE_MOUNT: $(du -sh "$CACHE_MOUNT" | cut -f1) ($(cd "$CACHE_MOUNT" && find . -mindepth 2 -maxdepth 2 -printf '%P ' ))"
RSYNC_CHECKSUM=1
for t in "${TOOLS[@]}"; do
    m=$MNT/$t
    log "$t mount, session 1$([[ $t == strata ]] && printf ' (empty chunk cache)'): find, cp, rsync"
    drop_caches
    t0=$EPOCHREALTIME
    mount_start "$t" "$m" "$CACHE_MOUNT"
    R[$t.mount.s]=$(since "$t0")
    drop_caches
    step "$t" find1.s find_s "$SNAPROOT/structr" "$t"
    drop_caches
    step "$t" cpcold.mbps copy_mbps "$SNAPROOT/$ZIP_REL"
    step "$t" cpwarm.mbps copy_mbps "$SNAPROOT/$ZIP_REL"
    drop_caches
    step "$t" rsync1.s rsync_s "$SNAPROOT/structr" "$t"
    R[$t.mountrss.mb]=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$MOUNT_PID/status")
    log "$t: ready ${R[$t.mount.s]} s, find ${R[$t.find1.s]} s, cp ${R[$t.cpcold.mbps]}/${R[$t.cpwarm.mbps]} MB/s, rsync ${R[$t.rsync1.s]} s, RSS ${R[$t.mountrss.mb]} MB"
    mount_stop "$t" "$m"
done

# Then three rounds of fresh mounts on the same caches, each with one cold `find` (page
# caches dropped after mounting; a fresh process, so nothing of an earlier find is left in
# the mount's own memory; a second find in the same process is warm however the page caches
# are dropped). One find moves by ±30% from run to run on this shared machine, so the tools
# take turns within each round (load from other work hits them alike) and the median of
# the three counts. The first round also copies the zip and rsyncs the tree again.
declare -A FINDS=()
for k in 1 2 3; do
    for t in "${TOOLS[@]}"; do
        m=$MNT/$t
        ((k > 1)) || log "$t: later mount$([[ $t == strata ]] && printf ' (same cache: tree packs and chunks on disk)'): find, cp, rsync"
        drop_caches
        mount_start "$t" "$m" "$CACHE_MOUNT"
        drop_caches
        step "$t" "find2.s.$k" find_s "$SNAPROOT/structr" "$t"
        FINDS[$t]+="${FINDS[$t]:+ }${R[$t.find2.s.$k]}"
        if ((k == 1)); then
            drop_caches
            step "$t" cp2.mbps copy_mbps "$SNAPROOT/$ZIP_REL"
            # restic keeps no file data between mounts: its second rsync would repeat the
            # first (and is the slowest step of the run).
            if [[ $t != restic ]]; then
                drop_caches
                step "$t" rsync2.s rsync_s "$SNAPROOT/structr" "$t"
            fi
            log "$t: find ${R[$t.find2.s.1]} s, cp ${R[$t.cp2.mbps]} MB/s, rsync ${R[$t.rsync2.s]:-(skipped)} s"
        fi
        mount_stop "$t" "$m"
    done
done
for t in "${TOOLS[@]}"; do
    read -r -a runs <<<"${FINDS[$t]}"
    R[$t.find2.s]=$(median "${runs[@]}")
    R[$t.find2.s.runs]=$(printf '%.3f, ' "${runs[@]}" | sed 's/, $//')
    for k in cpu gcpu req; do R[$t.find2.s.$k]=${R[$t.find2.s.1.$k]}; done
    log "$t: cold find on three later mounts: median ${R[$t.find2.s]} s (runs: ${R[$t.find2.s.runs]})"
done
R[strata.cachemount.mb]=$(calc 'b / 1e6' -v b="$(dir_bytes "$CACHE_MOUNT")")

# A cold `cp` of one file is short and noisy: two more, each on a fresh mount (strata: with
# its own copy of the cache directory without chunks); the table shows the median of three.
for t in "${TOOLS[@]}"; do
    m=$MNT/$t
    runs=("${R[$t.cpcold.mbps]}")
    for k in 2 3; do
        cache=$CACHES/cp$k
        rm -rf "$cache"
        cp -a "$CACHE_HOST" "$cache"
        rm -rf "$cache"/*/chunks
        drop_caches
        mount_start "$t" "$m" "$cache"
        drop_caches
        step "$t" "cpcold$k.mbps" copy_mbps "$SNAPROOT/$ZIP_REL"
        runs+=("${R[$t.cpcold$k.mbps]}")
        mount_stop "$t" "$m"
        rm -rf "$cache"
    done
    R[$t.cpcold1.mbps]=${R[$t.cpcold.mbps]}
    R[$t.cpcold.mbps]=$(median "${runs[@]}")
    R[$t.cpcold.runs]=$(printf '%.0f, ' "${runs[@]}" | sed 's/, $//')
    log "$t cold cp of the zip, three fresh mounts: median ${R[$t.cpcold.mbps]} MB/s (runs: ${R[$t.cpcold.runs]})"
done

# ---------------------------------------------------------------------------------------------
# Full restores of the day-2 snapshot.

restore() { # restore NAME TARGET CMD...: measures CMD, records R[NAME.restore.*]
    local name=$1 target=$2
    shift 2
    drop_caches
    g_mark
    measure "$name-restore" "$@"
    R[$name.restore.s]=$M_S
    R[$name.restore.rss]=$M_RSS
    R[$name.restore.cpu]=$M_CPU
    g_end "$name.restore"
    R[$name.restore.mbps]=$(calc 'b / 1e6 / s' -v b="$D2_BYTES" -v s="$M_S")
    log "$name restore: $M_S s (${R[$name.restore.mbps]} MB/s), CPU $M_CPU s, Garage CPU ${R[$name.restore.gcpu]} s, peak RSS $M_RSS MB"
}
check_restore() { # check_restore DIR WHAT
    local got want
    got=$(tree_stats "$1")
    want=$(tree_stats "$DATA")
    [[ $got == "$want" ]] || warn "$2: restored tree differs (entries files dirs links bytes: $got, want $want)"
    same_content "$DATA" "$1" "$2"
}

target=$OUTDIR/restore
rm -rf "$target" && mkdir -p "$target"
restore strata "$target" "$STRATA" --cache-dir "$CACHES/restore-empty" restore "$URL_STRATA" latest "$target"
check_restore "$target/data" "strata restore from the bucket with an empty cache directory"
rm -rf "$target" && mkdir -p "$target"

CACHE_R2=$CACHES/restore-index
cp -a "$CACHE_HOST" "$CACHE_R2"
rm -rf "$CACHE_R2"/*/chunks
restore strata-index "$target" "$STRATA" --cache-dir "$CACHE_R2" restore "$URL_STRATA" latest "$target"
check_restore "$target/data" "strata restore from the bucket with the index but no cached chunks"
rm -rf "$target" && mkdir -p "$target"

restore restic "$target" env RESTIC_CACHE_DIR="$CACHES/restic-restore" restic -r "$REPO_RESTIC" restore latest --target "$target"
check_restore "$target$DATA" "restic restore from the bucket with an empty cache directory"
rm -rf "$target" && mkdir -p "$target"

restore local "$target" "$STRATA" restore "$ARCH_LOCAL" latest "$target"
check_restore "$target/data" "strata restore from the local archive"
rm -rf "$target"

# ---------------------------------------------------------------------------------------------
# Report.

END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL_MIN=$(awk -v s="$(since "$START_T")" 'BEGIN { printf "%.1f", s / 60 }')

# row LABEL BETTER KEY DECIMALS: strata (bucket), restic (bucket), strata÷restic, strata
# (local directory), bucket÷local.
row() {
    local label=$1 better=$2 key=$3 d=$4 s r l
    s=${R[strata.$key]:-}
    r=${R[restic.$key]:-}
    l=${R[local.$key]:-}
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$better" \
        "$(fmt "$s" "$d")" "$(fmt "$r" "$d")" "$(ratio "$s" "$r")" "$(fmt "$l" "$d")" "$(ratio "$s" "$l")"
}
# cpu_cell TOOL KEY: "client / Garage" CPU seconds of a step.
cpu_cell() {
    local c=${R[$1.$2.cpu]:-} g=${R[$1.$2.gcpu]:-}
    if [[ -z $c && -z $g ]]; then printf '–'; else printf '%s / %s' "$(fmt "$c" 1)" "$(fmt "$g" 1)"; fi
}
# req_cell KEY: "G GET, P PUT, O other", the S3 requests of a step.
req_cell() {
    local q=${R[$1.req]:-}
    [[ -n $q ]] || { printf '–'; return; }
    awk '{ printf "%d GET, %d PUT, %d other", $1, $3, $5 }' <<<"$q"
}
cpu_row() { # cpu_row LABEL KEY
    local t cells=()
    for t in strata restic local; do
        if [[ -z ${R[$t.$2.cpu]:-}${R[$t.$2.gcpu]:-} ]]; then
            cells+=("–")
        elif [[ $t == local ]]; then
            cells+=("$(cpu_cell "$t" "$2")")
        else
            cells+=("$(cpu_cell "$t" "$2"); $(req_cell "$t.$2")")
        fi
    done
    printf '| %s | %s | %s | %s |\n' "$1" "${cells[@]}"
}
# goal LABEL VALUE OP TARGET DETAIL: a pass/fail line.
goal() {
    local verdict
    if [[ -z $2 ]]; then
        verdict="not measured"
    elif awk -v v="$2" -v t="$4" -v op="$3" 'BEGIN { exit !((op == ">=") ? v >= t : v <= t) }'; then
        verdict="**pass**"
    else
        verdict="**fail**"
    fi
    printf '| %s | %s× (goal %s %s×) | %s | %s |\n' "$1" "$(fmt "$2" 2)" "$3" "$4" "$verdict" "$5"
}

# The ratios the goals are about.
G_INGEST1=$(calc 'r / s' -v r="${R[restic.ingest1.s]}" -v s="${R[strata.ingest1.s]}")
G_INGEST2=$(calc 'r / s' -v r="${R[restic.ingest2.s]}" -v s="${R[strata.ingest2.s]}")
G_CP=$(calc 'c / g' -v c="${R[strata.cpcold.mbps]}" -v g="$GET_MAX")
# The local archive's faster find of its two mounts.
G_FIND=$(calc 'b / l' -v b="${R[strata.find2.s]}" -v l="${R[local.find2.s]}")
G_CP_PACKS=$(calc 'c / g' -v c="${R[strata.cpcold.mbps]}" -v g="${R[get.packs.mbps]}")

RESULT=$WORK/result.md
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
RAM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
DISK_SRC=$(findmnt -no SOURCE -T "$WORK" 2>/dev/null || echo '?')
DISK_FS=$(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || echo '?')
GIT_REV=$(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    GIT_REV="$GIT_REV (with uncommitted changes in src/ or Cargo files)"
fi
{
    echo "## Bucket results: scale $SCALE, $START_DATE"
    echo
    echo "\`scripts/bench-bucket.sh$( ((QUICK)) && printf ' --quick')$([[ $SCALE != 0.2 ]] && ((QUICK == 0)) && printf ' --scale %s' "$SCALE")\` took $TOTAL_MIN min."
    echo "Load average (1, 5, 15 min) at the start: $START_LOAD; at the end: $END_LOAD."
    echo "Page caches dropped before each cold measure: $CACHES_DROPPED."
    echo
    echo "- **Machine**: $(nproc) CPUs ($CPU), $RAM_GIB GiB RAM, work directory and the Garage nodes' data on $DISK_SRC ($DISK_FS), kernel $(uname -r)."
    echo "- **Versions**: $("$STRATA" --version) at git $GIT_REV, $(restic version | cut -d' ' -f1-2), $GARAGE_VERSION, $(curl --version | head -n 1 | cut -d' ' -f1-2)."
    echo "- **Cluster**: three Garage nodes on 127.0.0.1 (\`scripts/garage-cluster.sh\`: replication factor 3, one zone each, SQLite metadata, no fsync, default block size and compression), all on this machine's one disk and $(nproc) CPUs; every client talks to node 0's S3 endpoint."
    echo "- **Dataset** (\`strata-gen --scale $SCALE --seed $SEED\`): day 1 is $D1_MB MB in $D1_FILES files; after \`--next-day\`, day 2 is $D2_MB MB in $D2_FILES files. The Structr tree has $ST_ENTRIES entries; the largest zip is \`$ZIP_REL\`, $ZIP_MB MB."
    echo "- **Settings**: strata defaults (encrypted, 1 MiB chunks, zstd 3, \`--disk-cache\` 2G), \`s3:…/$S3_BUCKET/strata\`; restic \`--compression auto\`, repository v2, \`s3:…/$S3_BUCKET/restic\`; \"local\" is strata on an archive in a directory, same data and ingests."
    echo
    echo "| measure | better | strata (bucket) | restic (bucket) | strata÷restic | strata (local dir) | bucket÷local |"
    echo "|---|---|---|---|---|---|---|"
    row "first ingest, wall time (s)" lower ingest1.s 2
    row "first ingest, MB/s" higher ingest1.mbps 1
    row "first ingest, peak RSS (MB)" lower ingest1.rss 1
    row "stored after the first ingest (MB)" lower size1.mb 1
    row "next-day ingest, wall time (s)" lower ingest2.s 2
    row "next-day ingest, peak RSS (MB)" lower ingest2.rss 1
    row "next-day ingest, bytes added (MB)" lower added.mb 1
    row "mount until the snapshot lists (s)" lower mount.s 3
    row "\`find\` Structr tree, first mount, empty chunk cache (s)" lower find1.s 3
    row "\`find\` Structr tree, later mounts, tree packs cached, median of 3 (s)" lower find2.s 3
    row "\`cp\` largest zip, cold, empty chunk cache, median of 3 mounts (MB/s)" higher cpcold.mbps 1
    row "\`cp\` largest zip, warm, same mount (MB/s)" higher cpwarm.mbps 1
    row "\`cp\` largest zip, later mount, chunks cached on disk (MB/s)" higher cp2.mbps 1
    row "\`rsync -a\` Structr tree, first mount (s)" lower rsync1.s 2
    row "\`rsync -a\` Structr tree, later mount (s)" lower rsync2.s 2
    row "mount process RSS after session 1 (MB)" lower mountrss.mb 1
    row "full restore of day 2, empty cache directory (s)" lower restore.s 2
    row "full restore, MB/s" higher restore.mbps 1
    row "full restore, peak RSS (MB)" lower restore.rss 1
    echo
    echo "strata restore from the bucket with the index kept but no cached chunks: $(fmt "${R[strata-index.restore.s]}" 2) s ($(fmt "${R[strata-index.restore.mbps]}" 1) MB/s, CPU $(fmt "${R[strata-index.restore.cpu]}" 1) s, Garage CPU $(fmt "${R[strata-index.restore.gcpu]}" 1) s); the empty-cache row above includes rebuilding the index from the bucket. The mounts' cache directory held $(fmt "${R[strata.cachemount.mb]}" 1) MB after both sessions."
    echo
    echo "Cold \`cp\` of the zip, the three fresh mounts (MB/s): strata ${R[strata.cpcold.runs]}; restic ${R[restic.cpcold.runs]}; local ${R[local.cpcold.runs]}. The cold \`find\`s of the three later mounts (s): strata ${R[strata.find2.s.runs]}; restic ${R[restic.find2.s.runs]}; local ${R[local.find2.s.runs]}."
    echo
    echo "**Plain GETs and PUTs on the same cluster** (curl with SigV4, page caches dropped first; the physical reference):"
    echo
    echo "| requests | MB/s | Garage CPU (s) |"
    echo "|---|---|---|"
    for spec in "${GET_SPECS[@]}"; do
        read -r part j <<<"$spec"
        g=$((part >> 20))m$j
        echo "| GET the zip ($ZIP_MB MB, uploaded as one object) in $((part >> 20)) MiB ranges, $j at a time: median of $REPEATS (runs ${R[get.$g.runs]})$( ((part == 4 << 20 && j == 4)) && printf ' — the read-ahead of strata'"'"'s chunk cache asks for this') | $(fmt "${R[get.$g.mbps]}" 1) | $(fmt "${R[get.$g.gcpu]}" 2) |"
    done
    echo "| GET the $PACKS_N strata pack objects ($(calc 'b / 1e6' -v b="$PACKS_BYTES" | xargs printf '%.1f') MB), whole, 4 at a time | $(fmt "${R[get.packs.mbps]}" 1) | $(fmt "${R[get.packs.gcpu]}" 2) |"
    for j in 1 4; do
        echo "| PUT the local archive's $LPACKS_N pack files ($(calc 'b / 1e6' -v b="$LPACKS_BYTES" | xargs printf '%.1f') MB, from the page cache), one PUT each, $j at a time: $(fmt "${R[put.j$j.s]}" 2) s | $(fmt "${R[put.j$j.mbps]}" 1) | $(fmt "${R[put.j$j.gcpu]}" 2) |"
    done
    echo
    echo "**Goals (issue 15)**:"
    echo
    echo "| goal | measured | verdict | from |"
    echo "|---|---|---|---|"
    goal "first ingest ≥ 2× restic's speed" "$G_INGEST1" ">=" 2 "restic $(fmt "${R[restic.ingest1.s]}" 2) s ÷ strata $(fmt "${R[strata.ingest1.s]}" 2) s"
    goal "next-day ingest ≥ 2× restic's speed" "$G_INGEST2" ">=" 2 "restic $(fmt "${R[restic.ingest2.s]}" 2) s ÷ strata $(fmt "${R[strata.ingest2.s]}" 2) s"
    goal "cold \`cp\` from the mount ≥ 80% of plain-GET throughput" "$G_CP" ">=" 0.8 "strata $(fmt "${R[strata.cpcold.mbps]}" 1) MB/s (median of 3) ÷ best ranged GET of the zip $(fmt "$GET_MAX" 1) MB/s ($GET_BEST); against whole pack GETs ($(fmt "${R[get.packs.mbps]}" 1) MB/s): $(fmt "$G_CP_PACKS" 2)×"
    goal "\`find\` over a bucket mount, tree packs cached, ≤ 1.5× a local archive's" "$G_FIND" "<=" 1.5 "bucket $(fmt "${R[strata.find2.s]}" 3) s ÷ local $(fmt "${R[local.find2.s]}" 3) s, medians of three fresh mounts each, taking turns (bucket, first mount with an empty cache: $(fmt "${R[strata.find1.s]}" 3) s)"
    echo
    echo "**Where the time went**: CPU seconds, client / Garage (the three nodes together), over each step, on $(nproc) CPUs — the client is the command itself for ingest and restore, the mount process for reads through a mount — and the S3 requests of the step (node 0's metrics; PUT counts multipart parts, other is HEAD, list and multipart create/complete):"
    echo
    echo "| step | strata (bucket) | restic (bucket) | strata (local dir) |"
    echo "|---|---|---|---|"
    cpu_row "first ingest" ingest1
    cpu_row "next-day ingest" ingest2
    cpu_row "\`find\`, first mount" find1.s
    cpu_row "\`find\`, later mounts (first of the three)" find2.s
    cpu_row "\`cp\` cold (first of the three)" cpcold.mbps
    cpu_row "\`rsync -a\`, first mount" rsync1.s
    cpu_row "\`rsync -a\`, later mount" rsync2.s
    cpu_row "restore" restore
    echo
    echo "Ratios are strata's value divided by the other's: below 1 is better for strata in \"lower\" rows, above 1 in \"higher\" rows."
    echo "MB are 10^6 bytes; MB/s is the bytes of files (day 1 for the first ingest, day 2 for restores, the zip for \`cp\` and GETs) divided by the wall time. Stored bytes: the objects under each tool's prefix (ListObjectsV2), \`du -sb\` for the local archive."
    echo "strata's session 1 mounts with a copy of the host's cache directory from which \`chunks/\` (every cached pack byte) was removed: the index is there, no pack data. The three later mounts use that same cache, each a fresh mount process (nothing of an earlier \`find\` left in its memory). restic keeps its own cache (\`RESTIC_CACHE_DIR\`, tree and index blobs from the backups) throughout, and no file data: its later-mount \`rsync\` would repeat the first, and is skipped. Page caches are dropped before every \`find\`, cold \`cp\` and \`rsync\` — Garage's files included."
    echo "Every copy and restore was checked against the original: \`cmp\` for the zip (and the reassembled plain-GET parts), \`rsync --dry-run --checksum\` for the Structr copies and the restored trees."
    if [[ -s $WARNINGS ]]; then
        echo
        cat "$WARNINGS"
    fi
} >"$RESULT"

cat "$RESULT"
mkdir -p "$(dirname "$OUT")"
cp "$RESULT" "$OUT"
log "results written to $OUT"

if [[ -s $WARNINGS ]]; then
    echo "$BENCH_PROG: some copies or restores did not match the original (see above)" >&2
    exit 1
fi
