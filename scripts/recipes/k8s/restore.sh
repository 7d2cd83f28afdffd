#!/bin/sh
# Copies one Jira backup zip from the strata archive into Jira's import directory, ready
# for Jira > Settings > System > Restore System (or the setup wizard's "restore from
# backup"). Needs no FUSE, so it works in an unprivileged pod.
# Recipe: docs/recipes/kubernetes.md.
#
# Usage:
#   restore.sh                     list the snapshots and the zips of the newest one
#   restore.sh NAME [SNAPSHOT]     restore export/NAME from SNAPSHOT (id, id prefix or
#                                  latest; default latest)
#   restore.sh --newest [SNAPSHOT] restore the newest Jira backup zip of SNAPSHOT
#                                  (Structure's structure-backup-*.zip are skipped)
# Environment (defaults shown):
#   STRATA_ARCHIVE=/var/backup/jira.strata
#   JIRA_IMPORT=/var/jira/import
#   STRATA=strata
set -eu

STRATA=${STRATA:-strata}
STRATA_ARCHIVE=${STRATA_ARCHIVE:-/var/backup/jira.strata}
JIRA_IMPORT=${JIRA_IMPORT:-/var/jira/import}

if [ $# -eq 0 ]; then
    "$STRATA" snapshots "$STRATA_ARCHIVE" --label jira
    echo
    echo "Zips in the newest snapshot:"
    "$STRATA" ls "$STRATA_ARCHIVE" latest:export --label jira -l
    echo
    echo "Restore one with: $0 NAME [SNAPSHOT]   or: $0 --newest [SNAPSHOT]"
    exit 0
fi

name=$1
snapshot=${2:-latest}
if [ "$name" = "--newest" ]; then
    # `ls -l` columns: mode owner group size date time name. Names sort by mtime here,
    # because Jira's own names (2026-Nov-21--0200.zip) do not sort by time.
    name=$("$STRATA" ls "$STRATA_ARCHIVE" "$snapshot:export" --label jira -l |
        awk '$1 ~ /^-/ && $NF ~ /\.zip$/ && $NF !~ /^structure-backup-/' |
        sort -k5,6 | tail -n 1 | awk '{print $NF}')
    if [ -z "$name" ]; then
        echo "$0: no Jira backup zip in snapshot $snapshot" >&2
        exit 1
    fi
fi
case $name in
*/*)
    echo "$0: give the zip's name as listed, without a directory: $name" >&2
    exit 2
    ;;
esac

mkdir -p "$JIRA_IMPORT"
# Restored with its mode, owner (when run as root) and mtime; every chunk is verified.
"$STRATA" restore "$STRATA_ARCHIVE" "$snapshot:export/$name" "$JIRA_IMPORT" \
    --label jira --overwrite
echo "$JIRA_IMPORT/$name is ready: in Jira, Settings > System > Restore System, file name $name"
