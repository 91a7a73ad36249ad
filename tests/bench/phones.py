#!/usr/bin/env python3
"""Many phones at once: what each one costs the broker and the load generator, and what stops the next step.

Issue 17: 100,000 phones connected at once on this box, each receiving its own pickup alert, none
lost.  Starts the bench's private stack (tests/bench/bench.py's Stack) with --accounts generated
customers (the most phones asked for, by default) and --listeners plain MQTT listeners on 127.0.0.1
(broker-config/stack's PIZZA_MQTT_EXTRA_PORTS), then for each --phones count runs `phone-sim load`:
every phone its own connection, account and topic, phone i on listener i mod L, --per-proc phones a
process, CONNECTs started at --connect-rate a second, held idle for --hold seconds, then one order
each (at most --orders) at --rate a second, each phone waiting for its own alert.  Reports, per step:
connect time and listen-queue overflows, phones alerted, lost, mosquitto's RSS before and after
connecting and its own heap count ($SYS/broker/heap/current) per phone (RSS does not move: the
broker first reuses the heap its plugin's JSON parse freed), the kernel's slab per phone, the load
generator's memory per phone (PSS summed over its processes, shared pages counted once; RSS summed
too, as phone-sim prints it), CPU of both per connect, while idle (keepalives) and per order.  Before
the steps: the time of `pizza-admin broker-init` for these accounts, the size of the dynamic security
plugin's file, and how long a mosquitto takes to start with it (a second broker on a spare port).

Limits it minds (docs/performance.md, "Phones at once", says what each does):
  - open files: mosquitto needs one per phone.  broker-config/stack raises its soft limit to the hard
    one, and this script first raises the hard limit (RLIMIT_NOFILE) to phones + 10,000 when it may:
    it takes CAP_SYS_RESOURCE, which root in a container may lack; then it says so, and the broker
    holds hard limit - 16 phones.  --nofile N sets it (lower too: to see what the broker does).
  - source ports: loopback has ip_local_port_range (~28k here) source ports per destination address
    and port; --listeners 0 (the default) opens one listener per 25,000 phones.  --port-probe counts
    them with plain sockets (no stack) and stops.

  python3 tests/bench/phones.py --phones 10000 30000 60000 100000 --accounts 100000
  python3 tests/bench/phones.py --phones 30000 --listeners 1     # where one broker process stops
  python3 tests/bench/phones.py --port-probe
  BUILD=build python3 tests/bench/phones.py --phones 5000 --per-proc 250 --out /tmp/p250

Writes --out (BUILD/bench/phones)/results.json and every step's phone-sim output; exit status 1 when
a step lost an order or phones could not connect.
"""
import argparse
import errno
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

PER_LISTENER = 25000  # below the ~28k source ports a destination has, with room for what else connects
HZ = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(msg):
    print(f"phones: {msg}", flush=True)


def port_range():
    lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    return hi - lo + 1


def raise_nofile(want, lower=False):
    """Sets this process's open-file limits (inherited by the stack and the load generator) to want, soft
    and hard, when it may (to the hard limit when that is more, unless lower); returns (soft, hard) after,
    and a sentence when it could not."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(want, int(open("/proc/sys/fs/nr_open").read()))
    if want <= hard and not lower:
        want = hard
    note = ""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        if want > hard:
            who = ("root without CAP_SYS_RESOURCE (a container's capability set)" if os.geteuid() == 0 else
                   "not root")
            note = (f"{who}: the hard limit of open files stays {hard}, so mosquitto holds at most {hard - 16} "
                    f"phones (its listeners, services and files take the other 16 or so); raise it where the "
                    f"limit is set (docker run --ulimit nofile=N:N, systemd LimitNOFILE=, limits.conf)")
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE), note


def proc_stat(pid):
    """(CPU ticks, RSS KiB) of pid, or None when it is gone."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(f[11]) + int(f[12]), int(f[21]) * PAGE_KIB


def pss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    """Every process whose parent is pid."""
    res = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                    res.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return res


