"""The app under load, as visitors reach it: ``python app.py`` in a subprocess, then

* ``visit``: a /recommend then a /compare call on every dataset the app offers, in turn (the first switch
  and the first comparison a visitor waits for), the server's resident memory after each (``--max-datasets``
  of the app: at most that many stay loaded), then a catalogue uploaded (/recommend_catalogue) and a new
  item ranked (/new_item); the peak resident memory over all of it, sampled every 0.2 s;
* ``load``: N concurrent ``gradio_client`` users calling /recommend (a random test user's history, its
  target, a random reveal share) for S seconds each over loopback: answers, errors, latency p50 / p95,
  resident memory before and after.

  python scripts/load_test_app.py                           # visit every dataset, then 20 users x 60 s
  python scripts/load_test_app.py --skip-visit --users 5 --seconds 10

Writes scripts/results/load_test_app.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from app.service import resident_mb
from jepa4rec.cli import ArgumentParser, command, command_line
from jepa4rec.errors import UserError
from jepa4rec.paths import PROJECT_ROOT, RESULTS_DIR


def start_app(extra: list[str], timeout: float = 600) -> tuple[subprocess.Popen, str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "app.py"), "--port", str(port), *extra], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return proc, url, time.perf_counter() - t0
        except OSError:
            if proc.poll() is not None or time.perf_counter() - t0 > timeout:
                proc.kill()
                raise UserError(f"the app did not start within {timeout:.0f} s (python app.py {' '.join(extra)})",
                                "run that command alone to see why")
            time.sleep(0.3)


class PeakMemory:
    """The largest resident memory of a process, sampled every ``every`` seconds in a thread while in use."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.peak_mb = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, resident_mb(self.pid))
            except OSError:  # the process has ended
                return
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def client_for(url: str):
    """A gradio_client Client for the app on loopback. Without a certificate check: gradio_client opens a new
    httpx connection per call, and with the check each builds a CA context (about 40 ms of CPU a call here),
    which the visitors' process would take from the server's two cores. Over plain http it checks nothing."""
    from gradio_client import Client

    return Client(url, verbose=False, ssl_verify=False)


def visit_all(url: str, pid: int, datasets: list[str]) -> list[dict]:
    """Each dataset in turn as a visitor meets it: a first ranking (the switch), then a first comparison."""
    client = client_for(url)
    out = []
    for name in datasets:
        t = time.perf_counter()
        client.predict(name, [0, 1, 2], 3, 0.5, 10, None, api_name="/recommend")
        first = time.perf_counter() - t
        t = time.perf_counter()
        client.predict(name, [0, 1, 2], None, api_name="/compare")
        out.append({"dataset": name, "first_call_s": round(first, 1), "first_compare_s": round(time.perf_counter() - t, 1),
                    "rss_mb": round(resident_mb(pid))})
        print(f"  {name}: first ranking {out[-1]['first_call_s']} s, first comparison {out[-1]['first_compare_s']} s, "
              f"server RSS {out[-1]['rss_mb']} MB", flush=True)
    return out


def upload_and_new_item(url: str, dataset: str) -> dict:
    """The rest of a visitor's session: a catalogue of their own (the default dataset's items, as a CSV) ranked
    zero-shot, and a typed new item ranked for a history."""
    import csv
    import io

    from jepa4rec.data import load_dataset

    ds = load_dataset(dataset)
    columns = list(dict.fromkeys(k for item in ds.items for k in item))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["item_id"] + columns)
    writer.writerows([key] + [item.get(c, "") for c in columns] for key, item in zip(ds.item_keys, ds.items))
    client = client_for(url)
    t = time.perf_counter()
    client.predict(text.getvalue(), ds.item_keys[:3], ds.item_keys[3], 0.5, 10, "csv", api_name="/recommend_catalogue")
    upload_s = time.perf_counter() - t
    t = time.perf_counter()
    client.predict(dataset, [0, 1, 2], {"title": "A brand-new item"}, None, api_name="/new_item")
    result = {"upload_items": ds.n_items, "upload_s": round(upload_s, 1), "new_item_s": round(time.perf_counter() - t, 1)}
    print(f"  a catalogue of {ds.n_items:,} items uploaded and ranked in {result['upload_s']} s, a new item ranked in "
          f"{result['new_item_s']} s", flush=True)
    return result


