# Sourced by scripts/test and scripts/soak: makes sure a PostgreSQL answers at
# $KAIROS_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres, a role that
# may CREATE DATABASE). When nothing answers there, it tries to start a local cluster, then to
# install one with apt-get (as root); otherwise it stops and says exactly what is missing.
# The caller defines say().

export KAIROS_TEST_DATABASE_URL="${KAIROS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
hostport="${KAIROS_TEST_DATABASE_URL#*@}"; hostport="${hostport%%/*}"
pg_host="${hostport%%:*}"; pg_port="${hostport##*:}"; [ "$pg_port" = "$hostport" ] && pg_port=5432

pg_up() { (exec 3<>"/dev/tcp/$pg_host/$pg_port") 2>/dev/null; }

start_local_pg() {
    command -v pg_ctlcluster >/dev/null 2>&1 || return 1
    local v
    v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$v" ] || return 1
    say "starting the local PostgreSQL $v cluster"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || return 1
}

install_pg() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    say "installing PostgreSQL with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || return 1
    local v conf
    v=$(ls /etc/postgresql | sort -V | tail -n 1)
    conf="/etc/postgresql/$v/main/pg_hba.conf"
    # Local test cluster: trust connections from this machine only.
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/; s/^(local\s+all\s+all\s+)\S+/\1trust/' "$conf"
    start_local_pg
}

wait_pg() { for _ in $(seq 1 30); do pg_up && return 0; sleep 1; done; return 1; }

ensure_pg() {
    if ! pg_up; then
        if [ "$pg_host" = 127.0.0.1 ] || [ "$pg_host" = localhost ]; then
            { start_local_pg && wait_pg; } || { install_pg && wait_pg; } || true
        fi
    fi
    if ! pg_up; then
        say "PostgreSQL is not reachable at $pg_host:$pg_port and could not be started or installed here."
        say "Missing: a PostgreSQL server (15 or newer) accepting $KAIROS_TEST_DATABASE_URL with CREATE DATABASE rights."
        say "Start one (e.g. 'pg_ctlcluster 15 main start' or 'docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16')"
        say "or point KAIROS_TEST_DATABASE_URL at one, then run $0 again."
        exit 1
    fi
}