def loadgen_usage(pid):
    """The load generator (coordinator and shards): CPU ticks, RSS KiB summed, PSS KiB summed, processes."""
    cpu = rss = pss = n = 0
    for p in [pid] + children(pid):
        st = proc_stat(p)
        if st is None:
            continue
        cpu, rss, pss, n = cpu + st[0], rss + st[1], pss + pss_kib(p), n + 1
    return dict(cpu=cpu, rss=rss, pss=pss, procs=n)


def broker_usage(stack):
    st = proc_stat(stack.pids()["mosquitto"])
    return dict(cpu=st[0], rss=st[1]) if st else dict(cpu=0, rss=0)


def time_wait():
    """TCP sockets in TIME_WAIT on this machine (IPv4)."""
    return sum(1 for ln in open("/proc/net/tcp") if ln.split()[3:4] == ["06"])


def wait_time_wait(most=5000):
    """Waits (at most 70 s) until fewer than most sockets are in TIME_WAIT: the phones of a run just ended
    leave one each for 60 s on their source port, and bench.Stack looks for a run of free ports among them."""
    t0 = time.time()
    while time.time() - t0 < 70 and time_wait() >= most:
        time.sleep(2)
    if time.time() - t0 > 1:
        log(f"  waited {time.time() - t0:.0f} s for the last run's TIME_WAIT sockets to expire")


def listen_overflows():
    """The machine's count of connections dropped because a listen queue was full (TcpExt ListenOverflows:
    mosquitto listens with a backlog of 100, and a dropped SYN is sent again 1, 3, 7... s later)."""
    lines = open("/proc/net/netstat").read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return dict(zip(names.split()[1:], (int(v) for v in values.split()[1:]))).get("ListenOverflows", 0)
    return 0


def meminfo_kib():
    """What the whole machine uses (MemTotal - MemAvailable, kernel socket memory included) and the kernel's
    slab alone (sockets, files, epoll entries), KiB."""
    m = {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in open("/proc/meminfo"))}
    return dict(used=m["MemTotal"] - m["MemAvailable"], slab=m["Slab"])


SYS_TOPICS = ("$SYS/broker/heap/current", "$SYS/broker/clients/connected")


def sys_values(stack):
    """mosquitto's $SYS heap/current (bytes its allocator hands out: RSS hides them, the heap the plugin's
    JSON parse freed is reused first) and clients/connected, at their next update (every 10 s):
    {topic's last word: value}."""
    cmd = ["mosquitto_sub", "-p", str(stack.mqtt), "-u", "admin", "-P", stack.admin_pw, "-v", "-C",
           str(2 * len(SYS_TOPICS)), "-W", "25"]
    for t in SYS_TOPICS:
        cmd += ["-t", t]
    res = {}
    for line in subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines():
        topic, _, value = line.partition(" ")
        if value.strip().isdigit():
            res[topic.rsplit("/", 1)[1]] = int(value)  # the retained value first, then the fresh one
    return res


def broker_start_cost(stack, workdir):
    """pizza-admin broker-init on the stack's password file (time, file size), then a second mosquitto with
    that file on a spare port: seconds until it accepts, its RSS, the CPU it took."""
    run = os.path.join(stack.dir, "run")
    tmp = os.path.join(workdir, "startcost")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "data"))
    out = os.path.join(tmp, "data", "dynamic-security.json")
    t0 = time.time()
    subprocess.run([os.path.join(bench.BIN, "pizza-admin"), "broker-init", "--out", out, "--password-file",
                    os.path.join(run, "passwd"), "--acl-file", os.path.join(bench.ROOT, "broker-config", "acl")],
                   check=True)
    init_s = time.time() - t0
    size = os.path.getsize(out)
    port = bench.free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        for line in open(os.path.join(run, "mosquitto.conf")):
            if line.startswith(("listener", "cafile", "certfile", "keyfile", "tls_version", "protocol")):
                continue
            if line.startswith("persistence_location"):
                line = f"persistence_location {tmp}/data/\n"
            elif line.startswith("plugin_opt_config_file"):
                line = f"plugin_opt_config_file {out}\n"
            f.write(line)
        f.write(f"listener {port} 127.0.0.1\n")
    with open(os.path.join(tmp, "mosquitto.log"), "w") as lf:
        t0 = time.time()
        proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=lf, stderr=subprocess.STDOUT)
        ok = bench.wait_port(port, 120)
        start_s = time.time() - t0
        st = proc_stat(proc.pid)
        proc.terminate()
        proc.wait(timeout=60)
    shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        bench.fail("the second mosquitto did not start: see its log")
    return dict(accounts_file=os.path.join(run, "passwd"), broker_init_s=round(init_s, 2), dynsec_bytes=size,
                mosquitto_start_s=round(start_s, 2), mosquitto_start_rss_kib=st[1] if st else 0,
                mosquitto_start_cpu_s=round(st[0] / HZ, 2) if st else 0)


