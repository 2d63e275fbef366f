#!/usr/bin/env python3
"""A soak run (not CI): `sluice serve --demo` with the demo's queries for a
while, an http stream taking posts (its event log rolling 1 MiB segments
and compacted), subscribers (psql COPY SUBSCRIBE) connecting and dropping,
and a table of RSS, open files and data directory size once a minute;
these should stay flat.

usage: scripts/soak.py [--minutes 30] [--binary target/release/sluice]
Standard library and psql only.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--binary", default="target/release/sluice")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="sluice-soak-")
    http, pg = free_port(), free_port()
    server = subprocess.Popen(
        [args.binary, "serve", "--demo", "--http", f"127.0.0.1:{http}", "--pg", f"127.0.0.1:{pg}", "--data-dir", data],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{http}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/v1/streams")
            break
        except OSError:
            time.sleep(0.1)
    queries = [
        "SELECT window_start, status, count(*) AS n FROM TUMBLE(weblog, ts, INTERVAL '5' SECOND) GROUP BY window_start, window_end, status",
        "SELECT ip, count(*) AS hits FROM weblog GROUP BY ip",
        "SELECT a.ip, a.url, b.url AS other FROM weblog a JOIN weblog_b b ON a.ip = b.ip AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND",
    ]
    queries.insert(0, "CREATE STREAM posted (k VARCHAR, v INT) WITH (connector = 'http', segment_bytes = '1048576')")
    queries.append("SELECT k, count(*) AS n, sum(v) AS total FROM posted GROUP BY k")
    for sql in queries:
        request = urllib.request.Request(f"{url}/v1/sql", data=json.dumps({"sql": sql}).encode(), method="POST")
        urllib.request.urlopen(request).read()
    posts = 0

    def post():
        nonlocal posts
        body = "\n".join(json.dumps({"k": f"k{random.randint(0, 999)}", "v": posts}) for _ in range(100))
        request = urllib.request.Request(f"{url}/v1/streams/posted/events?wait=true", data=body.encode(), method="POST")
        urllib.request.urlopen(request).read()
        posts += 1
    subscribers = []
    print("minute  rss_MiB  open_files  data_dir_KiB  subscribers_started  events_posted")
    started = time.time()
    next_sample = started
    total_subscribers = 0
    while time.time() - started < args.minutes * 60:
        # Subscribers come and go: each reads a query for 1 to 10 s.
        if len(subscribers) < 20:
            query = random.choice(["q1", "q2", "q3", "q4"])
            subscribers.append(subprocess.Popen(
                ["timeout", str(random.randint(1, 10)), "psql", "-X", "-h", "127.0.0.1", "-p", str(pg), "-c",
                 f"COPY (SUBSCRIBE TO {query}) TO STDOUT"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            total_subscribers += 1
        subscribers = [s for s in subscribers if s.poll() is None]
        if time.time() >= next_sample:
            minute = (time.time() - started) / 60
            files = len(os.listdir(f"/proc/{server.pid}/fd"))
            print(f"{minute:6.1f}  {rss_kib(server.pid) / 1024:7.1f}  {files:10d}  {dir_bytes(data) / 1024:12.0f}  {total_subscribers:19d}  {posts * 100:13d}", flush=True)
            next_sample += 60
        for _ in range(4):
            post()
            time.sleep(0.05)
    for s in subscribers:
        s.kill()
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(data, ignore_errors=True)


main()
