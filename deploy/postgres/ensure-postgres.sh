#!/bin/sh
# Make sure PostgreSQL server binaries exist (tests start a throw-away cluster from them).
# Idempotent: does nothing when /usr/lib/postgresql/*/bin/initdb (or PG_BIN/initdb) is there.
# Debian/Ubuntu only (apt-get); run as root or with sudo available. CI and `make test` call it.
set -eu

have_server() {
    if [ -n "${PG_BIN:-}" ] && [ -x "${PG_BIN}/initdb" ] && [ -x "${PG_BIN}/pg_ctl" ]; then
        return 0
    fi
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            return 0
        fi
    done
    return 1
}

if have_server; then
    echo "ensure-postgres: server binaries present: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ' ')"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-postgres: no PostgreSQL server binaries and no apt-get; install PostgreSQL" \
         "or set TPIPE_TEST_POSTGRES_URL to a server the tests may use" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure-postgres: need root (or sudo) to apt-get install postgresql" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# The package's post-install creates and starts a default cluster on port 5432 when it can;
# the tests do not use it (they start their own on a free port).
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql

if ! have_server; then
    echo "ensure-postgres: postgresql installed but no /usr/lib/postgresql/*/bin/initdb found" >&2
    exit 1
fi
echo "ensure-postgres: installed $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
