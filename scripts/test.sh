#!/usr/bin/env bash
# Run the project's checks and tests against a RabbitMQ 4 broker (streams + management).
# Usage: scripts/test.sh [extra cargo test args...]   e.g. scripts/test.sh -- --nocapture
# The broker comes from scripts/broker.sh: our own chroot node on this machine, or the
# broker named by RABBITMQ_URL / RABBITMQ_STREAM_HOST / RABBITMQ_STREAM_PORT if it answers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# CI logs are plain text.
[[ -z "${CI:-}" ]] || export CARGO_TERM_COLOR=never

step "broker: start (or reuse)"
eval "$(scripts/broker.sh start)"
# tests/broker.rs fails instead of skipping when the broker is missing
export PUBSUB_REQUIRE_BROKER=1

step "broker: check"
# shellcheck disable=SC2016  # $1/$2 expand in the inner bash
port_open() { timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }
amqp_hostport="${RABBITMQ_URL#*://}"; amqp_hostport="${amqp_hostport%%/*}"; amqp_hostport="${amqp_hostport##*@}"
[[ "$amqp_hostport" == *:* ]] || amqp_hostport="$amqp_hostport:5672"
port_open "${amqp_hostport%%:*}" "${amqp_hostport##*:}" || { echo "AMQP port $amqp_hostport does not answer" >&2; exit 1; }
port_open "$RABBITMQ_STREAM_HOST" "$RABBITMQ_STREAM_PORT" ||
  { echo "stream port $RABBITMQ_STREAM_HOST:$RABBITMQ_STREAM_PORT does not answer" >&2; exit 1; }
if [[ -n "${PUBSUB_RABBITMQCTL:-}" ]]; then
  # shellcheck disable=SC2086  # PUBSUB_RABBITMQCTL is a command prefix, split on purpose
  $PUBSUB_RABBITMQCTL status >/dev/null || { echo "'$PUBSUB_RABBITMQCTL status' failed" >&2; exit 1; }
  ctl_note="rabbitmqctl OK"
else
  ctl_note="no PUBSUB_RABBITMQCTL: fault tests needing rabbitmqctl cannot run"
fi
echo "broker OK: AMQP $amqp_hostport, stream $RABBITMQ_STREAM_HOST:$RABBITMQ_STREAM_PORT, $ctl_note"

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test --workspace --all-features $*"
cargo test --workspace --all-features "$@"
