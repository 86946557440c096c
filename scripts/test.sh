#!/usr/bin/env bash
# Run the project's checks and tests against a RabbitMQ 4 broker (streams + management).
# Usage: scripts/test.sh [extra cargo test args...]   e.g. scripts/test.sh -- --nocapture
# The broker comes from scripts/broker.sh: our own chroot node on this machine, or the
# broker named by RABBITMQ_URL / RABBITMQ_STREAM_HOST / RABBITMQ_STREAM_PORT if it answers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# CI logs are plain text, and a one-off build needs no incremental cache (gigabytes on disk).
[[ -z "${CI:-}" ]] || export CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0

step "disk: free space where the build goes"
# a clean build of the workspace's tests and clippy takes about 4.2 GB; running out fails rustc mid-way
df -h . | tail -n 1
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
(( free_kb > 6 * 1024 * 1024 )) || echo "warning: less than 6 GB free: the build may fail with 'No space left on device'" >&2

step "broker: start (or reuse)"
broker_env=$(scripts/broker.sh start) || { echo "scripts/broker.sh start failed (see above)" >&2; exit 1; }
eval "$broker_env"
# the broker tests fail instead of skipping when the broker is missing (tests/support/broker.rs)
export PUBSUB_REQUIRE_BROKER=1

step "broker: check"
# shellcheck disable=SC2016  # $1/$2 expand in the inner bash
port_open() { timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }
amqp_hostport="${RABBITMQ_URL#*://}"; amqp_hostport="${amqp_hostport%%/*}"; amqp_hostport="${amqp_hostport##*@}"
if [[ "$amqp_hostport" != *:* ]]; then
  [[ "$RABBITMQ_URL" == amqps* ]] && amqp_hostport="$amqp_hostport:5671" || amqp_hostport="$amqp_hostport:5672"
fi
port_open "${amqp_hostport%%:*}" "${amqp_hostport##*:}" || { echo "AMQP port $amqp_hostport does not answer" >&2; exit 1; }
port_open "$RABBITMQ_STREAM_HOST" "$RABBITMQ_STREAM_PORT" ||
  { echo "stream port $RABBITMQ_STREAM_HOST:$RABBITMQ_STREAM_PORT does not answer" >&2; exit 1; }
