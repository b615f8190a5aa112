"""Soak test (run by bench/soak.sh, which builds fnlb first): DURATION of constant HTTP and HTTPS load on a function
rule and a server rule while the configuration changes (rules, targets, weights, certificates), function instances
are killed, a backend server is killed and started again, and fnlb itself is killed with SIGKILL and started again.

It counts the requests that failed outside the windows those events open, the acknowledged API changes lost (a rule
created and acknowledged that is missing after a restart, or one deleted that is back), and samples fnlb's resident
memory and open files, which must level off. Everything runs on 127.0.0.0/8 and is stopped by its PID at the end.
Settings (environment): LOADERS (client threads, 4), CHAOS_INTERVAL (seconds between events, 5), RESTART_INTERVAL
(seconds between restarts of fnlb, 300), SAMPLE_INTERVAL (seconds, 10).
"""

import http.client
import os
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from fnlbapi import Api, attempt, deadline_poll, free_port, zip_source

FNLB = os.path.abspath("target/release/fnlb")
UPSTREAM = os.path.abspath("target/release/examples/upstream")
HELLO = os.path.abspath("examples/hello-clb/index.py")
LOADERS = int(os.environ.get("LOADERS", "4"))
CHAOS_INTERVAL = float(os.environ.get("CHAOS_INTERVAL", "5"))
RESTART_INTERVAL = float(os.environ.get("RESTART_INTERVAL", "300"))
SAMPLE_INTERVAL = float(os.environ.get("SAMPLE_INTERVAL", "10"))
WORK = tempfile.mkdtemp(prefix="fnlb-soak")
VIP = "127.0.0.77"
DOMAIN = "soak.test"
PROCS = []


def seconds(text):
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


class Process:
    """A program started again on demand, always on the same arguments."""

    def __init__(self, name, args):
        self.name, self.args, self.proc = name, args, None
        self.log = open(os.path.join(WORK, f"{name}.log"), "a")

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=self.log, env={**os.environ, "FNLB_LOG": "warn"})
        PROCS.append(self.proc)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


class Windows:
    """Spans of time in which failed requests are expected, by cause."""

    def __init__(self):
        self.spans, self.lock = [], threading.Lock()

    def open(self, cause, start, end):
        with self.lock:
            self.spans.append((cause, start, end))

    def cause(self, at):
        with self.lock:
            return next((c for c, s, e in self.spans if s <= at <= e), None)


class Load(threading.Thread):
    """One client: requests over kept-alive connections, in turn to each (scheme, path), until `stop`."""

    def __init__(self, targets, stop):
        super().__init__(daemon=True)
        self.targets, self.stop, self.ok, self.failed = targets, stop, 0, []
        self.conns = {}

    def connection(self, scheme, port):
        key = (scheme, port)
        if key not in self.conns:
            if scheme == "https":
                context = ssl._create_unverified_context()
                self.conns[key] = http.client.HTTPSConnection(VIP, port, timeout=15, context=context)
            else:
                self.conns[key] = http.client.HTTPConnection(VIP, port, timeout=15)
        return self.conns[key]

    def run(self):
        turn = 0
        while not self.stop.is_set():
            scheme, port, path = self.targets[turn % len(self.targets)]
            turn += 1
            conn = self.connection(scheme, port)
            try:
                conn.request("GET", path, headers={"Host": DOMAIN})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                self.ok += 1
            except (OSError, http.client.HTTPException, RuntimeError) as e:
                self.failed.append((time.monotonic(), f"{scheme} {path}: {e}"))
                conn.close()
                del self.conns[(scheme, port)]
                time.sleep(0.05)


