"""Benchmark of cluster mode (run by bench/cluster.sh, which builds fnlb first).

Starts a throwaway PostgreSQL (Debian's server programs, initdb into a scratch directory, as the postgres user when
run as root) and fnlb nodes on loopback addresses of their own, then measures:

1. propagation: CHANGES rules created one at a time through node A while wrk loads nodes B and C; for each, the
   time from A's answer to the first request on B and on C that sees the new rule (p50, p99, max);
2. API write latency: the same sequence of ModifyListener calls on a node on SQLite and on a node on PostgreSQL;
3. asynchronous jobs per second: JOBS Event invocations of a trivial function through the queue, with 1 node and
   with 3 nodes;
4. Hello CLB throughput of a node on PostgreSQL (with its invocation logs shipped to the database, and kept local)
   against a node on SQLite, wrk in rounds taking each in turn;
5. the same for a rule forwarding to a server target (examples/upstream.rs), the proxy's path.

Everything listens on 127.0.0.0/8; every process is stopped by its PID at the end.
"""

import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import fnlbapi
from fnlbapi import attempt, deadline_poll, free_port, zip_source

FNLB = os.path.abspath("target/release/fnlb")
HELLO = os.path.abspath("examples/hello-clb/index.py")
CHANGES = int(os.environ.get("CHANGES", "100"))
JOBS = int(os.environ.get("JOBS", "1000"))
DURATION = os.environ.get("DURATION", "8s")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
PHASES = os.environ.get("PHASES", "propagation,writes,throughput,proxy,jobs").split(",")
UPSTREAM = os.path.abspath("target/release/examples/upstream")
PROCS = []
WORK = tempfile.mkdtemp(prefix="fnlb-bench-cluster")
os.chmod(WORK, 0o711)  # the database server's user reaches its directory inside


class Postgres:
    def __init__(self):
        bins = sorted(d for d in os.listdir("/usr/lib/postgresql") if os.path.exists(f"/usr/lib/postgresql/{d}/bin/initdb"))
        if not bins:
            raise SystemExit("PostgreSQL's server programs are missing: apt-get install postgresql")
        self.bin = f"/usr/lib/postgresql/{bins[-1]}/bin"
        self.dir = tempfile.mkdtemp(prefix="pg", dir=WORK)
        os.chmod(self.dir, 0o700)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.stopped = False
        self.run("initdb", "--no-sync", "-A", "trust", "-U", "postgres", "-D", f"{self.dir}/data")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self.run("pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-o", options, "-w", "start")

    def run(self, program, *args):
        command = [f"{self.bin}/{program}", *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=self.dir)

    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def sql(self, statement):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAqc", statement],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.run("pg_ctl", "-D", f"{self.dir}/data", "-m", "immediate", "-w", "stop")


