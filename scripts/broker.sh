#!/usr/bin/env bash
# Provision and run the RabbitMQ 4.0.5 broker the tests need (streams + management),
# from a Debian trixie root made with debootstrap and kept in a cache directory outside
# the repository. See shared/BROKER.md for why and for the verified steps.
#
# Usage: scripts/broker.sh [start|stop|kill|status|env|ctl ARGS...]
#   start   provision if needed, start the node, print `export` lines (default)
#   stop    stop the node and unmount /dev and /proc inside the root
#   kill    SIGKILL the node's processes (what an OOM kill or a crash does), wait until
#           they are gone; `start` brings it back (the fault tests use both)
#   status  short rabbitmqctl status summary
#   env     print the `export` lines the tests read
#   ctl     run rabbitmqctl inside the root, e.g. `scripts/broker.sh ctl list_queues`
#
# Typical use: eval "$(scripts/broker.sh start)"   (progress goes to stderr)
# A broker already given by RABBITMQ_URL (or RABBITMQ_HOST/RABBITMQ_PORT) and
# RABBITMQ_STREAM_HOST/RABBITMQ_STREAM_PORT is used as is when both its ports answer.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="${PUBSUB_BROKER_ROOT:-/var/cache/pubsub-broker/trixie-rabbitmq}"
MARKER="$ROOT/.pubsub-provisioned"
MIRROR="${PUBSUB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TIMEOUT="${PUBSUB_BROKER_TIMEOUT:-120}"
NODE=rabbit4@localhost
AMQP_PORT=5673 STREAM_PORT=5553 MGMT_PORT=15673 DIST_PORT=25673

