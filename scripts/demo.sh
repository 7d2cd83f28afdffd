#!/usr/bin/env bash
# strata in two minutes, on generated data: build, back up a Jira export directory on two
# days, list, restore one backup zip, and (with /dev/fuse) mount the archive and copy the zip
# out of it. Everything goes to target/demo/ (or $STRATA_DEMO_DIR), which is recreated on
# every run. Needs a Rust toolchain. As root it first installs the Debian packages that it
# and scripts/test.sh use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

demo=${STRATA_DEMO_DIR:-target/demo}
target=${CARGO_TARGET_DIR:-target}
strata=$target/release/strata
gen=$target/release/strata-gen

n=0
step() {
    n=$((n + 1))
    printf '\n=== %d. %s\n' "$n" "$*"
}
# Prints a command as it would be typed (quoting where the shell needs it).
show() {
    local a out=()
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+=("$a")
        else
            out+=("'$a'") # (no argument here contains a single quote)
        fi
    done
    printf '$ %s\n' "${out[*]}"
}
# Shows a command, then runs it.
run() {
    show "$@"
    "$@"
}
die() {
    echo "scripts/demo.sh: error: $*" >&2
    exit 1
}

# Is directory $1 a mountpoint right now?
mounted() {
    local abs
    # Not realpath on $1 itself: a dead mount cannot even be stat'ed.
    abs=$(realpath -e "$(dirname "$1")" 2>/dev/null) || return 1
    abs=$abs/$(basename "$1")
    awk -v m="$abs" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}
unmount() {
    if [[ -n ${mnt:-} ]] && mounted "$mnt"; then
        "$strata" umount "$mnt" || fusermount3 -u -z "$mnt" || true
    fi
}

step "Packages: the demo uses unzip and fuse3; scripts/test.sh also needs rsync, attr, zip, shellcheck, PostgreSQL"
# All the packages the tests need, as .ci/run installs them, so scripts/test.sh works next.
read -ra packages <<<"$(scripts/test.sh --packages)"
absent=()
command -v dpkg-query >/dev/null 2>&1 || packages=() # not Debian: check the commands below only
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || absent+=("$p")
done
if ((${#absent[@]})) && ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update -qq
    run apt-get install -y -qq --no-install-recommends "${absent[@]}"
elif ((${#absent[@]})); then
    echo "not installed: ${absent[*]} (as root: apt-get install -y ${absent[*]})"
fi
use_fuse=false
if [[ -c /dev/fuse ]]; then
    use_fuse=true
    command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 is missing: apt-get install -y fuse3"
fi
command -v unzip >/dev/null 2>&1 || die "unzip is missing: apt-get install -y unzip"
echo "ok"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (https://rustup.rs)"

step "Build strata and the fixture generator strata-gen (release)"
run cargo build --release --quiet -p strata -p strata-gen

step "Start from an empty $demo/"
if [[ -e $demo ]]; then
    [[ -e $demo/.strata-demo ]] || die "$demo exists and was not made by this script; move it away or set STRATA_DEMO_DIR"
    # A run killed with -9 may have left its mount behind.
    mnt=$demo/mnt
    unmount
    rm -rf --one-file-system "$demo"
fi
mkdir -p "$demo"
touch "$demo/.strata-demo"
data=$demo/data
archive=$demo/archive
echo "ok"

step "Generate a small Jira export directory and a Structr installation (3 days of history)"
run "$gen" "$data" --scale 0.01 --only jira,structr
run ls -l "$data/jira/export"

step "Create an encrypted archive (directory mode 0700, files 0600; the password from a file)"
# A real setup keeps the password apart from the archive (docs/SECURITY.md).
printf 'demo-password\n' >"$demo/password"
chmod 600 "$demo/password"
export STRATA_PASSWORD_FILE=$demo/password
run "$strata" init "$archive"

step "Night 1: back up the Jira export directory"
run "$strata" ingest "$archive" "$data/jira/export" --label jira --tag nightly

step "A day passes: Jira writes two more backup zips and a Structure backup"
run "$gen" --next-day "$data"

step "Night 2: the same command; unchanged zips are skipped by their metadata, not read again"
run "$strata" ingest "$archive" "$data/jira/export" --label jira --tag nightly

step "Structr: the installation directory and a database dump (a stand-in command here) in one snapshot"
# A real setup would dump with: --cmd 'neo4j-admin database dump --to-stdout neo4j'
run "$strata" ingest "$archive" "$data/structr" --exclude '*.log' --exclude 'structr/tmp/**' \
    --cmd 'printf "CREATE (n:Demo {day: 3});\n"' --as db/neo4j.cypher --label structr

step "List the snapshots"
run "$strata" snapshots "$archive"

step "List the newest Jira snapshot's export directory"
run "$strata" ls "$archive" latest:export --label jira -l

# The newest Jira backup zip; strata-gen names them YYYY-MM-DD--HHMM.zip.
zips=("$data"/jira/export/????-??-??--????.zip)
zip=$(basename "${zips[${#zips[@]} - 1]}")

step "Restore $zip without FUSE, and check it"
run "$strata" restore "$archive" "latest:export/$zip" "$demo/restore" --label jira
run unzip -tq "$demo/restore/$zip"
run cmp "$demo/restore/$zip" "$data/jira/export/$zip"
echo "identical to the original"

step "Or stream one file to standard output"
printf '$ %s | head -n 3\n' "$strata cat $archive latest:structr/structr.conf --label structr"
"$strata" cat "$archive" latest:structr/structr.conf --label structr | head -n 3

if $use_fuse; then
    step "Mount the archive read-only and copy $zip out of it with cp"
    mnt=$demo/mnt
    mkdir -p "$mnt" "$demo/copy"
    trap unmount EXIT
    run "$strata" mount "$archive" "$mnt" --daemon
    run ls -l "$mnt"
    run ls -l "$mnt/latest-jira/export"
    run cp "$mnt/latest-jira/export/$zip" "$demo/copy/"
    run cmp "$demo/copy/$zip" "$data/jira/export/$zip"
    echo "identical to the original"
    run "$strata" umount "$mnt"
    trap - EXIT
else
    step "Mount: skipped, this machine has no /dev/fuse (try: modprobe fuse)"
fi

printf '\n=== Done. The archive is %s; try for example:\n' "$archive"
echo "  $strata ls $archive latest:structr --label structr -l"
echo "  $strata mount $archive $demo/mnt    (Ctrl-C to unmount)"
