#!/usr/bin/env bash
# Local benchmark backends for shadowbench, without Docker:
#   * PostgreSQL 15 (Debian bookworm packages) + pgvector built from the Debian trixie source package
#   * OpenSearch 2.19.x + k-NN plugin, assembled from Maven Central artifacts
#   * toxiproxy (Shopify, v2.12.0), a TCP fault proxy in front of both, built with `go install`
#     from the Go module proxy (needs Go on PATH or in /usr/local/go/bin)
#
# Usage: scripts/backends.sh up | down [--purge] | purge | status | env
#
#   up      install what is missing, start both backends on 127.0.0.1, wait until they are usable,
#           print a summary. Idempotent: if both already run it only re-checks them.
#   down    stop both (data is kept). `down --purge` (or `purge`) also deletes everything under
#           .backends/ except the download cache.
#   status  print versions and up/down state; exits non-zero if either backend is down.
#   env     print `export ...` lines for the app:  eval "$(scripts/backends.sh env)"
#           ML_PGVECTOR_DSN, ML_OPENSEARCH_HOSTS   the stores themselves
#           SB_TOXIPROXY_URL                       toxiproxy's HTTP API (http://127.0.0.1:8474)
#           SB_PROXIED_PGVECTOR_DSN                pgvector through the proxy `pgvector`
#           SB_PROXIED_OPENSEARCH_HOSTS            OpenSearch through the proxy `opensearch`
#           SB_BACKENDS_DIR, SB_BACKENDS_SCRIPT    where the pid files are, and this script
#                                                  (process faults: freeze/kill in scenarios)
#   stop-opensearch | freeze-opensearch | thaw-opensearch
#           outage drills used by the integration tests (stop = kill; freeze = SIGSTOP, so
#           requests hang until they time out; thaw = SIGCONT). `up` starts a stopped one again.
#
# Environment overrides:
#   SB_PG_PORT (55432)  SB_OS_PORT (9200)  SB_OS_TRANSPORT_PORT (SB_OS_PORT+100 = 9300)  SB_OS_HEAP (1g)
#   SB_OS_VERSION (pin one OpenSearch 2.19 patch; default: newest patch on Maven Central that has
#   the server zip, lang-painless and opensearch-knn)  SB_WAIT_TIMEOUT (180 seconds)
#   SB_BACKENDS_DIR (default: <repo>/.backends)  SB_DEBIAN_MIRROR (http://deb.debian.org/debian)
#   SB_TOXIPROXY_PORT (8474)  SB_PROXY_PG_PORT (55433)  SB_PROXY_OS_PORT (9201)
#
# Needs root for `up`/`down`/`purge` (apt-get, service users); re-executes itself via sudo if possible.
# The services themselves run as the non-root users `postgres`, `opensearch` and `nobody` (toxiproxy).
# The proxies `pgvector` (127.0.0.1:55433 -> 55432) and `opensearch` (127.0.0.1:9201 -> 9200) are
# for manual drills; `shadowbench run` creates its own proxies per run (port 0) for [[faults]].
set -euo pipefail

SCRIPT_PATH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd -P)
BK=${SB_BACKENDS_DIR:-$REPO/.backends}
CACHE=$BK/cache
LOGS=$BK/logs
RUN=$BK/run