LINGER_RST = struct.pack("ii", 1, 0)  # close with a reset: no TIME_WAIT left holding the ports


def probe_server(port, ready, stop):
    """--port-probe: one of the SO_REUSEPORT processes accepting on port and holding what it accepted."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(4096)
    s.settimeout(0.2)
    held = []
    ready.set()
    while not stop.is_set():
        try:
            c, _ = s.accept()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            held.append(c)
        except socket.timeout:
            pass
    for c in held:
        c.close()


def probe_client(port, n, out, stop):
    """--port-probe: n connections to 127.0.0.1:port, held until stop; puts (port, connected, {errno: count})."""
    held, errs = [], {}
    for _ in range(n):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        try:
            c.connect(("127.0.0.1", port))
            held.append(c)
        except OSError as e:
            name = errno.errorcode.get(e.errno, str(e.errno))
            errs[name] = errs.get(name, 0) + 1
            c.close()
    out.put((port, len(held), errs))
    stop.wait()
    for c in held:
        c.close()


def port_probe(per_client=10000):
    """How many connections one destination address:port takes from this machine, and whether a second port's
    share the first one's source ports: 3 x per_client connections to port A, then 2 x per_client to port B
    while A's are held, in processes of per_client (under the open-file limit), accepted by two SO_REUSEPORT
    processes per port.  No MQTT: the kernel's limit alone."""
    ports = [bench.free_port(), bench.free_port()]
    while ports[1] == ports[0]:
        ports[1] = bench.free_port()
    stop, out, procs, res = multiprocessing.Event(), multiprocessing.Queue(), [], []
    try:
        for p in ports:
            for _ in range(2):
                ready = multiprocessing.Event()
                procs.append(multiprocessing.Process(target=probe_server, args=(p, ready, stop)))
                procs[-1].start()
                ready.wait(10)
        for p in [ports[0]] * 3 + [ports[1]] * 2:
            procs.append(multiprocessing.Process(target=probe_client, args=(p, per_client, out, stop)))
            procs[-1].start()
            res.append(out.get(timeout=300))
            log(f"port probe: {res[-1][1]} of {per_client} connected to port {'AB'[ports.index(p)]}"
                + (f", refused: {res[-1][2]}" if res[-1][2] else ""))
    finally:
        stop.set()
        for pr in procs:
            pr.join(30)
    a, b = (sum(r[1] for r in res if r[0] == p) for p in ports)
    log(f"port probe: {a} connections to one address:port (ip_local_port_range holds {port_range()} ports), "
        f"then {b} more to a second port while those stayed up: {a + b} in all")
    return dict(port_a=a, port_b=b, port_range=port_range(), refused=[r[2] for r in res if r[2]])


class BigStack(bench.Stack):
    """bench.Stack given the minutes 100,000 accounts take: hashing them, broker-init, the broker loading
    them, order-service importing them before its HTTP port opens."""

    def __init__(self, *args, **kwargs):
        wait_port = bench.wait_port
        bench.wait_port = lambda port, timeout=20: wait_port(port, max(timeout, 600))
        try:
            super().__init__(*args, **kwargs)
        finally:
            bench.wait_port = wait_port

    def read_env(self, timeout):
        return super().read_env(max(timeout, 600))


