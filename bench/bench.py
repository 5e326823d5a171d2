#!/usr/bin/env python3
"""Ferry against curl and aria2c on the same machine and the same nginx.

Starts nginx on 127.0.0.1 with four ports (uncapped, and `limit_rate 8m` per connection, each over
plain HTTP and over TLS with a certificate made at start by a CA made at start), generates random
data with SHA-256 manifests, runs every case several times with the tools interleaved
(A B C A B C ...), and prints a markdown table of medians: wall time, MB/s, CPU seconds (user+sys),
peak RSS, and for the resume case the bytes nginx sent twice. A run counts only if every output
file's SHA-256 matches. Cases 1-4 run over http and https (`--schemes`); every tool trusts the CA
(curl --cacert, aria2c --ca-certificate, ferry through SSL_CERT_FILE, which its platform verifier
reads, as curl's --cacert it trusts that file only). `--ferry-before BIN` adds a row for another
ferry binary (an earlier build) to every case, interleaved with the others.
Usage: bench/run.sh [--reps N] [--cases 1,2,3,4,5,6] [--schemes http,https] [--quick].
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Run:
    """One measured process run."""

    def __init__(self, wall, cpu, rss_kb, rc):
        self.wall, self.cpu, self.rss_kb, self.rc = wall, cpu, rss_kb, rc


def settle():
    """Flushes the page cache's dirty data before a measured run, so that one tool's unwritten
    output (curl and aria2 do not sync) does not throttle the next tool's writes."""
    os.sync()


