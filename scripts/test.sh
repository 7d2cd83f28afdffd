#!/usr/bin/env bash
# Runs every check CI runs, in this order:
#   1. cargo fmt --all --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. cargo nextest run --workspace   (or `cargo test --workspace` without cargo-nextest)
# All three run even when an earlier one fails, so one report shows everything; the exit
# status is non-zero if any failed. Step 3 includes real FUSE mounts (tests/mount.rs): run
# as root on a machine with /dev/fuse. Set NEXTEST_PROFILE=ci to run every test instead of
# stopping at the first failure (.ci/run does). Profiles and timeouts: .config/nextest.toml.
# `scripts/test.sh --packages` prints the Debian packages the tests need, and exits.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The Debian packages the tests need. .ci/run and scripts/demo.sh install them; they get the
# list from `scripts/test.sh --packages`.
packages=(fuse3 rsync attr unzip zip util-linux shellcheck postgresql postgresql-client faketime)
if [[ ${1:-} == --packages ]]; then
    echo "${packages[*]}"
    exit 0
fi

# The integration tests compare strata with these tools; they fail, never skip, without them.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (package $2)"); }
need rsync rsync
need setfattr attr
need getfattr attr
need fusermount3 fuse3
need unzip unzip
need zip zip
need setpriv util-linux
need shellcheck shellcheck
need psql postgresql-client
need faketime faketime
# tests/postgres.rs runs a throw-away cluster with Debian's server binaries.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=("initdb (package postgresql)")
if ((${#missing[@]})); then
    echo "scripts/test.sh: the tests need tools that are not installed: ${missing[*]}" >&2
    echo "install them with: apt-get install -y ${packages[*]}" >&2
    exit 1
fi
if [[ ! -c /dev/fuse ]]; then
    echo "scripts/test.sh: warning: /dev/fuse is missing, so the FUSE mount tests will fail" >&2
    echo "  (try \`modprobe fuse\`, or give the container --device /dev/fuse --cap-add SYS_ADMIN)" >&2
fi

failed=()
step() {
    local name=$1
    shift
    printf '\n=== %s: %s\n' "$name" "$*"
    if ! "$@"; then
        failed+=("$name")
    fi
}

step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    step tests cargo nextest run --workspace
else
    echo "scripts/test.sh: cargo-nextest not found, falling back to cargo test" >&2
    echo "  (install it for per-test timeouts: cargo install cargo-nextest --locked)" >&2
    step tests cargo test --workspace
fi

echo
if ((${#failed[@]})); then
    echo "scripts/test.sh: FAILED: ${failed[*]}"
    exit 1
fi
echo "scripts/test.sh: fmt, clippy and tests all passed"