if [[ -n "${PUBSUB_RABBITMQCTL:-}" ]]; then
  # shellcheck disable=SC2086  # PUBSUB_RABBITMQCTL is a command prefix, split on purpose
  $PUBSUB_RABBITMQCTL status >/dev/null || { echo "'$PUBSUB_RABBITMQCTL status' failed" >&2; exit 1; }
  # a fault test killed mid-way (a timeout, ^C) cannot restore what it changed: heal it
  # shellcheck disable=SC2086
  $PUBSUB_RABBITMQCTL -q start_app >/dev/null && $PUBSUB_RABBITMQCTL -q set_vm_memory_high_watermark 0.6 >/dev/null ||
    { echo "could not reset the broker's state" >&2; exit 1; }
  # remove the queues and exchanges earlier test runs left (test names only), in one call
  # shellcheck disable=SC2086,SC2016
  removed=$($PUBSUB_RABBITMQCTL -q eval '
    Test = fun(N) -> lists:any(fun(P) -> binary:longest_common_prefix([N, P]) =:= byte_size(P) end,
                               [<<"conf">>, <<"interop">>, <<"faults-">>, <<"bench">>]) end,
    Qs = [Q || Q <- rabbit_amqqueue:list(), Test(element(4, amqqueue:get_name(Q)))],
    [rabbit_amqqueue:delete(Q, false, false, <<"pubsub tests">>) || Q <- Qs],
    Xs = [X || X <- rabbit_exchange:list(), Test(element(4, element(2, X)))],
    [rabbit_exchange:delete(element(2, X), false, <<"pubsub tests">>) || X <- Xs],
    {length(Qs), length(Xs)}.') || { echo "could not remove what earlier test runs left" >&2; exit 1; }
  echo "removed (queues, exchanges) left by earlier test runs: $removed"
  ctl_note="rabbitmqctl OK"
else
  ctl_note="no PUBSUB_RABBITMQCTL: fault tests needing rabbitmqctl cannot run"
fi
echo "broker OK: AMQP $amqp_hostport, stream $RABBITMQ_STREAM_HOST:$RABBITMQ_STREAM_PORT, $ctl_note"

step "browser: chromium and chromedriver for the chat example's browser test (installed if missing)"
scripts/browser.sh || { echo "scripts/browser.sh failed (see above)" >&2; exit 1; }
# the browser tests fail instead of skipping when chromium is missing (tests/chat/browser.rs)
export PUBSUB_REQUIRE_BROWSER=1

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# In CI the compile-fail snapshots must be checked, not skipped for another rustc.
[[ -z "${CI:-}" ]] || export PUBSUB_REQUIRE_UI=1

step "cargo test --workspace --all-features $*"
cargo test --workspace --all-features "$@"

check_example() { # $1: what ran; $2: its output
  for expected in "dead letters:" "(failed: sync_to_crm)" "attempt 3" "reserved 1×KB-01, 2×MS-02 for A1" \
    "analytics-service  deliveries 4  acked 4" "crm-service        deliveries 1  acked 0  dead-lettered 1"; do
    grep -qF -- "$expected" <<<"$2" || { echo "$2"; echo "$1: output lacks: $expected" >&2; exit 1; }
  done
  echo "$1 OK: fan-out, retries and the dead letter as expected"
}

step "example: cargo run --example ecommerce (in-memory, no broker)"
example_out=$(cargo run --quiet --example ecommerce 2>&1) || { echo "$example_out"; exit 1; }
check_example "example (memory)" "$example_out"

step "example: PUBSUB_TRANSPORT=amqp cargo run --example ecommerce (RabbitMQ)"
if [[ -n "${PUBSUB_RABBITMQCTL:-}" ]]; then
  # start from empty queues (the CRM's dead letters outlive runs on purpose, for the UI)
  for queue in email-service inventory-service analytics-service crm-service crm-service.dead-letters; do
    # shellcheck disable=SC2086
    $PUBSUB_RABBITMQCTL -q purge_queue "$queue" >/dev/null 2>&1 || true
  done
fi
# --all-features reuses the build of the tests above
example_out=$(PUBSUB_TRANSPORT=amqp cargo run --quiet --all-features --example ecommerce 2>&1) ||
  { echo "$example_out"; exit 1; }
check_example "example (amqp)" "$example_out"

step "example: PUBSUB_TRANSPORT=streams cargo run --example ecommerce (RabbitMQ Streams)"
if [[ -n "${PUBSUB_RABBITMQCTL:-}" ]]; then
  # start from new streams (offsets and the error streams of earlier runs go with them)
  for stream in events.user events.order events.stock events.errors.email-service \
    events.errors.inventory-service events.errors.analytics-service events.errors.crm-service; do
    # shellcheck disable=SC2086
    $PUBSUB_RABBITMQCTL -q delete_queue "$stream" >/dev/null 2>&1 || true
  done
fi
example_out=$(PUBSUB_TRANSPORT=streams cargo run --quiet --all-features --example ecommerce 2>&1) ||
  { echo "$example_out"; exit 1; }
check_example "example (streams)" "$example_out"

step "example: cargo run --example replication (in-memory; over Streams: tests/streams/replication.rs)"
example_out=$(cargo run --quiet --example replication 2>&1) || { echo "$example_out"; exit 1; }
for expected in "producer: appended c-1..c-8 to events.replication" "consumer replicator: resumes after its stored offset" \
  "  failed  c-4 insert users/u-4 (offset 3): marked to fail" "  c-8 (offset 7): handler \`apply_change\` failed after 1 attempt(s): change c-8 is marked to fail" \
  "consumer replicator: reads from offset 0, to offset 7" "table (2 rows): users/u-1 ← c-5, users/u-2 ← c-6"; do
  grep -qF -- "$expected" <<<"$example_out" || { echo "$example_out"; echo "replication example: output lacks: $expected" >&2; exit 1; }
done
# c-1 applied twice: before the stop, and in the replay after --reset-offset 0
(( $(grep -cF "  applied c-1 insert users/u-1 (offset 0)" <<<"$example_out") == 2 )) ||
  { echo "$example_out"; echo "replication example: c-1 not applied once, then replayed" >&2; exit 1; }
echo "replication example (memory) OK: resumed after its stored offset, failures in the error stream, the reset replayed"

check_rpc() { # $1: what ran; $2: its output
  for expected in "profile of u-17" "ada (advanced; rust, python)" \
    "user-service could not answer user.profile_requested (Permanent): no user u-404" "(user-service says it is permanent" \
    "no responder for rating.requested: nothing is bound to that key" "no reply to history.requested within 300ms"; do
    grep -qF -- "$expected" <<<"$2" || { echo "$2"; echo "$1: output lacks: $expected" >&2; exit 1; }
  done
  # no responder is said at once, not at the caller's 5 s timeout; the timeout at 300 ms, not later
  for expected in '^  rating of u-17 +[0-9]{1,3} ms  no responder' '^  history of u-17 +[3-9][0-9]{2} ms  no reply'; do
    grep -qE -- "$expected" <<<"$2" || { echo "$2"; echo "$1: output lacks a line like: $expected" >&2; exit 1; }
  done
  echo "$1 OK: the reply, the handler's error, no responder at once and the timeout as expected"
}

step "example: cargo run --example rpc (in-memory, no broker)"
example_out=$(cargo run --quiet --example rpc 2>&1) || { echo "$example_out"; exit 1; }
check_rpc "rpc example (memory)" "$example_out"

step "example: PUBSUB_TRANSPORT=amqp cargo run --example rpc (RabbitMQ, direct reply-to)"
example_out=$(PUBSUB_TRANSPORT=amqp cargo run --quiet --all-features --example rpc 2>&1) ||
  { echo "$example_out"; exit 1; }
check_rpc "rpc example (amqp)" "$example_out"

step "example: PUBSUB_TRANSPORT=streams cargo run --example rpc (refused: streams have no reply-to)"
if example_out=$(PUBSUB_TRANSPORT=streams cargo run --quiet --all-features --example rpc 2>&1); then
  echo "$example_out"; echo "rpc example (streams): ran, though streams have no reply-to" >&2; exit 1
fi
grep -qF "RabbitMQ Streams have no reply-to" <<<"$example_out" ||
  { echo "$example_out"; echo "rpc example (streams): failed without saying why" >&2; exit 1; }
echo "rpc example (streams) OK: refused, saying why"
