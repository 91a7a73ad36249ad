#!/usr/bin/python3
"""A phone the project did not write: Eclipse paho-mqtt for Python (Debian's
python3-paho-mqtt), MQTT 5.  It logs in with a user's credentials, places an
order with request/response, and follows its statuses to the pickup alert;
then it tries another user's topics and must get nothing.

Environment: PIZZA_MQTT_PORT, PIZZA_USER, PIZZA_PASSWORD, PIZZA_OTHER_USER.
Prints one line per event and exits 0 when the journey was complete."""
import json
import os
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

port = int(os.environ["PIZZA_MQTT_PORT"])
user = os.environ["PIZZA_USER"]
password = os.environ["PIZZA_PASSWORD"]
other = os.environ.get("PIZZA_OTHER_USER", "bob")
reply_topic = f"pizza/users/{user}/replies/py-{uuid.uuid4().hex[:8]}"
correlation = uuid.uuid4().bytes

lock = threading.Lock()
state = {"order_id": None, "seen": [], "alerts": 0, "foreign": 0, "subscribed": threading.Event(),
         "done": threading.Event(), "refused": None}


def on_connect(client, userdata, flags, rc, properties=None):
    if rc != 0:
        state["refused"] = str(rc)
        state["done"].set()
        return
    # no-local: do not receive our own request
    client.subscribe(f"pizza/users/{user}/#", options=mqtt.SubscribeOptions(qos=1, noLocal=True))
    # another user's tree: the broker's ACL must deliver nothing from it
    client.subscribe(f"pizza/users/{other}/#", options=mqtt.SubscribeOptions(qos=1))


def on_subscribe(client, userdata, mid, reason_codes, properties=None):
    if mid >= 2:
        state["subscribed"].set()


def on_message(client, userdata, msg):
    with lock:
        if msg.topic.startswith(f"pizza/users/{other}/"):
            state["foreign"] += 1
            print(f"LEAK {msg.topic}", flush=True)
            return
        props = msg.properties
        if msg.topic == reply_topic:
            if getattr(props, "CorrelationData", None) != correlation:
                return
            body = json.loads(msg.payload)
            if "order_id" not in body:
                print(f"refused: {body}", flush=True)
                state["done"].set()
                return
            state["order_id"] = body["order_id"]
            print(f"placed {body['order_id']}", flush=True)
            return
        if state["order_id"] is None:
            return
        ev = json.loads(msg.payload)
        if ev.get("order_id") != state["order_id"]:
            return
        if ev["type"] == "OrderStatus":
            if ev["seq"] not in [s for s, _ in state["seen"]]:
                state["seen"].append((ev["seq"], ev["status"]))
                print(f"status {ev['status']} seq={ev['seq']}", flush=True)
        elif ev["type"] == "PickupAlert":
            state["alerts"] += 1
            print(f"alert {ev['message']}", flush=True)
            state["done"].set()


client = mqtt.Client(client_id=f"py-phone-{user}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
client.username_pw_set(user, password)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect("127.0.0.1", port, keepalive=30)
client.loop_start()
if not state["subscribed"].wait(10):
    print("no subscription", file=sys.stderr)
    sys.exit(1)

props = Properties(PacketTypes.PUBLISH)
props.ResponseTopic = reply_topic
props.CorrelationData = correlation
client.publish(f"pizza/users/{user}/orders/new",
               json.dumps({"items": [{"sku": "margherita", "qty": 1}]}), qos=1, properties=props)

ok = state["done"].wait(30)
time.sleep(0.5)  # anything late, such as a second alert or a leak
client.loop_stop()
client.disconnect()
seqs = [s for s, _ in state["seen"]]
print(f"summary order={state['order_id']} seqs={seqs} alerts={state['alerts']} foreign={state['foreign']}")
sys.exit(0 if ok and state["refused"] is None and seqs == [2, 3, 4, 5] and state["alerts"] == 1
         and state["foreign"] == 0 else 1)