def certificate(name):
    key, cert = os.path.join(WORK, f"{name}.key"), os.path.join(WORK, f"{name}.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN}", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    with open(cert) as c, open(key) as k:
        return {"CertName": name, "CertContent": c.read(), "CertKey": k.read()}


def rss_and_files(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return rss // 1024, len(os.listdir(f"/proc/{pid}/fd"))


def forked_instances():
    """Function instances forked by a zygote: processes running the bootstrap whose parent does too."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{ppid}/cmdline", "rb") as f:
                parent = f.read()
        except OSError:
            continue
        if b"bootstrap" in cmdline and b"bootstrap" in parent:
            found.append(int(pid))
    return found


def main():
    duration = seconds(sys.argv[1] if len(sys.argv) > 1 else "60s")
    api_port, admin_port, http_port, https_port = free_port(), free_port(), free_port(VIP), free_port(VIP)
    backends = [Process(f"upstream-{i}", [UPSTREAM, f"127.0.0.1:{free_port()}"]) for i in range(2)]
    for backend in backends:
        backend.start()
    data = os.path.join(WORK, "fnlb")
    fnlb = Process("fnlb", [FNLB, "serve", "--data-dir", data, "--api-addr", f"127.0.0.1:{api_port}",
                            "--admin-addr", f"127.0.0.1:{admin_port}"])
    fnlb.start()
    api = Api("fnlb", data, api_port)
    certs = [certificate("soak-a"), certificate("soak-b")]

    with open(HELLO) as f:
        api.call("scf", "CreateFunction", {"FunctionName": "soak", "Runtime": "Python3.6", "Handler": "index.main_handler",
                                           "Code": {"ZipFile": zip_source(f.read())}})
    lb = api.call("clb", "CreateLoadBalancer", {"LoadBalancerType": "OPEN", "Vip": VIP})["LoadBalancerIds"][0]
    listeners = {}
    for protocol, port in (("HTTP", http_port), ("HTTPS", https_port)):
        params = {"LoadBalancerId": lb, "Ports": [port], "Protocol": protocol, "KeepaliveEnable": 1}
        if protocol == "HTTPS":
            params["Certificate"] = certs[0]
        listeners[protocol] = api.call("clb", "CreateListener", params)["ListenerIds"][0]
    servers = {}
    for protocol, listener in listeners.items():
        rules = [{"Domain": DOMAIN, "Url": "/fn"}, {"Domain": DOMAIN, "Url": "/srv", "HealthCheck": {"HealthSwitch": 0}}]
        fn, srv = api.call("clb", "CreateRule", {"LoadBalancerId": lb, "ListenerId": listener, "Rules": rules})["LocationIds"]
        api.call("clb", "RegisterFunctionTargets", {"LoadBalancerId": lb, "ListenerId": listener, "LocationId": fn,
                 "FunctionTargets": [{"Function": {"FunctionNamespace": "default", "FunctionName": "soak",
                                                   "FunctionQualifier": "$LATEST"}, "Weight": 10}]})
        targets = [{"EniIp": "127.0.0.1", "Port": int(b.args[1].rsplit(":", 1)[1]), "Weight": 10} for b in backends]
        api.call("clb", "RegisterTargets", {"LoadBalancerId": lb, "ListenerId": listener, "LocationId": srv,
                                            "Targets": targets})
        servers[protocol] = srv
    for scheme, port in (("http", http_port), ("https", https_port)):
        deadline_poll(f"{scheme} answers", lambda: attempt(lambda: probe(scheme, port, "/fn")), 60)

    stop, windows = threading.Event(), Windows()
    paths = [(s, p, path) for s, p in (("http", http_port), ("https", https_port)) for path in ("/fn", "/srv")]
    loaders = [Load(paths[i % len(paths):] + paths[:i % len(paths)], stop) for i in range(LOADERS)]
    for loader in loaders:
        loader.start()

    expected, deleted, acknowledged, lost = set(), set(), 0, []
    samples, events = [], {}
    started = time.monotonic()
    last_restart = last_sample = started
    n = 0

    def verify(when):
        rules = api.call("clb", "DescribeListeners", {"LoadBalancerId": lb, "ListenerIds": [listeners["HTTP"]]})
        urls = {r["Url"] for r in rules["Listeners"][0].get("Rules") or []}
        lost.extend(f"{when}: {u} missing" for u in expected - urls)
        lost.extend(f"{when}: {u} deleted, but back" for u in deleted & urls)

    while time.monotonic() - started < duration:
        time.sleep(CHAOS_INTERVAL)
        now = time.monotonic()
        if now - last_sample >= SAMPLE_INTERVAL:
            samples.append((round(now - started), *rss_and_files(fnlb.proc.pid)))
            last_sample = now
        n += 1
        kind = "restart" if now - last_restart >= RESTART_INTERVAL else ["rule", "weight", "targets", "cert",
                                                                          "instance", "backend"][n % 6]
        events[kind] = events.get(kind, 0) + 1
        try:
            if kind == "rule":
                url = f"/soak-{n}"
                api.call("clb", "CreateRule", {"LoadBalancerId": lb, "ListenerId": listeners["HTTP"],
                                               "Rules": [{"Domain": DOMAIN, "Url": url}]})
                acknowledged += 1
                expected.add(url)
                if len(expected) > 5:
                    gone = sorted(expected)[0]
                    described = api.call("clb", "DescribeListeners", {"LoadBalancerId": lb, "ListenerIds": [listeners["HTTP"]]})
                    location = next(r["LocationId"] for r in described["Listeners"][0]["Rules"] if r["Url"] == gone)
                    api.call("clb", "DeleteRule", {"LoadBalancerId": lb, "ListenerId": listeners["HTTP"],
                                                   "LocationIds": [location]})
                    acknowledged += 1
                    expected.discard(gone)
                    deleted.add(gone)
            elif kind == "weight":
                for protocol, listener in listeners.items():
                    target = [{"EniIp": "127.0.0.1", "Port": int(backends[n % 2].args[1].rsplit(":", 1)[1])}]
                    api.call("clb", "ModifyTargetWeight", {"LoadBalancerId": lb, "ListenerId": listener,
                             "LocationId": servers[protocol], "Targets": target, "Weight": random.randint(1, 10)})
                    acknowledged += 1
            elif kind == "targets":
                # The second backend leaves and comes back: requests in flight to it may fail meanwhile.
                windows.open("targets", now, now + 3)
                port = int(backends[1].args[1].rsplit(":", 1)[1])
                for protocol, listener in listeners.items():
                    params = {"LoadBalancerId": lb, "ListenerId": listener, "LocationId": servers[protocol],
                              "Targets": [{"EniIp": "127.0.0.1", "Port": port}]}
                    api.call("clb", "DeregisterTargets", params)
                    api.call("clb", "RegisterTargets", {**params, "Targets": [{**params["Targets"][0], "Weight": 10}]})
                    acknowledged += 2
            elif kind == "cert":
                api.call("clb", "ModifyListener", {"LoadBalancerId": lb, "ListenerId": listeners["HTTPS"],
                                                   "Certificate": certs[n % 2]})
                acknowledged += 1
            elif kind == "instance":
                victims = forked_instances()
                if victims:
                    windows.open("instance", now, now + 2)
                    os.kill(random.choice(victims), signal.SIGKILL)
            elif kind == "backend":
                windows.open("backend", now, now + 4)
                backends[1].kill()
                time.sleep(1)
                backends[1].start()
            elif kind == "restart":
                windows.open("restart", now, now + 60)
                fnlb.kill()
                fnlb.start()
                api = Api("fnlb", data, api_port)
                deadline_poll("fnlb serves again", lambda: attempt(lambda: probe("http", http_port, "/srv")), 60)
                windows.open("restart", now, time.monotonic() + 3)
                last_restart = time.monotonic()
                verify(f"after the restart at {round(now - started)} s")
        except (RuntimeError, OSError) as e:
            print(f"{round(now - started)} s: {kind}: {e}", flush=True)
    stop.set()
    for loader in loaders:
        loader.join(timeout=30)
    verify("at the end")

    ok = sum(l.ok for l in loaders)
    failures = [f for l in loaders for f in l.failed]
    by_cause = {}
    for at, what in failures:
        cause = windows.cause(at) or "none"
        by_cause.setdefault(cause, []).append(what)
    print(f"\nsoak: {duration:.0f} s, {LOADERS} clients, events {events}")
    print(f"requests answered 200: {ok}; failed: {len(failures)}")
    for cause, whats in sorted(by_cause.items()):
        label = "outside any window" if cause == "none" else f"in {cause} windows"
        print(f"  {label}: {len(whats)}" + (f" (first: {whats[0]})" if whats else ""))
    print(f"acknowledged API changes: {acknowledged}; lost: {len(lost)}")
    for line in lost[:10]:
        print(f"  {line}")
    print("\n  seconds  RSS MB  open files")
    for at, rss, files in samples:
        print(f"  {at:7d}  {rss:6d}  {files:10d}")
    if len(samples) >= 8:
        quarter = len(samples) // 4
        def growth(i):
            early = max(s[i] for s in samples[quarter:2 * quarter])
            late = max(s[i] for s in samples[-quarter:])
            return (late - early) / max(early, 1) * 100
        print(f"growth from the second quarter to the last: RSS {growth(1):+.1f}%, open files {growth(2):+.1f}%")
    return 1 if lost or by_cause.get("none") else 0


def probe(scheme, port, path):
    if scheme == "https":
        conn = http.client.HTTPSConnection(VIP, port, timeout=5, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(VIP, port, timeout=5)
    conn.request("GET", path, headers={"Host": DOMAIN})
    status = conn.getresponse().status
    conn.close()
    return status == 200


if __name__ == "__main__":
    code = 2
    try:
        code = main()
    finally:
        for proc in PROCS:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        subprocess.run(["rm", "-rf", WORK])
    sys.exit(code)