def measure(cmd, timeout=900, kill_after=None, env=None):
    """Runs cmd under GNU time; returns a Run with wall seconds, user+sys seconds and peak RSS (KiB).
    (Measuring through wait4 here would report this Python process's RSS: a forked child inherits
    its parent's high-water mark.) With kill_after, the process group gets SIGKILL after that long."""
    fd, stats = tempfile.mkstemp(prefix="bench-time-")
    os.close(fd)
    t0 = time.monotonic()
    p = subprocess.Popen(["/usr/bin/time", "-f", "%U %S %M", "-o", stats, *cmd], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    limit = kill_after if kill_after is not None else timeout
    try:
        _, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
    wall = time.monotonic() - t0
    cpu, rss = 0.0, 0
    try:
        parts = open(stats).read().split()
        cpu, rss = float(parts[-3]) + float(parts[-2]), int(parts[-1])
    except (OSError, ValueError, IndexError):
        pass
    os.remove(stats)
    if p.returncode != 0 and kill_after is None:
        log(f"  ! {' '.join(cmd[:3])}... exited {p.returncode}: {err.decode(errors='replace').strip()[:300]}")
    return Run(wall, cpu, rss, p.returncode)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


class Nginx:
    def __init__(self, work, www):
        self.dir = os.path.join(work, "nginx")
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.www = www
        self.proc = None

    def start(self):
        import socket

        ports = []
        for _ in range(4):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
            s.close()
        self.fast, self.capped, self.fast_tls, self.capped_tls = ports
        d = self.dir
        self.ca = make_certificates(d)
        tls = f"ssl_certificate {d}/leaf.pem; ssl_certificate_key {d}/leaf.key; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;"
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = f"""{user}
daemon off;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format bench '$uri $status $body_bytes_sent';
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{self.fast}; root {self.www}; }}
  server {{ listen 127.0.0.1:{self.capped}; root {self.www}; limit_rate 8m; access_log {d}/access.log bench; }}
  server {{ listen 127.0.0.1:{self.fast_tls} ssl; {tls} root {self.www}; }}
  server {{ listen 127.0.0.1:{self.capped_tls} ssl; {tls} root {self.www}; limit_rate 8m; access_log {d}/access.log bench; }}
}}
"""
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([binary, "-p", d, "-c", os.path.join(d, "nginx.conf")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                for port in ports:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start: " + open(os.path.join(d, "error.log")).read())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def url(self, capped, path, tls=False):
        if tls:
            return f"https://127.0.0.1:{self.capped_tls if capped else self.fast_tls}/{path}"
        return f"http://127.0.0.1:{self.capped if capped else self.fast}/{path}"

    def log_offset(self):
        p = os.path.join(self.dir, "access.log")
        return os.path.getsize(p) if os.path.exists(p) else 0

    def bytes_sent(self, since, uri):
        time.sleep(0.3)  # let nginx log the connections the kill closed
        with open(os.path.join(self.dir, "access.log"), "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        total = 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == uri:
                total += int(parts[2])
        return total


def make_certificates(d):
    """A CA and a certificate it signs for 127.0.0.1 (ECDSA P-256), made with openssl; returns the
    CA's PEM path."""
    ext = os.path.join(d, "leaf.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "3", "-subj", "/CN=Ferry bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("req", *ec, "-keyout", f"{d}/leaf.key", "-out", f"{d}/leaf.csr", "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", f"{d}/leaf.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-CAcreateserial",
        "-out", f"{d}/leaf.pem", "-days", "3", "-extfile", ext)
    return f"{d}/ca.pem"


def make_data(work, quick):
    www = os.path.join(work, "www")
    os.makedirs(os.path.join(www, "small"), exist_ok=True)
    big_size = (256 if quick else 1024) * MIB
    mid_size = (64 if quick else 256) * MIB
    manifest_path = os.path.join(work, "manifest.json")
    if os.path.exists(manifest_path):
        m = json.load(open(manifest_path))
        files = [os.path.join(www, "big.bin"), os.path.join(www, "mid.bin")] + [os.path.join(www, "small", n) for n in m.get("small", {})]
        if m.get("big_size") == big_size and m.get("mid_size") == mid_size and len(files) == 1002 and all(map(os.path.exists, files)):
            return www, m
    log("generating data (random bytes, SHA-256 manifests)...")

    def random_file(path, size):
        with open("/dev/urandom", "rb") as src, open(path, "wb") as dst:
            left = size
            while left:
                b = src.read(min(left, 8 * MIB))
                dst.write(b)
                left -= len(b)
        return sha256_file(path)

    m = {"big_size": big_size, "mid_size": mid_size}
    m["big"] = random_file(os.path.join(www, "big.bin"), big_size)
    m["mid"] = random_file(os.path.join(www, "mid.bin"), mid_size)
    m["small"] = {}
    for i in range(1000):
        name = f"f{i:04d}.bin"
        m["small"][name] = random_file(os.path.join(www, "small", name), 16 * 1024)
    json.dump(m, open(manifest_path, "w"))
    return www, m


def warm(www, manifest):
    """Reads every served file once, so that the first tool of the first round does not read its
    source from the disk while every later run gets it from the page cache (Ferry's defaults, first
    in round 1 of case 1, took 1.4-3.3 s there in three runs, against about 1.0 s in the later
    rounds of a quiet run)."""
    names = ["big.bin", "mid.bin"] + [os.path.join("small", n) for n in manifest["small"]]
    for name in names:
        with open(os.path.join(www, name), "rb") as f:
            while f.read(8 * MIB):
                pass


def case_key(case, tls):
    """Results are keyed by case and scheme: "1", "1 https"."""
    return f"{case} https" if tls else str(case)


def scheme_suffix(key):
    return " (https)" if key.endswith("https") else ""


def rotated(items, rep):
    """The tools in a different order each round (A B C, B C A, ...): no tool always runs first."""
    items = list(items)
    k = rep % len(items)
    return items[k:] + items[:k]


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    return path


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = os.path.join(ROOT, "bench", "out")
        os.makedirs(self.work, exist_ok=True)
        self.ferry = os.path.join(ROOT, "target", "release", "ferry")
        self.before = os.path.abspath(args.ferry_before) if args.ferry_before else None
        self.results = {}  # case key ("1", "1 https", ...) -> tool -> list of dict

    def ferry_env(self, tls):
        """Ferry's environment: over TLS its platform verifier reads the bench CA from SSL_CERT_FILE
        (the one root it trusts, as curl --cacert), and no proxy applies. SSL_CERT_DIR is dropped:
        where a machine sets it, the verifier would also parse every certificate in that directory
        at start (curl and aria2 are given the one CA file only)."""
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        if tls:
            env["SSL_CERT_FILE"] = self.ng.ca
            env.pop("SSL_CERT_DIR", None)
        return env

    def curl_tls(self, tls):
        return ["--cacert", self.ng.ca] if tls else []

    def aria_tls(self, tls):
        return [f"--ca-certificate={self.ng.ca}"] if tls else []

    def with_before(self, tools, default_flags):
        """The tools, plus the earlier ferry build's defaults when one was given."""
        return list(tools) + ([("ferry (before)", default_flags)] if self.before else [])

    def record(self, case, tool, **values):
        self.results.setdefault(case, {}).setdefault(tool, []).append(values)

    def single(self, case, tool, cmd, out, want, size, env=None, **extra):
        if os.path.exists(out):
            os.remove(out)
        settle()
        r = measure(cmd, env=env)
        ok = r.rc == 0 and os.path.exists(out) and sha256_file(out) == want
        if not ok:
            log(f"  ! {tool}: output missing or wrong SHA-256; run not counted")
            return
        self.record(case, tool, wall=r.wall, mbps=size / r.wall / 1e6, cpu=r.cpu, cpu_per_gib=r.cpu / (size / (1 << 30)), rss=r.rss_kb / 1024, **extra)
        log(f"  {tool:<16} {r.wall:7.2f}s {size / r.wall / 1e6:8.1f} MB/s cpu {r.cpu:5.2f}s rss {r.rss_kb / 1024:6.1f} MB")

    def ferry_get(self, url, out, *flags, binary=None):
        state = fresh(os.path.join(self.work, "ferry-state"))
        return [binary or self.ferry, "--state-dir", state, "get", url, "-o", out, "--quiet", "--overwrite", *flags]

    def case_file(self, case, capped, name, want, size, tools, tls=False):
        key = case_key(case, tls)
        outdir = fresh(os.path.join(self.work, "dl"))
        out = os.path.join(outdir, name)
        url = self.ng.url(capped, name, tls)
        for rep in range(self.args.reps):
            log(f"case {key}, round {rep + 1}/{self.args.reps}")
            for tool, flags in rotated(tools, rep):
                env = None
                if tool.startswith("ferry"):
                    cmd = self.ferry_get(url, out, *flags, binary=self.before if tool == "ferry (before)" else None)
                    env = self.ferry_env(tls)
                elif tool == "curl":
                    cmd = ["curl", "-s", "-f", *self.curl_tls(tls), "-o", out, url]
                elif tool == "curl + fdatasync":
                    # Durable like ferry's output: syncfs covers the data and the new directory entry.
                    cmd = ["sh", "-c", 'curl -s -f -o "$0" "$@" && sync --file-system "$0"', out, *self.curl_tls(tls), url]
                else:
                    cmd = ["aria2c", "-q", *flags, *self.aria_tls(tls), "-d", outdir, "-o", name, "--allow-overwrite=true", "--auto-file-renaming=false", url]
                self.single(key, tool, cmd, out, want, size, env=env)
                if os.path.exists(out):
                    os.remove(out)

    def case3(self, tls=False):
        key = case_key(3, tls)
        small = self.manifest["small"]
        names = sorted(small)
        urls = [self.ng.url(False, f"small/{n}", tls) for n in names]
        size = 16 * 1024 * len(names)
        listing = os.path.join(self.work, "list.txt")
        with open(listing, "w") as f:
            f.write("\n".join(f"{u} {n}" for u, n in zip(urls, names)) + "\n")
        aria_list = os.path.join(self.work, "aria.txt")
        with open(aria_list, "w") as f:
            f.write("".join(f"{u}\n  out={n}\n" for u, n in zip(urls, names)))
        # Every run writes into a directory of its own, and all of them are deleted only after the
        # whole benchmark. On this machine's ext4 (no journal), creating a file within a minute
        # or more of mass deletions scans past every recently freed inode: a tool's time then grew
        # with each earlier run (curl 0.64 s, 0.97 s, 1.09 s, 1.48 s in four rounds) and measured
        # the deletions, not the tools. Deleting a case's 60,000 files at its end made the next
        # case (https after http) pay for them: 0.32 s a batch instead of about 0.12 s.
        runs = fresh(os.path.join(self.work, "many-runs", key.replace(" ", "-")))
        tools = ["ferry batch", "curl --parallel", "curl --parallel + fdatasync", "aria2c -j16"] + (["ferry batch (before)"] if self.before else [])
        for rep in range(self.case3_rounds()):
            log(f"case {key}, round {rep + 1}/{self.case3_rounds()}")
            for i, tool in enumerate(rotated(tools, rep)):
                outdir = fresh(os.path.join(runs, f"{rep}-{i}"))
                settle()
                env = None
                if tool.startswith("ferry batch"):
                    state = fresh(os.path.join(runs, f"{rep}-{i}-state"))
                    binary = self.before if tool.endswith("(before)") else self.ferry
                    cmd = [binary, "--state-dir", state, "batch", "-i", listing, "-j", "16", "-d", outdir, "--quiet"]
                    env = self.ferry_env(tls)
                elif tool.startswith("curl --parallel"):
                    cmd = ["curl", "-s", "-f", *self.curl_tls(tls), "--parallel", "--parallel-max", "16", "--output-dir", outdir]
                    for u, n in zip(urls, names):
                        cmd += ["-o", n, u]
                    if tool.endswith("fdatasync"):
                        # Durable like ferry's files; one syncfs covers all data and directory entries.
                        cmd = ["sh", "-c", '"$@" && sync --file-system "$0"', outdir, *cmd]
                else:
                    cmd = ["aria2c", "-q", *self.aria_tls(tls), "-i", aria_list, "-j16", "-d", outdir, "--allow-overwrite=true"]
                r = measure(cmd, env=env)
                ok = r.rc == 0 and all(os.path.exists(os.path.join(outdir, n)) and sha256_file(os.path.join(outdir, n)) == small[n] for n in names)
                if not ok:
                    log(f"  ! {tool}: outputs missing or wrong; run not counted")
                    continue
                self.record(key, tool, wall=r.wall, mbps=size / r.wall / 1e6, cpu=r.cpu, cpu_per_gib=r.cpu / (size / (1 << 30)), rss=r.rss_kb / 1024, files_per_s=len(names) / r.wall, round=rep)
                log(f"  {tool:<16} {r.wall:7.2f}s {len(names) / r.wall:8.0f} files/s cpu {r.cpu:5.2f}s rss {r.rss_kb / 1024:6.1f} MB")

    def case3_rounds(self):
        """Case 3 takes under a second a round, and its tools differ by a few milliseconds, well
        inside one machine's round-to-round spread (curl alone: 0.07-0.12 s in one day): it runs
        three times the rounds of the other cases, so that its medians hold still."""
        return 3 * self.args.reps

    def paired(self, case, tool, ref):
        """Per round in which both ran: `tool`'s speed against `ref`'s (`ref`'s wall time over `tool`'s,
        as in the tables). Interleaved runs of one round share the machine's state of the moment, so
        these ratios cancel what drifts between rounds."""
        by_round = {r["round"]: r["wall"] for r in self.results.get(case, {}).get(ref, []) if "round" in r}
        return [by_round[r["round"]] / r["wall"] for r in self.results.get(case, {}).get(tool, []) if r.get("round") in by_round]

    def case4(self, tls=False):
        key = case_key(4, tls)
        name = "big.bin"
        size = self.manifest["big_size"]
        want = self.manifest["big"]
        url = self.ng.url(True, name, tls)
        tools = ["ferry", "aria2c -x16 -c"] + (["ferry (before)"] if self.before else [])
        for rep in range(self.args.reps):
            log(f"case {key}, round {rep + 1}/{self.args.reps}")
            for tool in rotated(tools, rep):
                outdir = fresh(os.path.join(self.work, "resume"))
                out = os.path.join(outdir, name)
                since = self.ng.log_offset()
                env = None
                if tool.startswith("ferry"):
                    state = fresh(os.path.join(self.work, "ferry-state"))
                    cmd = [self.before if tool == "ferry (before)" else self.ferry, "--state-dir", state, "get", url, "-o", out, "--quiet"]
                    env = self.ferry_env(tls)
                else:
                    cmd = ["aria2c", "-q", "-x16", "-s16", "-k1M", "-c", *self.aria_tls(tls), "-d", outdir, "-o", name, "--auto-file-renaming=false", url]
                settle()
                first = measure(cmd, kill_after=self.args.kill_after, env=env)
                second = measure(cmd, env=env)
                ok = second.rc == 0 and os.path.exists(out) and sha256_file(out) == want
                sent = self.ng.bytes_sent(since, "/" + name)
                twice = max(0, sent - size)
                if not ok:
                    log(f"  ! {tool}: resume failed or wrong SHA-256; run not counted")
                    continue
                self.record(key, tool, wall=second.wall, twice_mib=twice / MIB, cpu=first.cpu + second.cpu, rss=max(first.rss_kb, second.rss_kb) / 1024)
                log(f"  {tool:<16} killed at {first.wall:.1f}s, resume took {second.wall:6.2f}s, sent twice {twice / MIB:8.2f} MiB")

    def case5(self):
        log("case 5: 10,000 tasks")
        exe = os.path.join(ROOT, "target", "release", "examples", "scale")
        for rep in range(self.args.reps):
            state = fresh(os.path.join(self.work, "scale-state"))
            p = subprocess.run([exe, state, self.ng.url(False, "small/f0000.bin"), fresh(os.path.join(self.work, "scale-out"))],
                               capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                log("  ! scale example failed: " + p.stderr[-500:])
                continue
            v = json.loads(p.stdout.strip().splitlines()[-1])
            self.record("5", "ferry", **v)
            log(f"  enqueue {v['enqueue_ms']:.0f} ms, rss {v['rss_mb']:.1f} MB, reopen {v['reopen_ms']:.0f} ms, list {v['list_ms']:.0f} ms")

    def case6(self):
        log("case 6: one state directory, one process or four")
        exe = os.path.join(ROOT, "target", "release", "examples", "shared_dir")
        for rep in range(self.args.reps):
            for processes in (1, 4):
                state = fresh(os.path.join(self.work, "shared-state"))
                out = fresh(os.path.join(self.work, "shared-out"))
                p = subprocess.run([exe, state, out, str(processes), "2500"], capture_output=True, text=True, timeout=600)
                if p.returncode != 0:
                    log("  ! shared_dir example failed: " + p.stderr[-500:])
                    continue
                v = json.loads(p.stdout.strip().splitlines()[-1])
                self.record("6", f"{processes} process" + ("es" if processes > 1 else ""), **v)
                log(f"  {processes} process(es): enqueue 2500 {v['enqueue_ms']:.0f} ms, one {v['enqueue_one_us']:.0f} us, "
                    f"status {v['status_us']:.2f} us, list of {v['tasks_seen']} {v['list_ms']:.1f} ms")

    def run(self):
        www, self.manifest = make_data(self.work, self.args.quick)
        warm(www, self.manifest)
        self.ng = Nginx(self.work, www)
        self.ng.start()
        try:
            cases = [int(c) for c in self.args.cases.split(",")]
            schemes = [s.strip() for s in self.args.schemes.split(",")]
            big, mid = self.manifest["big_size"], self.manifest["mid_size"]
            for tls in [s == "https" for s in schemes]:
                if 1 in cases:
                    self.case_file(1, False, "big.bin", self.manifest["big"], big, self.with_before([
                        ("ferry (defaults)", []), ("ferry -x1", ["-x", "1"]), ("ferry -x8", ["-x", "8"]),
                        ("curl", []), ("curl + fdatasync", []), ("aria2c -x8", ["-x8", "-s8", "-k1M"])], []), tls)
                if 2 in cases:
                    self.case_file(2, True, "mid.bin", self.manifest["mid"], mid, self.with_before([
                        ("ferry (defaults)", []), ("ferry -x16", ["-x", "16"]), ("ferry -x32", ["-x", "32"]),
                        ("curl", []), ("aria2c -x16", ["-x16", "-s16", "-k1M"])], []), tls)
                if 3 in cases:
                    self.case3(tls)
                if 4 in cases:
                    self.case4(tls)
            if 5 in cases:
                self.case5()
            if 6 in cases:
                self.case6()
        finally:
            self.ng.stop()
            shutil.rmtree(os.path.join(self.work, "many-runs"), ignore_errors=True)
        return self.table()

    def table(self):
        def med(case, tool, key):
            vals = [r[key] for r in self.results.get(case, {}).get(tool, []) if key in r]
            return statistics.median(vals) if vals else None

        def fmt(v, spec):
            return "n/a" if v is None else format(v, spec)

        cpu_model = ""
        try:
            cpu_model = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
        except Exception:
            pass
        lines = [
            f"Benchmarks of {datetime.date.today().isoformat()} on {os.cpu_count()} cores ({cpu_model}), {platform.system()} {platform.release()}; "
            f"nginx and the clients share the machine; medians of {self.args.reps} interleaved runs ({self.case3_rounds()} for case 3); every counted run verified by SHA-256.",
            "",
        ]
        titles = {
            1: f"Case 1: {self.manifest['big_size'] // MIB} MiB, uncapped nginx",
            2: f"Case 2: {self.manifest['mid_size'] // MIB} MiB, nginx limit_rate 8m per connection",
            3: "Case 3: 1000 × 16 KiB, 16 at a time",
        }
        keys = [case_key(c, tls) for tls in (False, True) for c in (1, 2, 3)]
        for key in keys:
            if key not in self.results:
                continue
            case = int(key.split()[0])
            order = {1: ["ferry (defaults)", "ferry (before)", "ferry -x1", "ferry -x8", "curl", "curl + fdatasync", "aria2c -x8"],
                     2: ["ferry (defaults)", "ferry (before)", "ferry -x16", "ferry -x32", "curl", "aria2c -x16"],
                     3: ["ferry batch", "ferry batch (before)", "curl --parallel", "curl --parallel + fdatasync", "aria2c -j16"]}[case]
            tools = [t for t in order if t in self.results[key]]
            ref = "curl" if case == 1 else ("aria2c -x16" if case == 2 else "curl --parallel")
            durable_ref = {1: "curl + fdatasync", 3: "curl --parallel + fdatasync"}.get(case)
            extra = f" vs {durable_ref} |" if durable_ref else ""
            wall_spec = ".3f" if case == 3 else ".2f"
            lines += [f"### {titles[case]}{scheme_suffix(key)}", "", f"| tool | wall s | MB/s | vs {ref} |{extra} CPU s | CPU s/GiB | peak RSS MB |",
                      "|---|---|---|---|" + ("---|" if durable_ref else "") + "---|---|---|"]
            ref_mbps = med(key, ref, "mbps")
            durable_mbps = med(key, durable_ref, "mbps") if durable_ref else None
            for t in tools:
                mbps = med(key, t, "mbps")
                ratio = (mbps / ref_mbps) if (mbps and ref_mbps) else None
                dcol = ""
                if durable_ref:
                    dratio = (mbps / durable_mbps) if (mbps and durable_mbps) else None
                    dcol = f" {fmt(dratio, '.2f')}× |"
                lines.append(f"| {t} | {fmt(med(key, t, 'wall'), wall_spec)} | {fmt(mbps, '.1f')} | {fmt(ratio, '.2f')}× |{dcol} {fmt(med(key, t, 'cpu'), '.2f')} | {fmt(med(key, t, 'cpu_per_gib'), '.2f')} | {fmt(med(key, t, 'rss'), '.1f')} |")
            lines.append("")
            if case == 3:
                for other in ("curl --parallel", "curl --parallel + fdatasync", "ferry batch (before)"):
                    ratios = self.paired(key, "ferry batch", other)
                    if ratios:
                        ahead = sum(1 for x in ratios if x >= 1.0)
                        lines.append(f"Round by round, ferry batch vs {other}: median {statistics.median(ratios):.2f}× "
                                     f"(range {min(ratios):.2f}-{max(ratios):.2f}×); ferry as fast or faster in {ahead} of {len(ratios)} rounds.  ")
                lines.append("")
        for key in (case_key(4, False), case_key(4, True)):
            if key not in self.results:
                continue
            lines += [f"### Case 4: resume {self.manifest['big_size'] // MIB} MiB from the capped nginx after SIGKILL at {self.args.kill_after:g} s{scheme_suffix(key)}", "",
                      "| tool | sent twice MiB | resume wall s | CPU s (both runs) | peak RSS MB |", "|---|---|---|---|---|"]
            for t in sorted(self.results[key]):
                lines.append(f"| {t} | {fmt(med(key, t, 'twice_mib'), '.2f')} | {fmt(med(key, t, 'wall'), '.2f')} | {fmt(med(key, t, 'cpu'), '.2f')} | {fmt(med(key, t, 'rss'), '.1f')} |")
            lines.append("")
        if "5" in self.results:
            lines += ["### Case 5: 10,000 tasks in one manager", "", "| enqueue ms | RSS after enqueue MB | reopen ms | list ms |", "|---|---|---|---|",
                      f"| {fmt(med('5', 'ferry', 'enqueue_ms'), '.0f')} | {fmt(med('5', 'ferry', 'rss_mb'), '.1f')} | {fmt(med('5', 'ferry', 'reopen_ms'), '.0f')} | {fmt(med('5', 'ferry', 'list_ms'), '.0f')} |", ""]
        if "6" in self.results:
            lines += ["### Case 6: one state directory shared by one process or four (2,500 tasks each, enqueued at once)", "",
                      "| processes | enqueue 2,500 ms | one enqueue µs | status() µs | tasks seen | list ms |", "|---|---|---|---|---|---|"]
            for t in ("1 process", "4 processes"):
                if t in self.results["6"]:
                    lines.append(f"| {t} | {fmt(med('6', t, 'enqueue_ms'), '.0f')} | {fmt(med('6', t, 'enqueue_one_us'), '.0f')} | "
                                 f"{fmt(med('6', t, 'status_us'), '.2f')} | {fmt(med('6', t, 'tasks_seen'), '.0f')} | {fmt(med('6', t, 'list_ms'), '.1f')} |")
            lines.append("")
        return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cases", default="1,2,3,4,5,6")
    ap.add_argument("--kill-after", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="smaller files, for trying the harness")
    ap.add_argument("--schemes", default="http,https", help="run cases 1-4 over these (http, https)")
    ap.add_argument("--ferry-before", help="another ferry binary (an earlier build) to run beside this one")
    args = ap.parse_args()
    b = Bench(args)
    table = b.run()
    print(table)
    out = os.path.join(ROOT, "bench", "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(b.results, f, indent=1)


if __name__ == "__main__":
    main()