class Node(fnlbapi.Api):
    def __init__(self, name, store=None, address="127.0.0.1", extra=()):
        self.name, self.address = name, address
        self.data = os.path.join(WORK, name)
        self.api_port = free_port()
        args = [FNLB, "serve", "--data-dir", self.data, "--api-addr", f"127.0.0.1:{self.api_port}",
                "--admin-addr", "127.0.0.1:0", "--rules-per-listener", str(CHANGES + 10), *extra]
        if store:
            args += ["--store", store, "--node-id", name, "--listen-address", address]
        self.log = open(os.path.join(WORK, f"{name}.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env={**os.environ, "FNLB_LOG": "warn"})
        PROCS.append(self.proc)
        super().__init__(name, self.data, self.api_port)


def hello_zip():
    with open(HELLO) as f:
        return zip_source(f.read())


# The asynchronous benchmark's function: 100 ms of waiting, as a call to another service would take.
NAPPER = "import time\n\ndef main_handler(event, context):\n    time.sleep(0.1)\n    return 'ok'\n"


def deploy_hello(node, name, port, vip):
    node.call("scf", "CreateFunction", {"FunctionName": name, "Runtime": "Python3.6", "Handler": "index.main_handler",
                                        "Code": {"ZipFile": hello_zip()}})
    lb = node.call("clb", "CreateLoadBalancer", {"LoadBalancerType": "OPEN", "Vip": vip})["LoadBalancerIds"][0]
    listener = node.call("clb", "CreateListener", {"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP"})["ListenerIds"][0]
    rule = node.call("clb", "CreateRule", {"LoadBalancerId": lb, "ListenerId": listener,
                                          "Rules": [{"Domain": "fnlb.test", "Url": "/"}]})["LocationIds"][0]
    node.call("clb", "RegisterFunctionTargets", {"LoadBalancerId": lb, "ListenerId": listener, "LocationId": rule,
              "FunctionTargets": [{"Function": {"FunctionNamespace": "default", "FunctionName": name,
                                                "FunctionQualifier": "$LATEST"}, "Weight": 10}]})
    return lb, listener


def status(address, port, path):
    conn = http.client.HTTPConnection(address, port, timeout=5)
    conn.request("GET", path, headers={"Host": "fnlb.test"})
    code = conn.getresponse().status
    conn.close()
    return code


def wrk(url, duration, connections=32, cpu=None):
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency", "-H", "Host: fnlb.test", url]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def wrk_result(proc):
    out = proc.communicate()[0]
    rps = float(next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")))
    p99 = next(l.split()[1] for l in out.splitlines() if l.strip().startswith("99%"))
    return rps, p99


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def propagation(pg):
    print(f"\n== propagation: {CHANGES} rules created on A, seen on B and C under load ==", file=sys.stderr)
    nodes = [Node(f"prop-{n}", pg.url(), f"127.0.0.{i + 2}") for i, n in enumerate("abc")]
    a, b, c = nodes
    port = free_port()
    lb, listener = deploy_hello(a, "prop-hello", port, "127.0.9.9")
    for n in nodes:
        deadline_poll(f"{n.name} serves", lambda n=n: status(n.address, port, "/") == 200)
    load = [wrk(f"http://{n.address}:{port}/", f"{CHANGES}s", 16) for n in (b, c)]
    lags = {b.name: [], c.name: []}
    try:
        for i in range(CHANGES):
            path = f"/p{i}"
            a.call("clb", "CreateRule", {"LoadBalancerId": lb, "ListenerId": listener,
                                         "Rules": [{"Domain": "fnlb.test", "Url": path}]})
            acked = time.monotonic()
            for n in (b, c):
                deadline_poll(f"{path} on {n.name}", lambda n=n: status(n.address, port, path) != 404, 10, 0.001)
                lags[n.name].append((time.monotonic() - acked) * 1000)
    finally:
        for p in load:
            p.kill()
            p.wait()
    for name, values in lags.items():
        print(f"{name}: p50 {pct(values, 50):.1f} ms, p99 {pct(values, 99):.1f} ms, max {max(values):.1f} ms "
              f"over {len(values)} changes", file=sys.stderr)
    every = lags[b.name] + lags[c.name]
    print(f"propagation B and C: p50 {pct(every, 50):.1f} ms, p99 {pct(every, 99):.1f} ms "
          f"(targets: 250 ms, 1000 ms)", file=sys.stderr)
    for n in nodes:
        stop(n)


def write_latency(pg):
    print("\n== API write latency: 200 ModifyListener calls, one at a time ==", file=sys.stderr)
    results = {}
    for label, store in (("sqlite", None), ("postgres", pg.url())):
        node = Node(f"write-{label}", store, "127.0.0.20")
        lb = node.call("clb", "CreateLoadBalancer", {"LoadBalancerType": "OPEN", "Vip": "127.0.9.10"})["LoadBalancerIds"][0]
        listener = node.call("clb", "CreateListener", {"LoadBalancerId": lb, "Ports": [free_port()], "Protocol": "HTTP"})["ListenerIds"][0]
        took = []
        for i in range(200):
            start = time.monotonic()
            node.call("clb", "ModifyListener", {"LoadBalancerId": lb, "ListenerId": listener, "ListenerName": f"n{i}"})
            took.append((time.monotonic() - start) * 1000)
        results[label] = took
        print(f"{label}: p50 {pct(took, 50):.2f} ms, p99 {pct(took, 99):.2f} ms", file=sys.stderr)
        stop(node)
    print(f"postgres / sqlite p50: {pct(results['postgres'], 50) / pct(results['sqlite'], 50):.2f}x", file=sys.stderr)


def async_jobs(pg_factory):
    print(f"\n== asynchronous jobs: {JOBS} Event invocations of a function that waits 100 ms ==", file=sys.stderr)
    for count in (1, 3):
        pg = pg_factory()
        nodes = [Node(f"jobs{count}-{i}", pg.url(), f"127.0.0.{30 + i}") for i in range(count)]
        a = nodes[0]
        a.call("scf", "CreateFunction", {"FunctionName": "jobs", "Runtime": "Python3.6", "Handler": "index.main_handler",
                                         "Code": {"ZipFile": zip_source(NAPPER)}})
        # Every node has the function's code before the clock starts.
        for n in nodes:
            deadline_poll(f"{n.name} runs the function", lambda n=n: attempt(
                lambda: n.call("scf", "Invoke", {"FunctionName": "jobs"})))
        start = time.monotonic()
        for i in range(JOBS):
            a.call("scf", "Invoke", {"FunctionName": "jobs", "InvocationType": "Event", "ClientContext": "{}"})
        queued = time.monotonic() - start
        deadline_poll("every job done", lambda: pg.sql(
            "SELECT COUNT(*) FROM fnlb.async_invocations WHERE state = 'done'") == str(JOBS), 300, 0.02)
        took = time.monotonic() - start
        logged = "SELECT COALESCE(SUM(records), 0) FROM fnlb.invocation_logs WHERE function LIKE '%/jobs'"
        attempt(lambda: deadline_poll("every job logged", lambda: int(pg.sql(logged)) >= JOBS + count, 5))
        ran_on = pg.sql("SELECT string_agg(node || ':' || n, ' ') FROM (SELECT node, SUM(records) n FROM "
                        "fnlb.invocation_logs WHERE function LIKE '%/jobs' GROUP BY node ORDER BY node) x")
        print(f"{count} node(s): {JOBS / took:.0f} jobs/s ({took:.2f} s, queueing took {queued:.2f} s); ran on {ran_on}",
              file=sys.stderr)
        for n in nodes:
            stop(n)
        pg.stop()


def throughput(pg):
    print(f"\n== Hello CLB on one node: PostgreSQL against SQLite, wrk -c64 {DURATION}, {ROUNDS} rounds ==", file=sys.stderr)
    # The SQLite node binds its VIP, the cluster nodes their own loopback addresses.
    setups = []
    variants = (("sqlite", None, "127.0.0.1", ()), ("postgres", pg.url(), "127.0.0.40", ()),
                ("postgres-local-logs", pg.url(), "127.0.0.41", ("--cluster-logs", "local")))
    for label, store, address, extra in variants:
        node = Node(f"tp-{label}", store, address, extra)
        port = free_port()
        deploy_hello(node, f"tp-{label}", port, "127.0.0.1" if store is None else f"127.0.9.{len(setups) + 11}")
        setups.append(ready_setup(label, node, address, port))
    m = measure_rounds(setups)
    print(f"medians: sqlite {m['sqlite']:.0f}, postgres {m['postgres']:.0f}, postgres with local logs "
          f"{m['postgres-local-logs']:.0f} req/s; postgres / sqlite {m['postgres'] / m['sqlite']:.2f}x, with local "
          f"logs {m['postgres-local-logs'] / m['sqlite']:.2f}x", file=sys.stderr)
    for _, node, _, _ in setups:
        stop(node)


def proxy_throughput(pg):
    print(f"\n== reverse proxy to one server on one node: PostgreSQL against SQLite, wrk -c64 {DURATION}, "
          f"{ROUNDS} rounds ==", file=sys.stderr)
    up_port = free_port()
    upstream = subprocess.Popen(["taskset", "-c", "1", UPSTREAM, f"127.0.0.1:{up_port}"])
    PROCS.append(upstream)
    setups = []
    for label, store, address in (("sqlite", None, "127.0.0.1"), ("postgres", pg.url(), "127.0.0.50")):
        node = Node(f"px-{label}", store, address)
        port = free_port()
        vip = "127.0.0.1" if store is None else f"127.0.9.{len(setups) + 20}"
        lb = node.call("clb", "CreateLoadBalancer", {"LoadBalancerType": "OPEN", "Vip": vip})["LoadBalancerIds"][0]
        listener = node.call("clb", "CreateListener", {"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP",
                                                       "KeepaliveEnable": 1})["ListenerIds"][0]
        rule = node.call("clb", "CreateRule", {"LoadBalancerId": lb, "ListenerId": listener, "Rules": [
            {"Domain": "fnlb.test", "Url": "/", "HealthCheck": {"HealthSwitch": 0}}]})["LocationIds"][0]
        node.call("clb", "RegisterTargets", {"LoadBalancerId": lb, "ListenerId": listener, "LocationId": rule,
                                             "Targets": [{"EniIp": "127.0.0.1", "Port": up_port}]})
        setups.append(ready_setup(label, node, address, port))
    m = measure_rounds(setups)
    print(f"medians: sqlite {m['sqlite']:.0f}, postgres {m['postgres']:.0f} req/s; postgres / sqlite "
          f"{m['postgres'] / m['sqlite']:.2f}x", file=sys.stderr)
    for _, node, _, _ in setups:
        stop(node)


def ready_setup(label, node, address, port):
    """A setup for measure_rounds, once it answers and is warmed up: (label, node, url, rates)."""
    url = f"http://{address}:{port}/"
    deadline_poll(f"{label} answers", lambda: status(address, port, "/") == 200)
    wrk_result(wrk(url, DURATION, 64, cpu=1))  # warm-up
    return label, node, url, []


def measure_rounds(setups):
    """wrk on every setup (label, node, url, rates) in turn, ROUNDS times; the median req/s of each, by label."""
    for r in range(ROUNDS):
        for label, _, url, rates in setups:
            rps, p99 = wrk_result(wrk(url, DURATION, 64, cpu=1))
            rates.append(rps)
            print(f"{label} round {r + 1}: {rps:.0f} req/s, p99 {p99}", file=sys.stderr)
    return {label: statistics.median(rates) for label, _, _, rates in setups}


def stop(node):
    node.proc.terminate()
    try:
        node.proc.wait(30)
    except subprocess.TimeoutExpired:
        node.proc.kill()
        node.proc.wait()


def main():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}", file=sys.stderr)
    started = []
    try:
        pg = Postgres()
        started.append(pg)
        if "propagation" in PHASES:
            propagation(pg)
        if "writes" in PHASES:
            write_latency(pg)
        if "throughput" in PHASES:
            throughput(pg)
        if "proxy" in PHASES:
            proxy_throughput(pg)

        def fresh():
            p = Postgres()
            started.append(p)
            return p
        if "jobs" in PHASES:
            async_jobs(fresh)
    finally:
        for proc in PROCS:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for p in started:
            try:
                p.stop()
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
