#!/bin/sh
# Stores Jira's export directory (Jira's XML backup zips and Structure's backups) as one
# new snapshot. Run by the CronJob every night, or by hand in the backup-restore pod.
# Unchanged zips are not read again; only new ones are stored.
# Recipe: docs/recipes/kubernetes.md.
#
# Environment (defaults shown):
#   STRATA_ARCHIVE=/var/backup/jira.strata
#   JIRA_EXPORT=/var/jira/export
#   STRATA=strata
# Exit status: strata's (0 ok, 1 error and no snapshot, 3 saved but some files could not
# be read, 4 another backup holds the archive's lock).
set -eu

STRATA=${STRATA:-strata}
STRATA_ARCHIVE=${STRATA_ARCHIVE:-/var/backup/jira.strata}
JIRA_EXPORT=${JIRA_EXPORT:-/var/jira/export}

# exec: strata runs as the container's main process and handles SIGTERM when the pod is
# stopped (nothing half-written is committed).
exec "$STRATA" ingest "$STRATA_ARCHIVE" "$JIRA_EXPORT:export" --label jira
