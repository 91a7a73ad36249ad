#!/usr/bin/env python3
"""What retained statuses cost mosquitto (docs/performance.md, "Retained statuses").

Starts the bench's private stack (tests/bench/bench.py's Stack) with order-executor's
--ready-status-expiry set to --ready-expiry, places --orders orders twice with phone-sim load and
prints mosquitto's RSS and `$SYS/broker/retained messages/count` after each round.  With --sweep,
after each round the admin account subscribes once to pizza/users/+/orders/+/status (retain
handling 0) and leaves: mosquitto 2.0 frees an expired retained message only when a subscription
walks over it (src/retain.c, retain__process), so without one the expiry frees nothing.  --walk sets
the executors' own walk (--retained-walk; 0 turns it off, as before it existed).

  BUILD=build python3 tests/bench/retained.py --orders 20000 --rate 400 --ready-expiry 1 --sweep
  BUILD=build python3 tests/bench/retained.py --orders 20000 --rate 400 --ready-expiry 1 --walk 5
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def sys_value(stack, topic):
    out = subprocess.run(["mosquitto_sub", "-p", str(stack.mqtt), "-u", "admin", "-P", stack.admin_pw, "-t", topic,
                          "-C", "1", "-W", "30"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=20000, help="orders per round (two rounds)")
    ap.add_argument("--rate", type=int, default=400, help="orders per second offered")
    ap.add_argument("--ready-expiry", default="60", help="order-executor --ready-status-expiry, in seconds")
    ap.add_argument("--sweep", action="store_true", help="one walking subscription after each round")
    ap.add_argument("--walk", default=None,
                    help="order-executor --retained-walk, in seconds (0: off; default: the executor's, 60)")
    args = ap.parse_args()
    work = os.path.join(bench.BUILD, "bench", "retained")
    os.makedirs(work, exist_ok=True)
    accounts = bench.make_accounts(os.path.join(work, "accounts.txt"), 100)
    phones = os.path.join(work, "phones.txt")
    with open(phones, "w") as f:
        f.writelines(ln for ln in open(accounts) if not ln.startswith("bench:"))
    os.environ["PIZZA_READY_STATUS_EXPIRY_S"] = args.ready_expiry
    if args.walk is not None:
        os.environ["PIZZA_RETAINED_WALK_S"] = args.walk
    stack = bench.Stack(work, "stack", accounts, 2)
    lost = 0
    try:
        walk = f", walk {args.walk} s" if args.walk is not None else ""
        line = [f"ready-status-expiry {args.ready_expiry} s{walk}{', sweep' if args.sweep else ''}: mosquitto "
                f"{stack.rss_kib()['mosquitto'] / 1024:.1f} MiB at start"]
        for i in (1, 2):
            r = bench.load(stack, work, f"round{i}", phones, 100, orders=args.orders, rate=args.rate)
            lost += bench.lost_of(r)
            if args.sweep:
                time.sleep(2)  # past the expiry of the last orders' ready status (whole seconds)
                subprocess.run(["mosquitto_sub", "-p", str(stack.mqtt), "-u", "admin", "-P", stack.admin_pw, "-t",
                                "pizza/users/+/orders/+/status", "-E"], check=True, timeout=60,
                               capture_output=True)
            time.sleep(11)  # $SYS is updated every 10 s
            line.append(f"{stack.rss_kib()['mosquitto'] / 1024:.1f} MiB after {i * args.orders} orders, retained "
                        f"{sys_value(stack, '$SYS/broker/retained messages/count')}")
    finally:
        stack.stop()
    print("; ".join(line) + f"; lost {lost}", flush=True)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
