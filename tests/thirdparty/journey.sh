#!/usr/bin/env bash
# A whole pizza journey with nothing but curl, mosquitto_pub and mosquitto_sub:
# copy it to try the backend from a shell.
#
#   PIZZA_MQTT_PORT=1883 PIZZA_HTTP_PORT=8080 PIZZA_USER=alice PIZZA_PASSWORD=alice-dev-password \
#     tests/thirdparty/journey.sh
set -euo pipefail
mqtt_port=${PIZZA_MQTT_PORT:-1883}
http=http://127.0.0.1:${PIZZA_HTTP_PORT:-8080}
user=${PIZZA_USER:-alice}
pass=${PIZZA_PASSWORD:-alice-dev-password}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

# 1. the phone listens to its own topics (the pickup alert ends the listening)
mosquitto_sub -p "$mqtt_port" -u "$user" -P "$pass" -V mqttv5 -q 1 -v \
  -t "pizza/users/$user/#" -C 7 -W 30 > "$tmp/phone.log" &
sub=$!
sleep 0.5

# 2. log in and place an order over HTTP: 202 at once
token=$(curl -sf -X POST "$http/v1/login" -H 'Content-Type: application/json' \
  -d "{\"user_id\":\"$user\",\"password\":\"$pass\"}" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "journey: login failed" >&2; exit 1; }
answer=$(curl -sf -X POST "$http/v1/orders" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"items":[{"sku":"margherita","qty":1}]}')
order=$(echo "$answer" | sed -n 's/.*"order_id":"\([^"]*\)".*/\1/p')
echo "placed over HTTP: $order"

# 3. and one over MQTT request/response, answered on our reply topic
mosquitto_sub -p "$mqtt_port" -u "$user" -P "$pass" -V mqttv5 -q 1 \
  -t "pizza/users/$user/replies/sh" -C 1 -W 10 > "$tmp/reply.log" &
rsub=$!
sleep 0.3
mosquitto_pub -p "$mqtt_port" -u "$user" -P "$pass" -V mqttv5 -q 1 \
  -t "pizza/users/$user/orders/new" -m '{"items":[{"sku":"funghi","qty":2}]}' \
  -D publish response-topic "pizza/users/$user/replies/sh" -D publish correlation-data "sh-1"
wait $rsub
echo "placed over MQTT: $(cat "$tmp/reply.log")"

# 4. wait for the first order's pickup alert on the phone
for _ in $(seq 1 100); do
  grep -q "alerts .*\"order_id\":\"$order\"" "$tmp/phone.log" && break
  sleep 0.2
done
grep "orders/$order/status" "$tmp/phone.log" | sed 's/.*"status":"\([a-z]*\)".*/status: \1/'
grep -q "alerts .*\"order_id\":\"$order\"" "$tmp/phone.log" || { echo "journey: no pickup alert" >&2; exit 1; }
echo "pickup alert: $(grep "alerts .*\"order_id\":\"$order\"" "$tmp/phone.log" | sed 's/.*"message":"\([^"]*\)".*/\1/')"

# 5. the order's timeline over HTTP
for _ in $(seq 1 50); do
  curl -sf "$http/v1/orders/$order" -H "Authorization: Bearer $token" > "$tmp/order.json" || true
  grep -q '"status":"ready"' "$tmp/order.json" && break
  sleep 0.2
done
grep -q '"status":"ready"' "$tmp/order.json" || { echo "journey: the timeline never said ready" >&2; exit 1; }
echo "timeline: ready"
kill $sub 2>/dev/null || true
