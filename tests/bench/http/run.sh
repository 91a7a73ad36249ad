#!/usr/bin/env bash
# tests/bench/http/run.sh - the HTTP intake step of `make bench`.
#
# wrk POSTs orders with keep-alive (orders.lua), first against a private
# nginx answering a static 202 (nginx.conf.in: the yardstick for this
# machine), then against order-service. Prints key=value lines:
#   nginx_rps= nginx_p99_ms= http_rps= http_p99_ms= http_accepted= http_refused= http_errors=
# (accepted: 202 answers; refused: any other status; errors: no answer at all).
#
# Environment:
#   ORDER_URL    order-service's base URL (http://127.0.0.1:8080)
#   TOKENS       file of "user token" lines (required; phone-sim token --user U)
#   DURATION     seconds per wrk run (10)
#   CONNECTIONS  keep-alive connections (32)
#   THREADS      wrk threads (2)
#   WORKDIR      folder for nginx's config, logs and wrk output (a temporary one)
#   IDEMPOTENCY_KEYS  1: send a unique Idempotency-Key with every order
#   BURST        N: the flash-sale burst instead: N orders to order-service as
#                fast as wrk sends them (each thread stops after N/THREADS
#                answers; DURATION is then only a cap), no nginx. Prints
#                burst_rps= burst_p99_ms= burst_seconds= burst_requests=
#                burst_accepted= burst_refused= burst_errors=
#
# order-service limits each client address to 50 requests/s by default:
# start it with PIZZA_HTTP_RATE_LIMIT=0 to measure it, or expect 429s.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ORDER_URL=${ORDER_URL:-http://127.0.0.1:8080}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}

die() { echo "http bench: $*" >&2; exit 1; }

command -v wrk >/dev/null 2>&1 || die "wrk not found: install it with 'apt-get install -y wrk'"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || die "nginx not found: install it with 'apt-get install -y nginx-light'"
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
[ -n "${TOKENS:-}" ] || die "set TOKENS to a file of 'user token' lines"
[ -r "$TOKENS" ] && grep -q '[^[:space:]]' "$TOKENS" || die "TOKENS=$TOKENS is missing or empty"
export TOKENS

if [ -z "${WORKDIR:-}" ]; then
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/http-bench.XXXXXX")
fi
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)

# is something answering on host:port? (bash's /dev/tcp: no other tool needed)
listening() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# order-service first: no point measuring nginx if there is nothing to compare it with
hostport=${ORDER_URL#*://}
hostport=${hostport%%/*}
host=${hostport%:*}
port=${hostport##*:}
[ "$port" != "$hostport" ] || port=80
listening "$host" "$port" || die "order-service is not reachable at $ORDER_URL"

# run_wrk NAME URL: one wrk run with orders.lua; its output goes to $WORKDIR/NAME.wrk
run_wrk() {
  REQUESTS_PER_THREAD=${REQUESTS_PER_THREAD:-} DONE_DIR=${DONE_DIR:-} THREADS=$THREADS wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" -s "$here/orders.lua" "$2" \
    > "$WORKDIR/$1.wrk" 2>&1 || die "wrk against $1 failed: $(tail -n 1 "$WORKDIR/$1.wrk")"
  grep -q '^wrk_latency ' "$WORKDIR/$1.wrk" || die "wrk against $1 printed no results: see $WORKDIR/$1.wrk"
}

# field NAME LINE KEY: the value of KEY=... on the wrk_LINE line of NAME's output
field() { sed -n "s/^wrk_$2 .*\\b$3=\\([^ ]*\\).*/\\1/p" "$WORKDIR/$1.wrk"; }

if [ -n "${BURST:-}" ]; then
  [ "$BURST" -ge "$THREADS" ] 2>/dev/null || die "BURST=$BURST must be a whole number of at least THREADS=$THREADS"
  rm -rf "$WORKDIR/burst.done" && mkdir -p "$WORKDIR/burst.done"
  REQUESTS_PER_THREAD=$(( (BURST + THREADS - 1) / THREADS )) DONE_DIR="$WORKDIR/burst.done" \
    run_wrk burst "$ORDER_URL"
  echo "burst_rps=$(field burst latency rps)"
  echo "burst_p99_ms=$(field burst latency p99_ms)"
  echo "burst_seconds=$(field burst latency seconds)"
  echo "burst_requests=$(field burst latency requests)"
  echo "burst_accepted=$(field burst status 202)"
  echo "burst_refused=$(( $(field burst status 429) + $(field burst status other) ))"
  echo "burst_errors=$(field burst status errors)"
  exit 0
fi

# (a) nginx on a free port, answering a static 202
nginx_pid=
stop_nginx() {
  [ -n "$nginx_pid" ] || return 0
  kill -QUIT "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
  nginx_pid=
}
trap stop_nginx EXIT

mkdir -p "$WORKDIR/nginx"
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  nport=$((20000 + RANDOM % 30000))
  listening 127.0.0.1 "$nport" && continue
  sed -e "s|@DIR@|$WORKDIR/nginx|g" -e "s|@PORT@|$nport|g" \
    -e "s|@USER@|$(id -un)|g" -e "s|@GROUP@|$(id -gn)|g" \
    "$here/nginx.conf.in" > "$WORKDIR/nginx/nginx.conf"
  "$NGINX" -p "$WORKDIR/nginx" -c "$WORKDIR/nginx/nginx.conf" -e "$WORKDIR/nginx/error.log" &
  nginx_pid=$!
  for _ in $(seq 50); do
    listening 127.0.0.1 "$nport" && break
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.1
  done
  listening 127.0.0.1 "$nport" && break
  stop_nginx   # the port was taken meanwhile, or the config failed: try again
done
[ -n "$nginx_pid" ] || die "nginx did not start: see $WORKDIR/nginx/error.log"

run_wrk nginx "http://127.0.0.1:$nport"
stop_nginx

# (b) order-service
run_wrk http "$ORDER_URL"

echo "nginx_rps=$(field nginx latency rps)"
echo "nginx_p99_ms=$(field nginx latency p99_ms)"
echo "http_rps=$(field http latency rps)"
echo "http_p99_ms=$(field http latency p99_ms)"
echo "http_accepted=$(field http status 202)"
echo "http_refused=$(( $(field http status 429) + $(field http status other) ))"
echo "http_errors=$(field http status errors)"
