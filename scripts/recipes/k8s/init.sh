#!/bin/sh
# Creates the strata archive on the backup volume, once (the `restic init` step).
# Running it again on an existing archive changes nothing.
# Recipe: docs/recipes/kubernetes.md.
#
# Environment (defaults shown):
#   STRATA_ARCHIVE=/var/backup/jira.strata   on the backup volume
#   STRATA_INIT_ARGS=                        e.g. --append-only, --compression-level 6
#   STRATA_PASSWORD_FILE=                    the archive's password, from a Secret mounted as a
#                                            file (every strata command reads it)
#   STRATA=strata
set -eu

STRATA=${STRATA:-strata}
STRATA_ARCHIVE=${STRATA_ARCHIVE:-/var/backup/jira.strata}
STRATA_INIT_ARGS=${STRATA_INIT_ARGS:-}

if "$STRATA" snapshots "$STRATA_ARCHIVE" >/dev/null 2>&1; then
    echo "$STRATA_ARCHIVE is already a strata archive; nothing to do"
    exit 0
fi
# shellcheck disable=SC2086 # STRATA_INIT_ARGS holds several words on purpose
exec "$STRATA" init "$STRATA_ARCHIVE" $STRATA_INIT_ARGS