def load(url: str, dataset: str, users: int, seconds: float, seed: int) -> dict:
    from jepa4rec.data import load_dataset

    cases = load_dataset(dataset).test_cases()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def visitor(i: int):
        rng = random.Random(seed + i)
        client = client_for(url)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            case = cases[rng.randrange(len(cases))]
            t = time.perf_counter()
            try:
                client.predict(dataset, list(case.history[-20:]), case.target, rng.choice([0.0, 0.3, 0.6, 1.0]), 10, None,
                               api_name="/recommend")
                with lock:
                    latencies.append(time.perf_counter() - t)
            except Exception as err:  # counted and reported, the load goes on
                with lock:
                    errors.append(f"{type(err).__name__}: {err}"[:200])

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return {"dataset": dataset, "users": users, "seconds": seconds, "answers": len(latencies), "errors": len(errors),
            "error_examples": errors[:3], "p50_s": round(float(np.percentile(lat, 50)), 3),
            "p95_s": round(float(np.percentile(lat, 95)), 3), "answers_per_s": round(len(latencies) / seconds, 1)}


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=20, help="concurrent visitors in the load phase")
    p.add_argument("--seconds", type=float, default=60, help="how long each visitor keeps calling")
    p.add_argument("--dataset", default=None, help="dataset for the load phase (default: the app's default)")
    p.add_argument("--skip-visit", action="store_true", help="skip visiting every dataset")
    p.add_argument("--app-args", default="", help="extra arguments for app.py, e.g. '--max-datasets 1'")
    p.add_argument("--seed", type=int, default=0, help="seed of the visitors' users and reveal shares")
    p.add_argument("--out", default=str(RESULTS_DIR / "load_test_app.json"), help="JSON file the figures are written to")
    args = p.parse_args(argv)
    if args.users < 1 or args.seconds <= 0:
        raise UserError(f"--users must be at least 1 and --seconds above 0, got {args.users} and {args.seconds}",
                        "see --help")
    from app.service import DEFAULT_DATASET, AppService

    dataset = args.dataset or DEFAULT_DATASET
    proc, url, ready_s = start_app(args.app_args.split())
    result = {"date": time.strftime("%Y-%m-%d"), "command": command_line("scripts/load_test_app.py", argv),
              "cores": os.cpu_count(), "ready_s": round(ready_s, 1)}
    try:
        result["rss_mb_start"] = round(resident_mb(proc.pid))
        print(f"app ready in {ready_s:.1f} s, RSS {result['rss_mb_start']} MB", flush=True)
        with PeakMemory(proc.pid) as peak:
            if not args.skip_visit:
                result["visit"] = visit_all(url, proc.pid, AppService().dataset_names())
                result["session"] = upload_and_new_item(url, dataset)
                result["peak_rss_mb_session"] = round(peak.peak_mb)
                print(f"peak server RSS over the session: {result['peak_rss_mb_session']} MB", flush=True)
            t = time.perf_counter()
            client_for(url).predict(dataset, [0], None, None, 10, None, api_name="/recommend")  # not timed
            result["warm_up_s"] = round(time.perf_counter() - t, 1)
            result["rss_mb_before_load"] = round(resident_mb(proc.pid))
            print(f"{args.users} users x {args.seconds:.0f} s on {dataset} ...", flush=True)
            result["load"] = load(url, dataset, args.users, args.seconds, args.seed)
            result["rss_mb_after_load"] = round(resident_mb(proc.pid))
        result["peak_rss_mb"] = round(peak.peak_mb)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    r = result["load"]
    print(f"{r['answers']} answers, {r['errors']} errors, p50 {r['p50_s']} s, p95 {r['p95_s']} s, {r['answers_per_s']}/s; "
          f"RSS {result['rss_mb_before_load']} -> {result['rss_mb_after_load']} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
