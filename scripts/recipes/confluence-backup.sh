#!/bin/sh
# Backup of a Confluence server into ONE strata snapshot: the home directory
# (confluence.cfg.xml, secrets-config.yaml, attachments/, keys/, secured/ and everything
# else that is not rebuilt at start-up) and a pg_dump of its PostgreSQL database.
#
# The dump runs first and sees one consistent state of the database (pg_dump works on a
# live database); the home directory is read right after it, so every attachment the
# dump refers to is in the snapshot. For a cold backup, set CONFLUENCE_SERVICE: strata
# stops it before the dump and starts it again as soon as the sources are read, whatever
# happened. The snapshot is committed only if pg_dump succeeded.
# Recipe: docs/recipes/confluence.md.
#
# Usage: confluence-backup.sh   (configured through the environment; defaults shown)
#   STRATA_ARCHIVE=/backups/confluence.strata  an archive made once with `strata init`
#   CONFLUENCE_HOME=/var/atlassian/application-data/confluence
#   CONFLUENCE_EXCLUDE="index temp logs thumbnails viewfile plugins-cache
#       plugins-osgi-cache plugins-temp bundled-plugins webresource-temp imgEffects
#       analytics-logs"               directories whose contents Confluence rebuilds at
#                                     start-up (the directories themselves are kept)
#   DB_DUMP="pg_dump --format=custom --compress=0 confluence"
#                                     command that writes the dump to stdout; connection
#                                     settings from PGHOST, PGPORT, PGUSER, PGPASSFILE
#                                     (e.g. DB_DUMP="runuser -u postgres -- pg_dump ...")
#   CONFLUENCE_SERVICE=               a systemd unit to stop and start (cold backup)
#   STRATA=strata  STRATA_LABEL=confluence
# Exit status: strata's (0 ok, 1 error and no snapshot, 3 snapshot saved but some paths
# could not be read or --after failed, 4 archive locked by another writer).
set -eu

STRATA=${STRATA:-strata}
STRATA_ARCHIVE=${STRATA_ARCHIVE:-/backups/confluence.strata}
STRATA_LABEL=${STRATA_LABEL:-confluence}
CONFLUENCE_HOME=${CONFLUENCE_HOME:-/var/atlassian/application-data/confluence}
CONFLUENCE_EXCLUDE=${CONFLUENCE_EXCLUDE-index temp logs thumbnails viewfile \
plugins-cache plugins-osgi-cache plugins-temp bundled-plugins webresource-temp \
imgEffects analytics-logs}
# --compress=0: strata compresses (zstd) and deduplicates; a compressed dump would not
# deduplicate from one night to the next.
DB_DUMP=${DB_DUMP:-pg_dump --format=custom --compress=0 confluence}
CONFLUENCE_SERVICE=${CONFLUENCE_SERVICE:-}

set -- "$STRATA_ARCHIVE" "$CONFLUENCE_HOME:confluence" \
    --cmd "$DB_DUMP" --as db/confluence.dump --label "$STRATA_LABEL"
for dir in $CONFLUENCE_EXCLUDE; do
    set -- "$@" --exclude "confluence/$dir/**"
done
if [ -n "$CONFLUENCE_SERVICE" ]; then
    set -- "$@" --before "systemctl stop $CONFLUENCE_SERVICE" \
        --after "systemctl start $CONFLUENCE_SERVICE"
fi

# exec: strata itself receives SIGTERM from `systemctl stop` or `kill`, so it can start
# the service again before it exits.
exec "$STRATA" ingest "$@"
