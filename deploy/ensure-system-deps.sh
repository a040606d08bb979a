#!/usr/bin/env bash
# Installs what the Python venv cannot: a Java 17+ runtime and Maven for the local Kafka broker.
# Idempotent and quiet when everything is present; uses Debian's packages (needs root) otherwise.
set -euo pipefail
need=()
if ! command -v java >/dev/null 2>&1; then need+=(openjdk-17-jre-headless); fi
if ! command -v mvn >/dev/null 2>&1; then need+=(maven); fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${need[*]} — install them (Java 17+ and Maven) and retry" >&2
  exit 1
fi
echo "installing ${need[*]} from Debian's packages ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
