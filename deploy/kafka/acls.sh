#!/usr/bin/env bash
# Grants or revokes Kafka ACLs with the Admin API (AclTool.java, run from source with the broker's
# jars: Kafka's Maven jars have no kafka-acls.sh). One binding a line on stdin, as printed by
# `leadpulse topics acls`:  PRINCIPAL topic|group NAME OPERATION[,OPERATION...]
#   leadpulse topics acls --principal User:scorer | deploy/kafka/acls.sh add
#   echo 'User:scorer group leadpulse Read,Describe' | deploy/kafka/acls.sh remove
#   deploy/kafka/acls.sh list
# Environment: KAFKA_BOOTSTRAP (default 127.0.0.1:KAFKA_PORT, i.e. the local broker's PLAINTEXT
# listener, a super user with KAFKA_AUTHORIZER=on), KAFKA_ADMIN_CONFIG (a client properties file for
# a secured admin connection: security.protocol, sasl.*, ssl.*), KAFKA_PORT (9092), KAFKA_VERSION,
# LEADPULSE_CACHE (as broker.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="${KAFKA_VERSION:-4.4.0}"
jars="${LEADPULSE_CACHE:-$HOME/.cache/leadpulse}/kafka-$version/libs"
bootstrap="${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}"

case "${1:-}" in
  add | remove | list) ;;
  *) echo "usage: acls.sh add|remove|list < bindings (see the header of $0)" >&2; exit 2 ;;
esac
command -v java >/dev/null 2>&1 || { echo "acls.sh: 'java' not found (Java 17+)" >&2; exit 1; }
[ -f "$jars/.complete" ] || "$here/broker.sh" fetch
[ -z "${KAFKA_ADMIN_CONFIG:-}" ] || [ -f "$KAFKA_ADMIN_CONFIG" ] || { echo "acls.sh: KAFKA_ADMIN_CONFIG=$KAFKA_ADMIN_CONFIG: no such file" >&2; exit 1; }
exec java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto "-Dlog4j2.configurationFile=$here/log4j2.properties" \
  -cp "$jars/*" "$here/AclTool.java" "$1" "$bootstrap" "${KAFKA_ADMIN_CONFIG:-}"
