#!/bin/sh
# What changed since last night: `strata diff` between the two newest snapshots of one
# label.
#
# Usage: strata-what-changed.sh ARCHIVE LABEL [--json]
#   ARCHIVE  the strata archive, e.g. /backups/jira.strata
#   LABEL    the label the nightly ingest uses, e.g. jira, structr, confluence
#   --json   passed on to `strata diff`
#
# Output (from `strata diff`): one line per path, `+` added, `-` removed, `M` content
# modified, `m` metadata only, `T` type changed; a summary line on stderr.
# Environment: STRATA, the strata binary (default: strata from PATH).
# Recipe: docs/recipes/README.md.
set -eu

strata=${STRATA:-strata}

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 ARCHIVE LABEL [--json]" >&2
    exit 2
fi
archive=$1
label=$2
shift 2

# `strata snapshots --json` lists oldest first; each snapshot has "id":"<64 hex digits>".
ids=$("$strata" snapshots "$archive" --label "$label" --json |
    grep -o '"id":"[0-9a-f]\{64\}"' | cut -d'"' -f4 | tail -n 2)
count=$(printf '%s\n' "$ids" | grep -c . || true)
if [ "$count" -lt 2 ]; then
    echo "$0: $archive has $count snapshot(s) with label '$label'; a diff needs two" >&2
    exit 1
fi
old=$(printf '%s\n' "$ids" | sed -n 1p)
new=$(printf '%s\n' "$ids" | sed -n 2p)
exec "$strata" diff "$archive" "$old" "$new" "$@"
