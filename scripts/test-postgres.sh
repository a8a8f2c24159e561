#!/usr/bin/env bash
# Starts a throw-away PostgreSQL cluster for tests and prints its admin URL
# (`postgres://berth@127.0.0.1:PORT/postgres`) on stdout. The cluster lives in a
# temp dir, listens on a unix socket there and on a free localhost port, trusts
# local connections, and is stopped (and its dir removed) when the process whose
# pid is given as $1 (default: the caller) exits.
#
# With `--tls` as $2 the server also speaks TLS with a certificate for 127.0.0.1
# signed by a CA made here (openssl), and the URL printed asks for it:
# `...?sslmode=require&sslrootcert=<dir>/ca.pem`.
#
# Installs PostgreSQL with apt-get when no server binaries are found. Fails with
# a message on stderr (exit 1) when the cluster cannot be started.
set -euo pipefail

watch_pid="${1:-$PPID}"
tls="${2:-}"

find_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if ! bin="$(find_bin)"; then
    echo "test-postgres: no PostgreSQL server found; installing it with apt-get" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2; then
        echo "test-postgres: cannot install PostgreSQL (apt-get failed)" >&2
        exit 1
    fi
    bin="$(find_bin)" || { echo "test-postgres: PostgreSQL installed but initdb/pg_ctl not found under /usr/lib/postgresql/*/bin" >&2; exit 1; }
fi

dir="$(mktemp -d /tmp/berth-pg.XXXXXX)"
chmod 0755 "$dir"
# PostgreSQL refuses to run as root: run it as the `postgres` user then.
as_owner=()
if [[ "$(id -u)" == 0 ]]; then
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home postgres >&2
    fi
    chown postgres "$dir"
    as_owner=(runuser -u postgres --)
fi

server_tls=""
query=""
if [[ "$tls" == "--tls" ]]; then
    if ! {
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=berth test CA" \
            -keyout "$dir/ca.key" -out "$dir/ca.pem" &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout "$dir/server.key" -out "$dir/server.csr" &&
        printf 'subjectAltName=IP:127.0.0.1\n' >"$dir/san.ext" &&
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/server.crt"
    } >"$dir/openssl.log" 2>&1; then
        echo "test-postgres: cannot make the TLS certificate:" >&2
        cat "$dir/openssl.log" >&2
        rm -rf "$dir"
        exit 1
    fi
    chmod 0600 "$dir/server.key"
    if [[ "$(id -u)" == 0 ]]; then chown postgres "$dir/server.key" "$dir/server.crt"; fi
    server_tls="-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
    query="?sslmode=require&sslrootcert=$dir/ca.pem"
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

if ! "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U berth --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1; then
    echo "test-postgres: initdb failed:" >&2
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    exit 1
fi
if ! "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off $server_tls" \
    start >"$dir/pg_ctl.log" 2>&1; then
    echo "test-postgres: the server did not start:" >&2
    cat "$dir/pg_ctl.log" "$dir/server.log" >&2 || true
    rm -rf "$dir"
    exit 1
fi

# Stop the cluster when the watched process is gone (detached, quiet: the
# caller's command substitution must not wait for it).
(
    while kill -0 "$watch_pid" 2>/dev/null; do sleep 1; done
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
) </dev/null >/dev/null 2>&1 &
disown || true

echo "postgres://berth@127.0.0.1:$port/postgres$query"