log() { echo "broker.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# port_open HOST PORT: true if a TCP connection succeeds within 2 s.
# shellcheck disable=SC2016  # $1/$2 expand in the inner bash
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# Run rabbitmqctl inside the root against our node.
ctl() {
  chroot "$ROOT" /bin/bash -c \
    'cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq exec rabbitmqctl -n '"$NODE"' "$@"' rabbitmqctl "$@"
}

# emit NAME VALUE: one single-quoted `export` line for eval.
emit() { printf "export %s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; }

own_env() {
  emit RABBITMQ_URL "amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
  emit RABBITMQ_STREAM_HOST 127.0.0.1
  emit RABBITMQ_STREAM_PORT "$STREAM_PORT"
  emit RABBITMQ_MANAGEMENT_URL "http://127.0.0.1:$MGMT_PORT"
  emit PUBSUB_RABBITMQCTL "$SELF ctl"
  emit PUBSUB_BROKER_SCRIPT "$SELF"
}

# external_env: if the environment names a broker (not ours) whose AMQP and stream ports
# both answer, print its export lines and succeed. A 3.10 node on 5672 without the stream
# plugin fails the stream check and is ignored.
external_env() {
  [[ -n "${RABBITMQ_URL:-}${RABBITMQ_HOST:-}${RABBITMQ_PORT:-}${RABBITMQ_STREAM_HOST:-}${RABBITMQ_STREAM_PORT:-}" ]] || return 1
  local url host port shost sport rest
  url="${RABBITMQ_URL:-}"
  if [[ -n "$url" ]]; then                      # amqp://user:pass@host:port/vhost
    rest="${url#*://}"; rest="${rest%%/*}"; rest="${rest##*@}"
    host="${rest%%:*}"; port="${rest#"$host"}"; port="${port#:}"
    [[ -n "$port" ]] || { [[ "$url" == amqps://* ]] && port=5671 || port=5672; }
  else
    host="${RABBITMQ_HOST:-127.0.0.1}"; port="${RABBITMQ_PORT:-5672}"
    url="amqp://guest:guest@$host:$port/%2f"
  fi
  host="${host:-127.0.0.1}"
  shost="${RABBITMQ_STREAM_HOST:-$host}"; sport="${RABBITMQ_STREAM_PORT:-5552}"
  [[ "$port" == "$AMQP_PORT" && "$sport" == "$STREAM_PORT" ]] && return 1  # ours
  if ! { port_open "$host" "$port" && port_open "$shost" "$sport"; }; then
    log "no broker answers at $host:$port (stream $shost:$sport); using our own"
    return 1
  fi
  log "using the broker at $host:$port (stream $shost:$sport) from the environment"
  emit RABBITMQ_URL "$url"
  emit RABBITMQ_STREAM_HOST "$shost"
  emit RABBITMQ_STREAM_PORT "$sport"
  emit RABBITMQ_MANAGEMENT_URL "${RABBITMQ_MANAGEMENT_URL:-http://$host:15672}"
  [[ -z "${PUBSUB_RABBITMQCTL:-}" ]] || emit PUBSUB_RABBITMQCTL "$PUBSUB_RABBITMQCTL"
}

docker_help() {
  cat >&2 <<'EOF'
broker.sh: cannot provision a broker on this machine (needs root and a Debian-like
system with apt-get). Start RabbitMQ 4 with Docker instead:

  docker run -d --name rabbitmq -p 5672:5672 -p 5552:5552 -p 15672:15672 \
    -e RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-rabbitmq_stream advertised_host localhost' \
    rabbitmq:4-management
  docker exec rabbitmq rabbitmq-plugins enable rabbitmq_stream

(advertised_host: stream clients reconnect to the host the node advertises, which is
otherwise the container's name.) Then point the tests at it and run this script (or
scripts/test.sh) again:

  export RABBITMQ_URL='amqp://guest:guest@127.0.0.1:5672/%2f'
  export RABBITMQ_STREAM_HOST=127.0.0.1 RABBITMQ_STREAM_PORT=5552
  export RABBITMQ_MANAGEMENT_URL=http://127.0.0.1:15672
  export PUBSUB_RABBITMQCTL='docker exec rabbitmq rabbitmqctl'
EOF
  exit 1
}

# unmount_under DIR: unmount everything mounted at or below DIR (deepest first).
unmount_under() {
  local m
  findmnt -rn -o TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1' | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
}

# provision: debootstrap into ROOT.tmp, write the marker last, then move it into
# place, so an interrupted run never leaves a half-built ROOT that looks finished.
provision() {
  [[ -f "$MARKER" ]] && return 0
  if ! command -v apt-get >/dev/null || [[ ! -f /etc/debian_version ]]; then docker_help; fi
  local tmp="$ROOT.tmp" t0=$SECONDS
  log "provisioning RabbitMQ 4 (Debian trixie) in $ROOT; takes a minute or two"
  if ! command -v debootstrap >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq debootstrap >/dev/null
  fi
  for d in "$tmp" "$ROOT"; do      # leftovers of an interrupted run (mind the mounts)
    [[ -e "$d" ]] || continue
    unmount_under "$d"; rm -rf --one-file-system "$d"
  done
  mkdir -p "$(dirname "$ROOT")"
  debootstrap --variant=minbase --include=rabbitmq-server trixie "$tmp" "$MIRROR" \
    >"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; die "debootstrap failed (log: $tmp.log)"; }
  unmount_under "$tmp"
  chroot "$tmp" dpkg-query -W rabbitmq-server >"$tmp/.pubsub-provisioned"   # marker last
  mv "$tmp" "$ROOT"; rm -f "$tmp.log"
  log "provisioned in $((SECONDS - t0)) s: $(tr '\n\t' '; ' <"$MARKER")"
}

# configure: (re)write the node's config; ports chosen so it can run beside a 3.10 node.
configure() {
  local etc="$ROOT/etc/rabbitmq"
  mkdir -p "$etc"
  printf '%s\n' "listeners.tcp.default = $AMQP_PORT" "stream.listeners.tcp.1 = $STREAM_PORT" \
    "management.tcp.port = $MGMT_PORT" "loopback_users = none" >"$etc/rabbitmq.conf"
  echo '[rabbitmq_stream,rabbitmq_management].' >"$etc/enabled_plugins"
  printf '%s\n' "NODENAME=$NODE" "DIST_PORT=$DIST_PORT" >"$etc/rabbitmq-env.conf"
}

mount_fs() {  # the node crashes at start without /proc (vm_memory_monitor)
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
}

node_up() { port_open 127.0.0.1 "$AMQP_PORT" && port_open 127.0.0.1 "$STREAM_PORT" && ctl status >/dev/null 2>&1; }

start() {
  external_env && return 0
  [[ "$(id -u)" == 0 ]] || docker_help   # chroot and mount need root
  mkdir -p "$(dirname "$ROOT")"
  exec 9>"$(dirname "$ROOT")/.lock"; flock 9   # one start/provision at a time
  provision
  mount_fs
  if node_up; then
    log "node $NODE already running"
  else
    local t0=$SECONDS
    configure
    log "starting $NODE (AMQP $AMQP_PORT, stream $STREAM_PORT, management $MGMT_PORT)"
    # Fully detached: new session, no inherited stdio or lock fd, so `$(...)` returns.
    setsid chroot "$ROOT" /bin/bash -c 'cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq exec rabbitmq-server -detached' \
      </dev/null >>"$ROOT/var/log/pubsub-start.log" 2>&1 9>&-
    until node_up; do
      if (( SECONDS - t0 >= TIMEOUT )); then
        tail -n 40 "$ROOT/var/log/pubsub-start.log" "$ROOT/var/log/rabbitmq/$NODE.log" >&2 || true
        die "node did not come up within $TIMEOUT s"
      fi
      sleep 1
    done
    log "node up in $((SECONDS - t0)) s"
  fi
  exec 9>&-
  own_env
}

# node_pids: the node's OS processes (those rooted in ROOT), leaving out epmd, which
# may outlive the node and serve other nodes on the machine.
node_pids() {
  local p root
  root="$(readlink -f "$ROOT")"
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/root" 2>/dev/null)" == "$root" && "$(cat "$p/comm" 2>/dev/null)" != epmd ]] &&
      echo "${p#/proc/}"
  done
  return 0
}

stop() {
  [[ -f "$MARKER" ]] || { log "no broker provisioned in $ROOT"; return 0; }
  if ctl status >/dev/null 2>&1; then
    log "stopping $NODE"
    ctl stop >&2
  else
    log "node $NODE not running"
  fi
  local i
  for ((i = 0; i < 30; i++)); do [[ -n "$(node_pids)" ]] || break; sleep 1; done
  for m in dev proc; do
    mountpoint -q "$ROOT/$m" && { umount "$ROOT/$m" 2>/dev/null || umount -l "$ROOT/$m"; }
  done
  return 0
}

kill_node() {
  [[ -f "$MARKER" ]] || die "no broker provisioned in $ROOT"
  local pids i
  pids="$(node_pids)"
  [[ -n "$pids" ]] || { log "node $NODE not running"; return 0; }
  # shellcheck disable=SC2086  # one pid per word
  kill -KILL $pids 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do [[ -n "$(node_pids)" ]] || break; sleep 0.1; done
  [[ -z "$(node_pids)" ]] || die "the node's processes outlived SIGKILL: $(node_pids | tr '\n' ' ')"
  log "killed $NODE (pids $(tr '\n' ' ' <<<"$pids"))"
}

status() {
  [[ -f "$MARKER" ]] || die "no broker provisioned in $ROOT"
  local out
  out="$(ctl status 2>&1)" || { echo "$out" >&2; die "node $NODE is not running"; }
  grep -E '^(Status of node|RabbitMQ version|Erlang configuration|Uptime)|^Interface:' <<<"$out"
}

cmd="${1:-start}"; [[ $# -gt 0 ]] && shift
case "$cmd" in
  start) start ;;
  stop) stop ;;
  kill) kill_node ;;
  status) status ;;
  env) external_env || own_env ;;
  ctl) [[ -f "$MARKER" ]] || die "no broker provisioned in $ROOT"; ctl "$@" ;;
  *) die "unknown command '$cmd' (start|stop|kill|status|env|ctl ARGS...)" ;;
esac
