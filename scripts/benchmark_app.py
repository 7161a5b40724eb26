"""Latency of a reveal-slider move, and the app's cold start and memory.

* ``rerank``: the Recommender's re-rank after a slider move (history vector cached, the partly masked
  target re-encoded, FFN2, cosine against every item, top-10, the target's rank) on a large catalogue,
  p50 / p95 over many (user, reveal) pairs;
* ``app``: ``python app.py`` started in a subprocess: seconds until the page answers, and the
  process's resident memory then and after one ``recommend`` API call.

  python scripts/benchmark_app.py --dataset Instruments_IISAN --checkpoint checkpoints/jepa4rec-tiny-pretrain
  python scripts/benchmark_app.py --skip-app
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import numpy as np

from app.service import resident_mb
from jepa4rec.cli import ArgumentParser, command
from jepa4rec.paths import CHECKPOINTS_DIR, PROJECT_ROOT


def rerank_latency(dataset: str, checkpoint: str, n: int, data_root: str | None) -> dict:
    import torch

    from jepa4rec.data import load_dataset
    from jepa4rec.recommender import Recommender

    ds = load_dataset(dataset, root=data_root)
    rec = Recommender.from_pretrained(checkpoint, ds, device="cpu")
    t0 = time.perf_counter()
    _ = rec.unit_item_vectors
    encode_s = time.perf_counter() - t0
    cases = ds.test_cases()
    rng = np.random.default_rng(0)
    users = rng.choice(len(cases), size=min(n, len(cases)), replace=False)
    times = []
    for u in users:
        case = cases[int(u)]
        rec.history_vector(case.history)  # the history is encoded when it is built, not on a slider move
        for reveal in (0.1, 0.5):
            t = time.perf_counter()
            rec.recommend(case.history, k=10, target=case.target, reveal=reveal)
            times.append((time.perf_counter() - t) * 1000)
    times = np.array(times)
    return {"dataset": dataset, "items": ds.n_items, "moves": len(times), "p50_ms": round(float(np.percentile(times, 50)), 2),
            "p95_ms": round(float(np.percentile(times, 95)), 2), "item_encoding_s": round(encode_s, 1),
            "threads": torch.get_num_threads()}


def app_cold_start(timeout: float = 300) -> dict:
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "app.py"), "--port", str(port)], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > timeout:
                    raise RuntimeError("the app did not start")
                time.sleep(0.2)
        ready_s = time.perf_counter() - t0
        rss_ready = resident_mb(proc.pid)
        from gradio_client import Client

        from app.service import DEFAULT_DATASET

        client = Client(url, verbose=False)
        t1 = time.perf_counter()
        client.predict(DEFAULT_DATASET, [0, 1, 2], 3, 0.5, 10, api_name="/recommend")
        first_call_s = time.perf_counter() - t1
        return {"cold_start_s": round(ready_s, 1), "rss_mb_ready": round(rss_ready), "first_recommend_s": round(first_call_s, 2),
                "rss_mb_after_call": round(resident_mb(proc.pid))}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="Instruments_IISAN", help="catalogue for the re-rank timing (20,618 items)")
    p.add_argument("--checkpoint", default=str(CHECKPOINTS_DIR / "jepa4rec-tiny-pretrain"),
                   help="model directory whose re-rank is timed (the app itself starts on its own default)")
    p.add_data_root_argument()
    p.add_argument("--users", type=int, default=200, help="users timed (two slider positions each)")
    p.add_argument("--skip-app", action="store_true", help="only the re-rank timing")
    args = p.parse_args(argv)
    r = rerank_latency(args.dataset, args.checkpoint, args.users, args.data_root)
    print(f"re-rank after a slider move on {r['dataset']} ({r['items']:,} items, {r['moves']} moves, {r['threads']} threads): "
          f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms (catalogue encoded once in {r['item_encoding_s']} s)")
    if not args.skip_app:
        a = app_cold_start()
        print(f"app cold start: {a['cold_start_s']} s to the first page, {a['rss_mb_ready']} MB resident; first recommend "
              f"call {a['first_recommend_s']} s, then {a['rss_mb_after_call']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