PG_PORT=${SB_PG_PORT:-55432}
OS_PORT=${SB_OS_PORT:-9200}
OS_TRANSPORT_PORT=${SB_OS_TRANSPORT_PORT:-$((OS_PORT + 100))}
OS_HEAP=${SB_OS_HEAP:-1g}
WAIT_TIMEOUT=${SB_WAIT_TIMEOUT:-180}
OS_VERSION_CANDIDATES=${SB_OS_VERSION:-"2.19.6 2.19.5 2.19.4 2.19.3 2.19.2 2.19.1 2.19.0"}
DEBIAN_MIRROR=${SB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PGVECTOR_WANT=0.8.0

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_DATA=$BK/pg
PG_LOG_DIR=$LOGS/postgresql
PG_LOG=$PG_LOG_DIR/postgresql.log
PG_SOCK_DIR=$RUN/pg
# unix socket paths are limited to ~107 bytes; fall back to /tmp for very deep checkouts
if (( ${#PG_SOCK_DIR} + 20 > 100 )); then PG_SOCK_DIR=/tmp; fi
PG_OS_USER=postgres
DB_NAME=shadowbench
DB_USER=shadowbench
DB_PASS=shadowbench
PGVECTOR_CONTROL=/usr/share/postgresql/$PG_MAJOR/extension/vector.control
PGVECTOR_SO=/usr/lib/postgresql/$PG_MAJOR/lib/vector.so

OS_USER=opensearch
OS_HOME=$BK/opensearch
OS_DATA=$BK/opensearch-data
OS_LOG_DIR=$LOGS/opensearch
OS_OUT=$OS_LOG_DIR/stdout.log
OS_RUN=$RUN/opensearch
OS_PIDFILE=$OS_RUN/opensearch.pid

TPX_VERSION=v2.12.0
TPX_MODULE=github.com/Shopify/toxiproxy/v2/cmd/server
TPX_PORT=${SB_TOXIPROXY_PORT:-8474}
TPX_PG_PORT=${SB_PROXY_PG_PORT:-55433}
TPX_OS_PORT=${SB_PROXY_OS_PORT:-9201}
TPX_HOME=$BK/toxiproxy
TPX_BIN=$TPX_HOME/bin/toxiproxy-server-$TPX_VERSION
TPX_RUN=$RUN/toxiproxy
TPX_PIDFILE=$TPX_RUN/toxiproxy.pid
TPX_LOG=$LOGS/toxiproxy.log
TPX_USER=nobody

MVN_DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1
APT_SRC_FILE=/etc/apt/sources.list.d/shadowbench-trixie-src.sources
APT_PIN_FILE=/etc/apt/preferences.d/shadowbench-trixie-src
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

PG_DSN="postgres://$DB_USER:$DB_PASS@127.0.0.1:$PG_PORT/$DB_NAME"
OS_URL="http://127.0.0.1:$OS_PORT"
TPX_URL="http://127.0.0.1:$TPX_PORT"
PROXIED_PG_DSN="postgres://$DB_USER:$DB_PASS@127.0.0.1:$TPX_PG_PORT/$DB_NAME"
PROXIED_OS_URL="http://127.0.0.1:$TPX_OS_PORT"

log() { printf '[backends] %s\n' "$*" >&2; }
warn() { printf '[backends] WARNING: %s\n' "$*" >&2; }
die() { printf '[backends] ERROR: %s\n' "$*" >&2; exit 1; }

# Show the tail of a log file (on failure).
show_tail() {
  local f=$1 n=${2:-40}
  if [[ -f $f ]]; then
    log "---- last $n lines of $f ----"
    tail -n "$n" "$f" | sed 's/^/    /' >&2 || true
    log "----"
  fi
}

need_root() {
  if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      log "not root; re-running via sudo"
      exec sudo -E -- "$SCRIPT_PATH" "$@"
    fi
    die "'$1' must run as root (it installs packages and runs services as dedicated users)"
  fi
}

take_lock() {
  mkdir -p "$BK"
  exec 9>"$BK/.lock"
  if ! flock -n 9; then
    log "another backends.sh is running; waiting for its lock"
    flock 9
  fi
}

# Run a command as a service user, with a clean environment and a cwd it can read.
as_user() {
  local user=$1; shift
  # 9>&-: daemons started this way (postmaster) must not inherit our lock file descriptor
  (cd / && setpriv --reuid="$user" --regid="$user" --init-groups \
    env -i PATH="$SAFE_PATH" LANG=C.UTF-8 HOME=/ "$@" 9>&-)
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Write stdin to a file; set FILE_CHANGED=1 if the content differs from before.
FILE_CHANGED=0
write_file() {
  local path=$1 owner=$2 mode=$3 tmp
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$path"
    FILE_CHANGED=1
  fi
  chown "$owner" "$path"
  chmod "$mode" "$path"
}

# ---------------------------------------------------------------------------------------------
# apt
# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
APT_LOG=$LOGS/apt.log

pkg_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]; }

apt_update() {
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    if ! apt-get update -q >>"$APT_LOG" 2>&1; then
      show_tail "$APT_LOG"
      die "apt-get update failed (see $APT_LOG)"
    fi
    APT_UPDATED=1
  fi
}

# Install only the packages that are missing (never upgrades what is there).
apt_install() {
  local p missing=()
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null 2>&1 || die "need packages (${missing[*]}) but apt-get is not available"
  apt_update
  log "apt-get install ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${missing[@]}" >>"$APT_LOG" 2>&1; then
    show_tail "$APT_LOG"
    die "apt-get install failed for: ${missing[*]} (see $APT_LOG)"
  fi
}

# ---------------------------------------------------------------------------------------------
# common setup
# ---------------------------------------------------------------------------------------------
ensure_dirs() {
  mkdir -p "$BK" "$CACHE" "$LOGS" "$RUN"
  chmod 755 "$BK" "$CACHE" "$LOGS" "$RUN"
}

ensure_base_tools() {
  local need=()
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v unzip >/dev/null 2>&1 || need+=(unzip)
  command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
  command -v flock >/dev/null 2>&1 || need+=(util-linux)
  pkg_installed ca-certificates || need+=(ca-certificates)
  [[ ${#need[@]} -eq 0 ]] || apt_install "${need[@]}"
}

# Service users must be able to reach their directories under $BK.
check_access() {
  local user=$1 dir=$2
  as_user "$user" test -x "$dir" ||
    die "user '$user' cannot access $dir (a parent directory is not traversable for other users, e.g. /root is 0700). Fix with 'chmod o+x' on the parent directories, or set SB_BACKENDS_DIR to a directory such as /var/lib/shadowbench-backends"
}

# ---------------------------------------------------------------------------------------------
# Java / Maven
# ---------------------------------------------------------------------------------------------
JAVA_HOME_FOUND=

java_major() {
  "$1/bin/java" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\)[^"]*".*/\1/p'
}

find_java_home() {
  local c j
  for c in "${OPENSEARCH_JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-* "${JAVA_HOME:-}" /usr/lib/jvm/java-21-openjdk-*; do
    if [[ -n $c && -x $c/bin/java ]]; then echo "$c"; return 0; fi
  done
  if j=$(command -v java 2>/dev/null); then
    j=$(readlink -f "$j")
    echo "${j%/bin/java}"
    return 0
  fi
  return 1
}

ensure_java() {
  local jh major
  if ! jh=$(find_java_home); then
    apt_install openjdk-17-jre-headless
    jh=$(find_java_home) || die "no Java found even after installing openjdk-17-jre-headless"
  fi
  major=$(java_major "$jh")
  [[ -n $major ]] || die "cannot determine the Java version of $jh"
  (( major >= 11 && major <= 23 )) || die "OpenSearch 2.19 needs Java 11..23, found Java $major at $jh"
  JAVA_HOME_FOUND=$jh
}

ensure_maven() {
  command -v mvn >/dev/null 2>&1 || apt_install maven
  command -v mvn >/dev/null 2>&1 || die "mvn not found"
}

# Report a Maven failure that is not simply "artifact does not exist" and stop.
mvn_fail() {
  log "Maven failed: $(grep -m 1 '\[ERROR\]' <<<"$1" | cut -c 1-400)"
  die "$2 (network, proxy or TLS trust problem? full output in $LOGS/mvn.log)"
}

# mvn_copy GROUP:ARTIFACT:VERSION[:TYPE] DIR -> copies the artifact into DIR.
# Returns 1 if Maven Central does not have the artifact; dies on any other Maven failure.
mvn_copy() {
  local gav=$1 dir=$2 out rc=0
  mkdir -p "$dir"
  out=$(cd "$CACHE" && JAVA_HOME=$JAVA_HOME_FOUND mvn -B -q -Dstyle.color=never "$MVN_DEP_PLUGIN:copy" \
      -Dartifact="$gav" -DoutputDirectory="$dir" 2>&1) || rc=$?
  # shellcheck disable=SC2001 # strip ANSI colour codes that Maven prints even with -q
  out=$(sed 's/\x1b\[[0-9;]*m//g' <<<"$out")
  printf '%s\n' "== mvn copy $gav (rc=$rc)" "$out" >>"$LOGS/mvn.log"
  [[ $rc -eq 0 ]] && return 0
  grep -q 'Could not find artifact' <<<"$out" && return 1
  mvn_fail "$out" "could not download $gav with Maven"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL + pgvector
# ---------------------------------------------------------------------------------------------
ensure_postgres_packages() {
  apt_install "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR"
  [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/psql ]] ||
    die "PostgreSQL $PG_MAJOR binaries not found in $PG_BIN"
  id -u "$PG_OS_USER" >/dev/null 2>&1 || die "OS user '$PG_OS_USER' missing (should come with postgresql-common)"
}

pgvector_installed_version() {
  [[ -f $PGVECTOR_CONTROL && -f $PGVECTOR_SO ]] || return 1
  sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$PGVECTOR_CONTROL"
}

ensure_trixie_deb_src() {
  # Source packages only; and a -1 pin so that trixie binaries could never be installed even if
  # someone adds a 'deb' line for trixie later.
  write_file "$APT_PIN_FILE" root:root 644 <<'EOF'
# Added by shadowbench scripts/backends.sh: never install Debian trixie binary packages.
Package: *
Pin: release n=trixie
Pin-Priority: -1
EOF
  FILE_CHANGED=0
  write_file "$APT_SRC_FILE" root:root 644 <<EOF
# Added by shadowbench scripts/backends.sh: trixie SOURCE packages only (to build pgvector
# against bookworm's PostgreSQL $PG_MAJOR). No 'deb' entry: binaries always come from bookworm.
Types: deb-src
URIs: $DEBIAN_MIRROR
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Refresh only this source list (fast, does not touch the other lists).
  if [[ $FILE_CHANGED -eq 1 ]] || ! apt-cache showsrc pgvector >/dev/null 2>&1; then
    log "apt-get update (trixie deb-src only)"
    if ! apt-get update -q -o Dir::Etc::sourcelist="$APT_SRC_FILE" -o Dir::Etc::sourceparts=- \
        -o APT::Get::List-Cleanup=0 >>"$APT_LOG" 2>&1; then
      show_tail "$APT_LOG"
      die "apt-get update for the trixie deb-src entry failed (see $APT_LOG)"
    fi
  fi
}

ensure_pgvector() {
  local v src_dir dsc
  if v=$(pgvector_installed_version); then
    log "pgvector $v already installed for PostgreSQL $PG_MAJOR"
    return 0
  fi
  log "building pgvector from the Debian trixie source package"
  apt_install "postgresql-server-dev-$PG_MAJOR" dpkg-dev make gcc libc6-dev
  mkdir -p "$CACHE/pgvector"
  src_dir=$(find "$CACHE/pgvector" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | sort -V | tail -n 1)
  if [[ -z $src_dir ]]; then
    ensure_trixie_deb_src
    v=$(apt-cache showsrc pgvector 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -n 1)
    [[ -n $v ]] || die "pgvector source package not found in trixie deb-src"
    [[ $v == "$PGVECTOR_WANT"* ]] || warn "trixie has pgvector $v (expected $PGVECTOR_WANT); using it"
    log "apt-get source pgvector=$v"
    if ! (cd "$CACHE/pgvector" && apt-get source -q "pgvector=$v") >>"$APT_LOG" 2>&1; then
      show_tail "$APT_LOG"
      die "apt-get source pgvector failed (see $APT_LOG)"
    fi
    src_dir=$(find "$CACHE/pgvector" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | sort -V | tail -n 1)
    [[ -n $src_dir ]] || die "apt-get source did not unpack pgvector (is dpkg-dev installed?)"
  else
    dsc=$(basename "$src_dir")
    log "using cached source $dsc"
  fi
  log "make && make install in $src_dir"
  if ! { make -C "$src_dir" PG_CONFIG="$PG_BIN/pg_config" &&
         make -C "$src_dir" PG_CONFIG="$PG_BIN/pg_config" install; } >"$LOGS/pgvector-build.log" 2>&1; then
    show_tail "$LOGS/pgvector-build.log"
    die "building pgvector failed (see $LOGS/pgvector-build.log)"
  fi
  v=$(pgvector_installed_version) || die "pgvector build finished but $PGVECTOR_CONTROL / $PGVECTOR_SO are missing"
  log "pgvector $v installed"
}

pg_ctl_as() { as_user "$PG_OS_USER" "$PG_BIN/pg_ctl" -D "$PG_DATA" "$@"; }

pg_running() {
  [[ -f $PG_DATA/PG_VERSION ]] || return 1
  pg_ctl_as status >/dev/null 2>&1
}

psql_su() {
  as_user "$PG_OS_USER" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK_DIR" -p "$PG_PORT" -U postgres "$@"
}

# psql as the app role over TCP (exactly how the benchmark connects).
psql_app() {
  PGOPTIONS='-c client_min_messages=warning' PGCONNECT_TIMEOUT=5 \
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$PG_DSN" "$@"
}

configure_postgres() {
  local shm_kb dsm=posix
  install -d -o "$PG_OS_USER" -g "$PG_OS_USER" -m 755 "$PG_LOG_DIR"
  [[ $PG_SOCK_DIR == /tmp ]] || install -d -o "$PG_OS_USER" -g "$PG_OS_USER" -m 755 "$PG_SOCK_DIR"
  if [[ -f $PG_DATA/PG_VERSION ]]; then
    [[ $(cat "$PG_DATA/PG_VERSION") == "$PG_MAJOR" ]] ||
      die "$PG_DATA holds a PostgreSQL $(cat "$PG_DATA/PG_VERSION") cluster, expected $PG_MAJOR ('$0 purge' to start over)"
  else
    log "initdb $PG_DATA"
    install -d -o "$PG_OS_USER" -g "$PG_OS_USER" -m 700 "$PG_DATA"
    if ! as_user "$PG_OS_USER" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --no-locale \
        --auth-local=peer --auth-host=scram-sha-256 >"$LOGS/initdb.log" 2>&1; then
      show_tail "$LOGS/initdb.log"
      die "initdb failed (see $LOGS/initdb.log)"
    fi
    echo "include_if_exists = 'shadowbench.conf'" >>"$PG_DATA/postgresql.conf"
  fi
  grep -q "^include_if_exists = 'shadowbench.conf'" "$PG_DATA/postgresql.conf" ||
    echo "include_if_exists = 'shadowbench.conf'" >>"$PG_DATA/postgresql.conf"
  # Small /dev/shm (e.g. containers: 64 MB) breaks parallel index builds; use mmap DSM then.
  shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $2}' || true)
  if [[ -z $shm_kb ]] || (( shm_kb < 2 * 1024 * 1024 )); then dsm=mmap; fi
  FILE_CHANGED=0
  write_file "$PG_DATA/shadowbench.conf" "$PG_OS_USER:$PG_OS_USER" 600 <<EOF
# Written by scripts/backends.sh (rewritten on every 'up'; edit the script, not this file).
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK_DIR'
max_connections = 200
shared_buffers = 512MB
maintenance_work_mem = 512MB
dynamic_shared_memory_type = $dsm
EOF
  PG_CONF_CHANGED=$FILE_CHANGED
}

start_postgres() {
  if pg_running; then
    if [[ $PG_CONF_CHANGED -eq 1 ]]; then
      log "PostgreSQL settings changed; restarting"
      pg_ctl_as -m fast -w -t 120 stop >/dev/null || die "pg_ctl stop failed"
    else
      log "PostgreSQL already running"
      return 0
    fi
  fi
  if port_open "$PG_PORT"; then
    die "port 127.0.0.1:$PG_PORT is already in use by another process (set SB_PG_PORT to use another port)"
  fi
  log "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$PG_PORT"
  pg_ctl_as -w -t 60 -l "$PG_LOG" start >/dev/null ||
    { show_tail "$PG_LOG"; die "PostgreSQL failed to start (see $PG_LOG)"; }
}

setup_database() {
  log "ensuring role/database '$DB_NAME' and extension vector"
  psql_su -d postgres <<EOF >/dev/null
SET client_min_messages = warning;
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS';
  ELSE
    ALTER ROLE $DB_USER LOGIN PASSWORD '$DB_PASS';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')\gexec
EOF
  psql_su -d "$DB_NAME" <<EOF >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS vector;
ALTER EXTENSION vector UPDATE;
-- Resident-memory readings: which shared buffers hold the table and its index.
CREATE EXTENSION IF NOT EXISTS pg_buffercache;
GRANT pg_monitor TO $DB_USER;
EOF
}

verify_postgres() {
  local out
  out=$(psql_app -tA -c 'CREATE EXTENSION IF NOT EXISTS vector' \
        -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'" 2>&1) ||
    die "cannot use pgvector as $DB_USER via $PG_DSN: $out"
  PGVECTOR_RUNNING_VERSION=$out
}

stop_postgres() {
  if pg_running; then
    log "stopping PostgreSQL (pg_ctl stop -m fast)"
    pg_ctl_as -m fast -w -t 120 stop >/dev/null || die "pg_ctl stop failed"
  else
    log "PostgreSQL not running"
  fi
}

# ---------------------------------------------------------------------------------------------
# OpenSearch + k-NN
# ---------------------------------------------------------------------------------------------
os_zip() { echo "$CACHE/opensearch-$1.zip"; }
knn_zip() { echo "$CACHE/opensearch-knn-$1.0.zip"; }
painless_jar() { echo "$CACHE/lang-painless-$1.jar"; }

os_installed_version() { [[ -f $OS_HOME/.sb-version ]] && cat "$OS_HOME/.sb-version"; }

# Fetch the three artifacts of one 2.19 patch into the cache; fails if any is not on Maven Central.
fetch_os_artifacts() {
  local v=$1
  # k-NN first: it is the one most often missing for a patch.
  [[ -f $(knn_zip "$v") ]] || mvn_copy "org.opensearch.plugin:opensearch-knn:$v.0:zip" "$CACHE" || return 1
  [[ -f $(painless_jar "$v") ]] || mvn_copy "org.opensearch.plugin:lang-painless:$v:jar" "$CACHE" || return 1
  [[ -f $(os_zip "$v") ]] || mvn_copy "org.opensearch.distribution.integ-test-zip:opensearch:$v:zip" "$CACHE" || return 1
}

select_os_version() {
  local v inst
  inst=$(os_installed_version || true)
  if [[ -n $inst && ( -z ${SB_OS_VERSION:-} || ${SB_OS_VERSION:-} == "$inst" ) ]]; then
    OS_VERSION=$inst
    return 0
  fi
  ensure_maven
  for v in $OS_VERSION_CANDIDATES; do
    if [[ -f $(knn_zip "$v") && -f $(painless_jar "$v") && -f $(os_zip "$v") ]]; then
      OS_VERSION=$v; log "OpenSearch $v artifacts found in cache"; return 0
    fi
    log "trying OpenSearch $v from Maven Central (server zip, lang-painless, opensearch-knn $v.0)"
    if fetch_os_artifacts "$v"; then
      OS_VERSION=$v; return 0
    fi
    log "  $v: not (completely) available"
  done
  die "none of the OpenSearch versions [$OS_VERSION_CANDIDATES] is fully available from Maven Central (see $LOGS/mvn.log)"
}

# The lang-painless module is not on Maven Central as a plugin zip; assemble it from its jars.
assemble_painless_module() {
  local v=$1 dest=$2 deps=$CACHE/lang-painless-$1-deps pomdir cls
  if [[ ! -f $deps/.complete ]]; then
    log "resolving lang-painless $v runtime dependencies"
    pomdir=$CACHE/lang-painless-$v-pom
    rm -rf "$deps"; mkdir -p "$pomdir" "$deps"
    cat >"$pomdir/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.shadowbench</groupId>
  <artifactId>lang-painless-deps</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>lang-painless</artifactId>
      <version>$v</version>
      <exclusions>
        <!-- the server/core jars are already in lib/; a second copy fails the jar-hell check -->
        <exclusion><groupId>org.opensearch</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
  </dependencies>
</project>
EOF
    local out rc=0
    out=$(cd "$pomdir" && JAVA_HOME=$JAVA_HOME_FOUND mvn -B -q -Dstyle.color=never \
          "$MVN_DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$deps" 2>&1) || rc=$?
    # shellcheck disable=SC2001 # strip ANSI colour codes that Maven prints even with -q
    out=$(sed 's/\x1b\[[0-9;]*m//g' <<<"$out")
    printf '%s\n' "== mvn copy-dependencies lang-painless $v (rc=$rc)" "$out" >>"$LOGS/mvn.log"
    [[ $rc -eq 0 ]] || mvn_fail "$out" "could not resolve lang-painless $v dependencies from Maven Central"
    [[ -f $deps/lang-painless-$v.jar && -f $deps/opensearch-scripting-painless-spi-$v.jar ]] ||
      die "lang-painless dependency set is incomplete: $(ls "$deps")"
    local j
    for j in "$deps"/lucene-*.jar "$deps"/opensearch-[0-9]*.jar "$deps"/opensearch-core-*.jar; do
      [[ -e $j ]] && die "lang-painless dependency set unexpectedly contains $(basename "$j") (jar hell)"
    done
    touch "$deps/.complete"
  fi
  cls=$(unzip -Z1 "$deps/lang-painless-$v.jar" | grep -E '^org/opensearch/.*/PainlessPlugin\.class$' | head -n 1 || true)
  [[ -n $cls ]] || die "PainlessPlugin class not found in lang-painless-$v.jar"
  cls=${cls%.class}; cls=${cls//\//.}
  mkdir -p "$dest"
  cp "$deps"/*.jar "$dest/"
  cat >"$dest/plugin-descriptor.properties" <<EOF
description=An easy, safe and fast scripting language for OpenSearch
version=$v
name=lang-painless
classname=$cls
java.version=11
opensearch.version=$v
extended.plugins=
has.native.controller=false
custom.foldername=
EOF
  cat >"$dest/plugin-security.policy" <<'EOF'
grant {
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
EOF
}

install_opensearch() {
  local v=$1 tmp home
  log "assembling OpenSearch $v + lang-painless + k-NN under $OS_HOME"
  tmp=$BK/.opensearch-install.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  unzip -q "$(os_zip "$v")" -d "$tmp"
  home=$tmp/opensearch-$v
  [[ -x $home/bin/opensearch ]] || die "unexpected layout of $(os_zip "$v")"
  assemble_painless_module "$v" "$home/modules/lang-painless"
  if ! OPENSEARCH_JAVA_HOME=$JAVA_HOME_FOUND "$home/bin/opensearch-plugin" install --batch \
      "file://$(knn_zip "$v")" >"$LOGS/opensearch-plugin-install.log" 2>&1; then
    show_tail "$LOGS/opensearch-plugin-install.log"
    rm -rf "$tmp"
    die "installing opensearch-knn failed (see $LOGS/opensearch-plugin-install.log)"
  fi
  echo "$v" >"$home/.sb-version"
  rm -rf "$OS_HOME"
  mv "$home" "$OS_HOME"
  rm -rf "$tmp"
}

ensure_os_user() {
  if ! id -u "$OS_USER" >/dev/null 2>&1; then
    log "creating system user '$OS_USER'"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$OS_USER" || die "useradd $OS_USER failed"
  fi
}

configure_opensearch() {
  mkdir -p "$OS_DATA" "$OS_LOG_DIR" "$OS_RUN/tmp"
  chown -R "$OS_USER:$OS_USER" "$OS_HOME" "$OS_DATA" "$OS_LOG_DIR" "$OS_RUN"
  FILE_CHANGED=0
  write_file "$OS_HOME/config/opensearch.yml" "$OS_USER:$OS_USER" 644 <<EOF
# Written by scripts/backends.sh (rewritten on every 'up').
cluster.name: shadowbench
node.name: shadowbench-1
path.data: "$OS_DATA"
path.logs: "$OS_LOG_DIR"
network.host: 127.0.0.1
http.port: $OS_PORT
transport.port: $OS_TRANSPORT_PORT
discovery.type: single-node
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  write_file "$OS_HOME/config/jvm.options.d/shadowbench.options" "$OS_USER:$OS_USER" 644 <<EOF
-Xms$OS_HEAP
-Xmx$OS_HEAP
EOF
  OS_CONF_CHANGED=$FILE_CHANGED
}

# PID of our OpenSearch (pid file, or a process whose cmdline names our home), or nothing.
os_pid() {
  local pid p
  if [[ -f $OS_PIDFILE ]]; then
    pid=$(cat "$OS_PIDFILE" 2>/dev/null || true)
    if [[ -n $pid ]] && { tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qxF -- "-Dopensearch.path.home=$OS_HOME"; then
      echo "$pid"; return 0
    fi
  fi
  for p in /proc/[0-9]*; do
    if { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qxF -- "-Dopensearch.path.home=$OS_HOME"; then
      echo "${p#/proc/}"; return 0
    fi
  done
  return 1
}

start_opensearch() {
  local pid
  if pid=$(os_pid); then
    if [[ $OS_CONF_CHANGED -eq 1 ]]; then
      log "OpenSearch settings changed; restarting"
      stop_opensearch
    else
      log "OpenSearch already running (pid $pid)"
      return 0
    fi
  fi
  if port_open "$OS_PORT"; then
    die "port 127.0.0.1:$OS_PORT is already in use by another process (set SB_OS_PORT to use another port)"
  fi
  if port_open "$OS_TRANSPORT_PORT"; then
    die "port 127.0.0.1:$OS_TRANSPORT_PORT is already in use by another process (set SB_OS_TRANSPORT_PORT)"
  fi
  local mmc
  mmc=$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0)
  if (( mmc < 262144 )); then
    warn "vm.max_map_count=$mmc (< 262144). Fine for a single-node loopback benchmark; raise it with 'sysctl -w vm.max_map_count=262144' for large indices"
  fi
  rm -f "$OS_PIDFILE"
  log "starting OpenSearch $OS_VERSION on 127.0.0.1:$OS_PORT (heap $OS_HEAP, user $OS_USER, log $OS_LOG_DIR)"
  (
    cd "$OS_HOME"
    ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    exec setsid nohup setpriv --reuid="$OS_USER" --regid="$OS_USER" --init-groups \
      env -i PATH="$SAFE_PATH" LANG=C.UTF-8 HOME="$OS_HOME" \
      OPENSEARCH_JAVA_HOME="$JAVA_HOME_FOUND" JAVA_HOME="$JAVA_HOME_FOUND" \
      OPENSEARCH_PATH_CONF="$OS_HOME/config" OPENSEARCH_TMPDIR="$OS_RUN/tmp" \
      "$OS_HOME/bin/opensearch" -p "$OS_PIDFILE"
  ) </dev/null >>"$OS_OUT" 2>&1 9>&- &
  OS_LAUNCHER_PID=$!
}

stop_opensearch() {
  local pid i
  if ! pid=$(os_pid); then
    log "OpenSearch not running"
    rm -f "$OS_PIDFILE"
    return 0
  fi
  log "stopping OpenSearch (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 120; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "OpenSearch did not stop within 60s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$OS_PIDFILE"
}

os_get() { curl -sS -f -m "${2:-10}" "$OS_URL$1"; }

json_field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" | head -n 1; }

# Wait for both backends; OpenSearch is the slow one.
wait_opensearch() {
  local start now health elapsed last=-10
  start=$(date +%s)
  while :; do
    if health=$(os_get "/_cluster/health?wait_for_status=yellow&timeout=2s" 5 2>/dev/null) &&
       [[ $health =~ \"status\":\"(green|yellow)\" ]]; then
      break
    fi
    now=$(date +%s); elapsed=$((now - start))
    if ! os_pid >/dev/null && ! kill -0 "${OS_LAUNCHER_PID:-0}" 2>/dev/null; then
      show_tail "$OS_OUT" 40
      die "OpenSearch exited during startup (logs: $OS_OUT, $OS_LOG_DIR/shadowbench.log)"
    fi
    if (( elapsed >= WAIT_TIMEOUT )); then
      show_tail "$OS_OUT" 40
      die "OpenSearch not healthy after ${WAIT_TIMEOUT}s (logs: $OS_OUT)"
    fi
    if (( elapsed - last >= 10 )); then
      log "waiting for OpenSearch cluster health yellow... ${elapsed}s/${WAIT_TIMEOUT}s"
      last=$elapsed
    fi
    sleep 2
  done
  log "OpenSearch cluster health: $(printf '%s' "$health" | json_field status)"
  local plugins
  plugins=$(os_get "/_cat/plugins?h=component,version") || die "GET _cat/plugins failed"
  grep -q '^opensearch-knn ' <<<"$plugins" || die "opensearch-knn is not loaded (_cat/plugins: $plugins)"
  KNN_VERSION=$(awk '$1 == "opensearch-knn" {print $2}' <<<"$plugins")
  OS_RUNNING_VERSION=$(os_get / | json_field number)
}

# ---------------------------------------------------------------------------------------------
# toxiproxy (fault injection in front of both stores)
# ---------------------------------------------------------------------------------------------
find_go() {
  local g
  for g in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
    if [[ -n $g && -x $g ]]; then echo "$g"; return 0; fi
  done
  return 1
}

# Builds the pinned server into $TPX_HOME/bin (the Go module proxy is all it needs).
ensure_toxiproxy() {
  local go tmp
  if [[ -x $TPX_BIN ]]; then
    log "toxiproxy $TPX_VERSION already installed ($TPX_BIN)"
    return 0
  fi
  go=$(find_go) || die "toxiproxy needs Go to build (go install $TPX_MODULE@$TPX_VERSION); install Go or put it on PATH"
  log "building toxiproxy $TPX_VERSION with $($go version | cut -d' ' -f3) (go install from the module proxy)"
  tmp=$TPX_HOME/.gobin.$$
  rm -rf "$tmp"; mkdir -p "$tmp" "$CACHE/go"
  if ! (cd "$CACHE" && GOBIN=$tmp GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build \
        GOFLAGS=-modcacherw "$go" install "$TPX_MODULE@$TPX_VERSION") >"$LOGS/toxiproxy-build.log" 2>&1; then
    show_tail "$LOGS/toxiproxy-build.log"
    rm -rf "$tmp"
    die "building toxiproxy failed (see $LOGS/toxiproxy-build.log)"
  fi
  [[ -x $tmp/server ]] || die "go install finished but $tmp/server is missing"
  mkdir -p "$(dirname "$TPX_BIN")"
  mv -f "$tmp/server" "$TPX_BIN"
  rm -rf "$tmp"
  chmod 755 "$TPX_HOME" "$(dirname "$TPX_BIN")" "$TPX_BIN"
  log "toxiproxy installed: $TPX_BIN"
}

tpx_pid() {
  local pid p
  if [[ -f $TPX_PIDFILE ]]; then
    pid=$(cat "$TPX_PIDFILE" 2>/dev/null || true)
    if [[ -n $pid ]] && { tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qxF -- "$TPX_BIN"; then
      echo "$pid"; return 0
    fi
  fi
  for p in /proc/[0-9]*; do
    if { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qxF -- "$TPX_BIN"; then
      echo "${p#/proc/}"; return 0
    fi
  done
  return 1
}

tpx_api() { curl -sS -f -m "${3:-5}" -X "$1" "$TPX_URL$2" "${@:4}"; }

start_toxiproxy() {
  local pid i
  mkdir -p "$TPX_RUN"
  if pid=$(tpx_pid); then
    log "toxiproxy already running (pid $pid)"
  else
    if port_open "$TPX_PORT"; then
      die "port 127.0.0.1:$TPX_PORT is already in use by another process (set SB_TOXIPROXY_PORT)"
    fi
    log "starting toxiproxy $TPX_VERSION on 127.0.0.1:$TPX_PORT (user $TPX_USER, log $TPX_LOG)"
    (
      exec setsid nohup setpriv --reuid="$TPX_USER" --regid="$(id -g "$TPX_USER")" --clear-groups \
        env -i PATH="$SAFE_PATH" HOME=/ "$TPX_BIN" -host 127.0.0.1 -port "$TPX_PORT"
    ) </dev/null >>"$TPX_LOG" 2>&1 9>&- &
    echo $! >"$TPX_PIDFILE"
  fi
  for ((i = 0; i < 50; i++)); do
    tpx_api GET /version >/dev/null 2>&1 && break
    if ! tpx_pid >/dev/null; then
      show_tail "$TPX_LOG" 20
      die "toxiproxy exited during startup (log: $TPX_LOG)"
    fi
    sleep 0.2
  done
  tpx_api GET /version >/dev/null || { show_tail "$TPX_LOG" 20; die "toxiproxy API not answering on $TPX_URL (log: $TPX_LOG)"; }
  # A `go install` build reports its version as "git"; the pin is what was built.
  TPX_RUNNING_VERSION=$TPX_VERSION
  # /populate creates the two proxies, or leaves them be when listen and upstream already match.
  tpx_api POST /populate 10 -H 'Content-Type: application/json' --data-binary @- >/dev/null <<EOF ||
[{"name":"pgvector","listen":"127.0.0.1:$TPX_PG_PORT","upstream":"127.0.0.1:$PG_PORT","enabled":true},
 {"name":"opensearch","listen":"127.0.0.1:$TPX_OS_PORT","upstream":"127.0.0.1:$OS_PORT","enabled":true}]
EOF
    die "toxiproxy: creating the proxies pgvector (127.0.0.1:$TPX_PG_PORT) and opensearch (127.0.0.1:$TPX_OS_PORT) failed (ports in use? log: $TPX_LOG)"
  # Prove the path works end to end, not only that the proxies exist.
  PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -tA "$PROXIED_PG_DSN" -c 'SELECT 1' >/dev/null 2>&1 ||
    die "toxiproxy: pgvector is not reachable through $PROXIED_PG_DSN (is the proxy disabled or poisoned? '$0 status')"
  curl -sS -f -m 10 "$PROXIED_OS_URL/" >/dev/null 2>&1 ||
    die "toxiproxy: OpenSearch is not reachable through $PROXIED_OS_URL (is the proxy disabled or poisoned? '$0 status')"
}

stop_toxiproxy() {
  local pid
  if pid=$(tpx_pid); then
    log "stopping toxiproxy (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  else
    log "toxiproxy not running"
  fi
  rm -f "$TPX_PIDFILE"
}

# One line per proxy: name listen -> upstream, enabled, number of toxics.
tpx_proxies_summary() {
  local json
  json=$(tpx_api GET /proxies) || return 1
  # Fields of each proxy object, in the order toxiproxy writes them; toxics are counted by "type".
  sed 's/},"/}\n"/g' <<<"$json" | while IFS= read -r line; do
    local name listen upstream enabled ntox
    name=$(sed -n 's/.*"name":"\([^"]*\)","listen".*/\1/p' <<<"$line")
    [[ -n $name ]] || continue
    listen=$(json_field listen <<<"$line")
    upstream=$(json_field upstream <<<"$line")
    enabled=$(sed -n 's/.*"enabled":\(true\|false\).*/\1/p' <<<"$line")
    ntox=$(grep -o '"type":' <<<"$line" | wc -l)
    echo "  proxy $name $listen -> $upstream enabled=$enabled toxics=$ntox"
  done
}

# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------
print_env() {
  echo "ML_PGVECTOR_DSN=$PG_DSN"
  echo "ML_OPENSEARCH_HOSTS=$OS_URL"
  echo "SB_TOXIPROXY_URL=$TPX_URL"
  echo "SB_PROXIED_PGVECTOR_DSN=$PROXIED_PG_DSN"
  echo "SB_PROXIED_OPENSEARCH_HOSTS=$PROXIED_OS_URL"
  echo "SB_BACKENDS_DIR=$BK"
  echo "SB_BACKENDS_SCRIPT=$SCRIPT_PATH"
}

cmd_up() {
  local t0 pg_version
  t0=$(date +%s)
  take_lock
  ensure_dirs
  ensure_base_tools
  ensure_java
  log "Java: $JAVA_HOME_FOUND (Java $(java_major "$JAVA_HOME_FOUND"))"

  # --- installs ---
  ensure_postgres_packages
  ensure_os_user
  check_access "$PG_OS_USER" "$BK"
  check_access "$OS_USER" "$BK"
  ensure_pgvector
  ensure_toxiproxy
  select_os_version
  if [[ $(os_installed_version || true) != "$OS_VERSION" ]]; then
    if os_pid >/dev/null; then stop_opensearch; fi
    install_opensearch "$OS_VERSION"
  fi

  # --- start ---
  configure_postgres
  start_postgres
  configure_opensearch
  start_opensearch      # in the background; PostgreSQL setup runs meanwhile
  setup_database
  verify_postgres
  pg_version=$(psql_app -tA -c 'SHOW server_version')
  wait_opensearch
  start_toxiproxy

  log "ready in $(( $(date +%s) - t0 ))s"
  log "PostgreSQL $pg_version + pgvector $PGVECTOR_RUNNING_VERSION on 127.0.0.1:$PG_PORT (data $PG_DATA, log $PG_LOG)"
  log "OpenSearch $OS_RUNNING_VERSION + k-NN $KNN_VERSION on 127.0.0.1:$OS_PORT (data $OS_DATA, logs $OS_LOG_DIR, pid $(os_pid || echo '?'))"
  log "toxiproxy $TPX_RUNNING_VERSION API on $TPX_URL: pgvector via 127.0.0.1:$TPX_PG_PORT, opensearch via 127.0.0.1:$TPX_OS_PORT (pid $(tpx_pid || echo '?'))"
  print_env
}

cmd_down() {
  local purge=${1:-}
  take_lock
  stop_toxiproxy
  stop_opensearch
  stop_postgres
  if [[ $purge == --purge ]]; then
    log "purging $BK (keeping $CACHE)"
    rm -rf "$PG_DATA" "$OS_DATA" "$OS_HOME" "$TPX_HOME" "$LOGS" "$RUN"
  fi
  log "down"
}

cmd_status() {
  local rc=0 pgv vec osv knn health root plugins pid
  if [[ -x $PG_BIN/psql ]] && pgv=$(psql_app -tA -c 'SHOW server_version' 2>/dev/null); then
    vec=$(psql_app -tA -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'" 2>/dev/null || true)
    echo "postgresql: up    version=$pgv pgvector=${vec:-not-installed} addr=127.0.0.1:$PG_PORT"
  else
    echo "postgresql: DOWN  addr=127.0.0.1:$PG_PORT (data $PG_DATA)"
    rc=1
  fi
  if command -v curl >/dev/null 2>&1 && root=$(os_get / 5 2>/dev/null); then
    osv=$(json_field number <<<"$root")
    plugins=$(os_get "/_cat/plugins?h=component,version" 5 2>/dev/null || true)
    knn=$(awk '$1 == "opensearch-knn" {print $2}' <<<"$plugins")
    health=$(os_get "/_cluster/health" 5 2>/dev/null | json_field status || true)
    pid=$(os_pid || true)
    echo "opensearch: up    version=$osv k-NN=${knn:-MISSING} health=${health:-?} addr=$OS_URL pid=${pid:-?}"
    [[ -n $knn ]] || rc=1
  else
    echo "opensearch: DOWN  addr=$OS_URL (home $OS_HOME)"
    rc=1
  fi
  if command -v curl >/dev/null 2>&1 && tpx_api GET /version >/dev/null 2>&1; then
    echo "toxiproxy:  up    version=$TPX_VERSION api=$TPX_URL pid=$(tpx_pid || echo '?')"
    tpx_proxies_summary || true
  else
    echo "toxiproxy:  DOWN  api=$TPX_URL (binary $TPX_BIN$([[ -x $TPX_BIN ]] || echo ', not installed'))"
    rc=1
  fi
  return "$rc"
}

usage() {
  sed -n '2,36p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    up) need_root up "$@"; cmd_up ;;
    down)
      case ${1:-} in ''|--purge) ;; *) die "unknown option for down: $1" ;; esac
      need_root down "$@"; cmd_down "${1:-}" ;;
    purge) need_root purge "$@"; cmd_down --purge ;;
    # Outage drills for the integration tests: stop only OpenSearch, or freeze/thaw it
    # (SIGSTOP/SIGCONT: the process stays, requests hang until they time out).
    stop-opensearch) need_root stop-opensearch "$@"; take_lock; stop_opensearch ;;
    freeze-opensearch) kill -STOP "$(os_pid)" && log "OpenSearch frozen" ;;
    thaw-opensearch) kill -CONT "$(os_pid)" && log "OpenSearch thawed" ;;
    status) cmd_status ;;
    env) print_env | sed 's/^/export /' ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
