# shellcheck shell=bash
# Sourced. A throwaway PostgreSQL server for the tests.
#
#   pg_start   exports TASK_QUEUE_TEST_PG_DSN (database task_queue_test), and
#              for the fault tests that restart the server (run as the
#              postgres user): TASK_QUEUE_TEST_PG_CTL (pg_ctl),
#              TASK_QUEUE_TEST_PG_DATA (the data directory) and
#              TASK_QUEUE_TEST_PG_LOG (the server log)
#   pg_stop    stops the server and removes its directory (registered on exit)
#
# TASK_QUEUE_TEST_PG_DSN already set means "use that server": none is started,
# the DSN is only checked with pg_isready.
#
# The cluster lives in a fresh temporary directory (data, unix socket, log),
# listens on a free port on 127.0.0.1 only, with durability off (fsync,
# synchronous_commit, full_page_writes) since it is thrown away. initdb and
# postgres refuse to run as root, so they run as the `postgres` user. Every
# connection is trusted (local and 127.0.0.1 only), and the DSN names the
# superuser `postgres`, so it works for whoever runs the tests (root in CI).
#
# These functions are called from `check` (in an `if`), where `set -e` does
# not apply: every failure is handled explicitly.

[[ -n "${_CI_POSTGRES_SH:-}" ]] && return 0
_CI_POSTGRES_SH=1
# shellcheck source=SCRIPTDIR/cleanup.sh
source "$(dirname "${BASH_SOURCE[0]}")/cleanup.sh"

PG_TEST_DB=task_queue_test
_pg_dir=""
_pg_bin=""

# The directory holding initdb and pg_ctl: PATH first, else the newest
# /usr/lib/postgresql/<version>/bin.
_pg_find_bin() {
    local initdb d
    if initdb="$(command -v initdb)" && command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    d="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
        printf '%s\n' "$d"
        return 0
    fi
    return 1
}

_pg_install() {
    echo "initdb/pg_ctl not found: installing Debian's postgresql"
    local t0=$SECONDS
    if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql >/dev/null; }; then
        echo "!! apt-get install postgresql failed" >&2
        return 1
    fi
    echo "installed postgresql in $((SECONDS - t0)) s"
}

_pg_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

_pg_as_postgres() {
    runuser -u postgres -- "$@"
}

_pg_show_log() {
    if [[ -n "$_pg_dir" && -f "$_pg_dir/server.log" ]]; then
        echo "---- PostgreSQL server log ($_pg_dir/server.log) ----" >&2
        cat "$_pg_dir/server.log" >&2
        echo "---- end of server log ----" >&2
    fi
}

pg_stop() {
    [[ -n "$_pg_dir" ]] || return 0
    if [[ -f "$_pg_dir/data/postmaster.pid" ]]; then
        if ! _pg_as_postgres "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m immediate -w -t 10 \
            stop >/dev/null 2>&1; then
            local pid
            pid="$(head -n 1 "$_pg_dir/data/postmaster.pid" 2>/dev/null)"
            [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -rf "$_pg_dir"
    _pg_dir=""
}

pg_start() {
    if [[ -n "${TASK_QUEUE_TEST_PG_DSN:-}" ]]; then
        echo "TASK_QUEUE_TEST_PG_DSN is set: using that server, starting none"
        local isready
        isready="$(command -v pg_isready)" || isready="$(_pg_find_bin)/pg_isready"
        if ! "$isready" -q -t 10 -d "$TASK_QUEUE_TEST_PG_DSN"; then
            echo "!! the server at TASK_QUEUE_TEST_PG_DSN does not accept connections" >&2
            return 1
        fi
        return 0
    fi

    if ! _pg_bin="$(_pg_find_bin)"; then
        _pg_install || return 1
        _pg_bin="$(_pg_find_bin)" || {
            echo "!! initdb/pg_ctl still not found after installing postgresql" >&2
            return 1
        }
    fi
    if ! id -u postgres >/dev/null 2>&1; then
        echo "!! no 'postgres' user to run the server as" >&2
        return 1
    fi

    # /tmp rather than $TMPDIR: the postgres user must reach the directory,
    # and the unix socket path must stay short.
    _pg_dir="$(mktemp -d /tmp/task-queue-pg.XXXXXX)" || return 1
    on_exit pg_stop
    chown postgres: "$_pg_dir" || return 1

    if ! _pg_as_postgres "$_pg_bin/initdb" -D "$_pg_dir/data" --no-sync -U postgres \
        --auth=trust --encoding=UTF8 --locale=C >"$_pg_dir/initdb.log" 2>&1; then
        echo "!! initdb failed:" >&2
        cat "$_pg_dir/initdb.log" >&2
        return 1
    fi

    local port attempt
    for attempt in 1 2 3; do
        port="$(_pg_free_port)" || return 1
        # Later settings win: these override the ones initdb wrote.
        cat >>"$_pg_dir/data/postgresql.conf" <<CONF

# task_queue CI (attempt $attempt): throwaway server, durability off
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$_pg_dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 1GB
logging_collector = off
CONF
        if _pg_as_postgres "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/server.log" \
            -w -t 30 start >/dev/null 2>&1; then
            break
        fi
        # Another process may have taken the port between the probe and the start.
        if ((attempt < 3)) && grep -q 'Address already in use' "$_pg_dir/server.log"; then
            echo "port $port taken meanwhile, retrying"
            continue
        fi
        echo "!! PostgreSQL failed to start" >&2
        _pg_show_log
        return 1
    done

    local i
    for ((i = 0; i < 100; i++)); do
        "$_pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.1
    done
    if ! "$_pg_bin/pg_isready" -h 127.0.0.1 -p "$port"; then
        echo "!! PostgreSQL does not accept connections on 127.0.0.1:$port" >&2
        _pg_show_log
        return 1
    fi

    local dsn="postgresql://postgres@127.0.0.1:$port/$PG_TEST_DB"
    # As the user running the tests, over TCP, as the tests will connect.
    if ! "$_pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$PG_TEST_DB" ||
        ! "$_pg_bin/psql" "$dsn" -X -q -A -t -v ON_ERROR_STOP=1 -c 'SELECT 1' >/dev/null; then
        echo "!! could not create or reach database $PG_TEST_DB" >&2
        _pg_show_log
        return 1
    fi
    export TASK_QUEUE_TEST_PG_DSN="$dsn"
    export TASK_QUEUE_TEST_PG_CTL="$_pg_bin/pg_ctl"
    export TASK_QUEUE_TEST_PG_DATA="$_pg_dir/data"
    export TASK_QUEUE_TEST_PG_LOG="$_pg_dir/server.log"
    echo "PostgreSQL $("$_pg_bin/postgres" --version | awk '{print $3}') in $_pg_dir:" \
        "TASK_QUEUE_TEST_PG_DSN=$TASK_QUEUE_TEST_PG_DSN"
}
