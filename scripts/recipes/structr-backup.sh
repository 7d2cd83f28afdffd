#!/bin/sh
# Cold backup of a Structr installation into ONE strata snapshot: the Structr directory
# (files/, structr.conf, scripts/, certificates and keystores, the Structr version itself)
# and a Neo4j dump, taken while Structr and Neo4j are stopped, so that every file the
# database refers to is in the snapshot and vice versa.
#
# strata stops the services (--before) only after it has taken the archive's lock and
# checked that every source exists, and starts them again (--after) as soon as the
# sources are read, whatever happened: a failed dump, an unreadable file, SIGINT or
# SIGTERM. The snapshot is committed only if the dump succeeded. strata prints the
# downtime. Recipe: docs/recipes/structr.md.
#
# Usage: structr-backup.sh   (configured through the environment; defaults shown)
#   STRATA_ARCHIVE=/backups/structr.strata  an archive made once with `strata init`
#   STRUCTR_HOME=/usr/lib/structr           the Structr installation directory
#   STRUCTR_EXCLUDE="logs tmp"              directories of STRUCTR_HOME whose contents
#                                           are left out (the directories are kept)
#   STRUCTR_SERVICE=structr  NEO4J_SERVICE=neo4j   systemd units to stop and start
#   NEO4J_DUMP="neo4j-admin database dump --to-stdout neo4j"
#                                           command that writes the dump to stdout (with
#                                           Neo4j 5 the database must be stopped)
#   STRATA=strata                           the strata binary
#   STRATA_LABEL=structr                    the snapshot label (its parent is the newest
#                                           snapshot with the same label)
# Exit status: strata's (0 ok, 1 error and no snapshot, 3 snapshot saved but some paths
# could not be read or --after failed, 4 archive locked by another writer).
set -eu

STRATA=${STRATA:-strata}
STRATA_ARCHIVE=${STRATA_ARCHIVE:-/backups/structr.strata}
STRATA_LABEL=${STRATA_LABEL:-structr}
STRUCTR_HOME=${STRUCTR_HOME:-/usr/lib/structr}
STRUCTR_EXCLUDE=${STRUCTR_EXCLUDE-logs tmp}
STRUCTR_SERVICE=${STRUCTR_SERVICE:-structr}
NEO4J_SERVICE=${NEO4J_SERVICE:-neo4j}
NEO4J_DUMP=${NEO4J_DUMP:-neo4j-admin database dump --to-stdout neo4j}

# Structr first (it uses the database), then Neo4j; start in the reverse order. --after
# tries both and fails if either failed, so strata reports it.
before="systemctl stop $STRUCTR_SERVICE && systemctl stop $NEO4J_SERVICE"
after="rc=0; systemctl start $NEO4J_SERVICE || rc=1; systemctl start $STRUCTR_SERVICE || rc=1; exit \$rc"

set -- "$STRATA_ARCHIVE" "$STRUCTR_HOME:structr" \
    --cmd "$NEO4J_DUMP" --as db/neo4j.dump \
    --label "$STRATA_LABEL" --before "$before" --after "$after"
for dir in $STRUCTR_EXCLUDE; do
    set -- "$@" --exclude "structr/$dir/**"
done

# exec: strata itself receives SIGTERM from `systemctl stop` or `kill`, so it can start
# the services again before it exits.
exec "$STRATA" ingest "$@"