def run_step(stack, workdir, accounts, urls, n, args):
    """One phone-sim load of n phones, at most one order each; returns the step's figures (a dict)."""
    name = f"phones-{n}-l{len(urls)}"
    out = os.path.join(workdir, name)
    orders = min(n, args.orders) if args.orders else n
    cmd = [os.path.join(bench.BIN, "phone-sim"), "load", "--accounts", accounts, "--phones", str(n),
           "--orders", str(orders), "--rate", str(args.rate), "--mqtt-url", ",".join(urls),
           "--connect-rate", str(args.connect_rate), "--connect-timeout", f"{args.connect_timeout}s",
           "--hold", f"{args.hold}s", "--timeout", "60s", "--out", out]
    if args.per_proc:
        cmd += ["--per-proc", str(args.per_proc)]
    stack.settle()
    sys0 = sys_values(stack)
    b0, m0, ov0 = broker_usage(stack), meminfo_kib(), listen_overflows()
    errf = open(out + ".log", "w")
    errf.write(" ".join(cmd) + "\n")
    errf.flush()
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=stack.env, stdout=subprocess.PIPE, stderr=errf, text=True)
    fig = dict(phones=n, listeners=len(urls), orders=orders, rate=args.rate, connect_rate=args.connect_rate,
               hold_s=args.hold)
    connected = idle = None
    for line in proc.stdout:
        if "connecting" in line and "process" in line:
            m = re.search(r"in (\d+) process", line)
            fig["procs"] = int(m.group(1)) if m else None
        if "connected and subscribed" in line:
            connected = dict(t=time.time(), lg=loadgen_usage(proc.pid), b=broker_usage(stack), mem=meminfo_kib(),
                             overflows=listen_overflows())
            log(f"  {line.strip()}")
            if args.hold >= 14:
                # the broker's own count and heap, inside the idle window
                connected["sys"] = sys_values(stack)
            if args.hold >= 3:
                # the idle window: most of --hold, ending before the first order
                time.sleep(max(0.0, connected["t"] + args.hold - 1.5 - time.time()))
                idle = dict(t=time.time(), lg=loadgen_usage(proc.pid), b=broker_usage(stack))
    proc.wait()
    errf.close()
    b1 = broker_usage(stack)
    err = open(out + ".log").read()
    fig["wall_s"] = round(time.time() - t0, 1)
    try:
        res = json.load(open(out + ".json")) if connected else None
    except (OSError, ValueError):
        res = None
    fig["listen_overflows"] = (connected["overflows"] if connected else listen_overflows()) - ov0
    if res is None:
        m = re.search(r"(\d+) of (\d+) phones could not connect", err)
        fig.update(ok=False, connected=n - int(m.group(1)) if m else None, alerted=0, lost=None,
                   error=[ln for ln in err.splitlines()[1:] if ln.strip()][:6])
        return fig
    o = res["orders"]
    fig.update(exit=proc.returncode, connect_s=round(res["connect"]["seconds"], 2),
               connected=res["connect"]["connected"],
               alerted=o["completed"], lost=o["lost"] + o["refused"], duplicates=o["duplicates"],
               orders_per_s=round(res["throughput"]["orders_per_s"], 1),
               p50_ms=res["latency_ms"]["accepted_to_alert"]["p50"],
               p99_ms=res["latency_ms"]["accepted_to_alert"]["p99"])
    fig["ok"] = proc.returncode == 0 and fig["lost"] == 0 and fig["alerted"] == orders
    lg, cb = connected["lg"], connected["b"]
    fig.update(mosq_rss_before_kib=b0["rss"], mosq_rss_connected_kib=cb["rss"],
               mosq_kib_per_phone=round((cb["rss"] - b0["rss"]) / n, 2),
               mosq_connect_cpu_s=round((cb["cpu"] - b0["cpu"]) / HZ, 2),
               mosq_cpu_ms_per_connect=round(1000 * (cb["cpu"] - b0["cpu"]) / HZ / n, 3),
               lg_procs=lg["procs"], lg_pss_kib=lg["pss"], lg_rss_kib=lg["rss"],
               lg_pss_kib_per_phone=round(lg["pss"] / n, 1), lg_rss_kib_per_phone=round(lg["rss"] / n, 1),
               lg_connect_cpu_s=round(lg["cpu"] / HZ, 2), lg_cpu_ms_per_connect=round(1000 * lg["cpu"] / HZ / n, 3),
               machine_kib_per_phone=round((connected["mem"]["used"] - m0["used"]) / n, 1),
               slab_kib_per_phone=round((connected["mem"]["slab"] - m0["slab"]) / n, 1),
               lg_cpu_s=round(res["client"]["cpu_s"], 1), mosq_cpu_s=round((b1["cpu"] - b0["cpu"]) / HZ, 1))
    if "sys" in connected and "current" in sys0 and "current" in connected["sys"]:
        fig.update(mosq_clients_connected=connected["sys"].get("connected"), mosq_heap_before=sys0["current"],
                   mosq_heap_connected=connected["sys"]["current"],
                   mosq_heap_kib_per_phone=round((connected["sys"]["current"] - sys0["current"]) / 1024 / n, 2))
    if idle:
        secs = idle["t"] - connected["t"]
        fig.update(idle_s=round(secs, 1),
                   lg_idle_cores=round((idle["lg"]["cpu"] - lg["cpu"]) / HZ / secs, 3),
                   mosq_idle_cores=round((idle["b"]["cpu"] - cb["cpu"]) / HZ / secs, 3))
        after = idle
    else:
        after = connected
    done = max(1, fig["alerted"])
    fig.update(lg_cpu_ms_per_order=round(1000 * (res["client"]["cpu_s"] - (after["lg"]["cpu"] / HZ)) / done, 2),
               mosq_cpu_ms_per_order=round(1000 * (b1["cpu"] - after["b"]["cpu"]) / HZ / done, 2))
    return fig


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phones", type=int, nargs="+", default=[10000, 30000, 60000, 100000],
                    help="phones connected at once, one step each (on one stack)")
    ap.add_argument("--accounts", type=int, default=0, help="customers in the broker (0: the most phones)")
    ap.add_argument("--listeners", type=int, default=0,
                    help=f"MQTT listeners the phones are spread over (0: one per {PER_LISTENER} phones)")
    ap.add_argument("--per-proc", type=int, default=100, help="phones per load-generator process (0: its default)")
    ap.add_argument("--connect-rate", type=int, default=1000, help="phones starting to connect a second (0: all)")
    ap.add_argument("--connect-timeout", type=int, default=120, help="seconds each phone may take to connect")
    ap.add_argument("--hold", type=int, default=20, help="seconds the phones stay idle before the orders")
    ap.add_argument("--rate", type=int, default=300, help="orders placed a second")
    ap.add_argument("--orders", type=int, default=0, help="orders a step places at most (0: one per phone)")
    ap.add_argument("--nofile", type=int, default=0, help="open files for the broker (0: phones + 10,000)")
    ap.add_argument("--out", help="folder for the results (default BUILD/bench/phones)")
    ap.add_argument("--port-probe", action="store_true",
                    help="only count the connections one address:port takes (plain sockets, no stack) and stop")
    ap.add_argument("--no-start-cost", action="store_true", help="skip timing broker-init and a second broker")
    args = ap.parse_args()
    if args.port_probe:
        res = port_probe()
        return 0 if res["port_b"] > 0 else 1
    most = max(args.phones)
    listeners = args.listeners or math.ceil(most / PER_LISTENER)
    work = args.out or os.path.join(bench.BUILD, "bench", "phones")
    os.makedirs(work, exist_ok=True)

    (soft, hard), note = raise_nofile(args.nofile or most + 10000, lower=args.nofile > 0)
    log(f"open files: {soft} (hard {hard}); source ports per destination: {port_range()}; "
        f"{listeners} listener{'s' if listeners > 1 else ''}")
    if note:
        log(note)
    acc_n = args.accounts or most
    accounts = bench.make_accounts(os.path.join(work, "accounts.txt"), acc_n)
    phones = os.path.join(work, "phones.txt")
    with open(phones, "w") as f:
        f.writelines(ln for ln in open(accounts) if not ln.startswith("bench:"))
    extra = [bench.free_port() for _ in range(listeners - 1)]
    if extra:
        os.environ["PIZZA_MQTT_EXTRA_PORTS"] = " ".join(str(p) for p in extra)
    else:
        os.environ.pop("PIZZA_MQTT_EXTRA_PORTS", None)
    wait_time_wait()
    log(f"starting the stack with {acc_n} customers ...")
    t0 = time.time()
    stack = BigStack(work, "stack", accounts, 2)
    results = dict(accounts=acc_n, listeners=listeners, nofile=[soft, hard], port_range=port_range(),
                   stack_start_s=round(time.time() - t0, 1), steps=[])
    failed = False
    try:
        urls = [f"tcp://127.0.0.1:{p}" for p in [stack.mqtt] + extra]
        results["mosquitto_rss_idle_kib"] = broker_usage(stack)["rss"]
        log(f"  up in {results['stack_start_s']} s (hashing, broker-init, mosquitto, order-service importing "
            f"the accounts); mosquitto {results['mosquitto_rss_idle_kib'] / 1024:.0f} MiB")
        if not args.no_start_cost:
            results["start_cost"] = sc = broker_start_cost(stack, work)
            log(f"  broker-init {sc['broker_init_s']} s, dynamic-security.json {sc['dynsec_bytes'] / 1e6:.1f} MB; "
                f"a mosquitto with it starts in {sc['mosquitto_start_s']} s, "
                f"{sc['mosquitto_start_rss_kib'] / 1024:.0f} MiB")
        for n in args.phones:
            log(f"{n} phones over {listeners} listener{'s' if listeners > 1 else ''}, "
                f"{args.per_proc or 'default'} a process, connecting {args.connect_rate or 'all'}/s, "
                f"idle {args.hold} s, then {min(n, args.orders) if args.orders else n} orders at {args.rate}/s, "
                "each phone at most one")
            fig = run_step(stack, work, phones, urls, n, args)
            results["steps"].append(fig)
            with open(os.path.join(work, "results.json"), "w") as f:
                json.dump(results, f, indent=2)
            if fig.get("connect_s") is None:
                log(f"  FAILED: {fig.get('connected')} of {n} connected ({fig['listen_overflows']} listen-queue "
                    f"overflows); {fig.get('error')}")
                failed = True
                break
            log(f"  connected in {fig['connect_s']} s ({fig['listen_overflows']} listen-queue overflows), "
                f"{fig['alerted']} alerted, {fig['lost']} lost, p99 {fig['p99_ms']:.0f} ms; mosquitto RSS "
                f"{fig['mosq_rss_before_kib'] / 1024:.0f} -> {fig['mosq_rss_connected_kib'] / 1024:.0f} MiB "
                f"({fig['mosq_kib_per_phone']} KiB/phone; heap {fig.get('mosq_heap_kib_per_phone')} KiB/phone), "
                f"kernel slab {fig['slab_kib_per_phone']} KiB/phone; load generator {fig['lg_pss_kib_per_phone']} "
                f"KiB/phone (PSS; RSS {fig['lg_rss_kib_per_phone']}) in {fig['lg_procs']} processes; CPU per "
                f"connect {fig['mosq_cpu_ms_per_connect']} ms broker, {fig['lg_cpu_ms_per_connect']} ms load "
                f"generator; idle {fig.get('mosq_idle_cores')} / {fig.get('lg_idle_cores')} cores; per order "
                f"{fig['mosq_cpu_ms_per_order']} / {fig['lg_cpu_ms_per_order']} ms")
            failed |= not fig["ok"]
    finally:
        stack.stop()
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    log(f"results in {os.path.relpath(os.path.join(work, 'results.json'), bench.ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
