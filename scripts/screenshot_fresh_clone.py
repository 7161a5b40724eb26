"""What a visitor of a fresh clone (or a Hugging Face Space) meets: no data beside the project, every app dataset
still offered, the page's message when a dataset cannot be fetched, and a first download with its progress.

  python scripts/screenshot_fresh_clone.py --out test-artifacts/fresh_clone

Runs ``python app.py`` twice with an empty data root and an empty cache: once with the dataset mirror
unreachable (``JEPA4REC_DATA_URL`` pointing at a closed port: what a machine without network sees), once with
a local mirror that serves ``../shared/data``'s copies of the public files at ``--rate`` MB/s (slow enough to
see the progress bar), in the layout of raw.githubusercontent.com, so the real download code runs end to end.
Prints the first switch to Scientific (download included) and writes the screenshots:
1_fresh_clone_datasets.png, 2_offline_message.png, 3_download_progress.png, 4_downloaded_and_ranked.png.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot_app import (PROJECT_ROOT, add_chromium_argument, browser_on_app, check_chromium, load_user,  # noqa: E402
                            open_app, pick_dataset)

from jepa4rec.cli import ArgumentParser, command  # noqa: E402
from jepa4rec.data.sources import SOURCES  # noqa: E402
from jepa4rec.errors import UserError  # noqa: E402
from jepa4rec.paths import data_root  # noqa: E402

DATASET, LABEL = "Scientific_UniSRec", "Amazon Scientific"


class SlowMirror(BaseHTTPRequestHandler):
    """GET /<owner>/<repo>/<commit>/<path>/<file> -> the local copy of that public file, at ``rate`` bytes/s."""

    def __init__(self, *args, files: dict[str, Path], rate: float, **kwargs):
        self.files, self.rate = files, rate
        super().__init__(*args, **kwargs)

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.files.get(self.path)
        if path is None:
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        chunk = 64 * 1024
        for start in range(0, len(body), chunk):
            self.wfile.write(body[start:start + chunk])
            time.sleep(chunk / self.rate)


def start_mirror(root: Path, rate_mb: float) -> ThreadingHTTPServer:
    files = {}
    for name in (DATASET,):
        source = SOURCES[name]
        for f in source.files:
            files[f"/{source.repo}/{source.commit}/{source.path}/{f.name}"] = root / source.folder / f.name
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise UserError(f"the mirror needs the public files under {root}; missing: {', '.join(missing)}",
                        hint="give --data-root the folder that holds them (../shared/data)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SlowMirror, files=files, rate=rate_mb * 2**20))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def closed_port() -> int:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(PROJECT_ROOT / "test-artifacts" / "fresh_clone"), help="folder for the PNG files")
    p.add_data_root_argument("folder whose copies of the public files the local mirror serves")
    p.add_argument("--rate", type=float, default=0.5, help="the mirror's speed in MB/s")
    add_chromium_argument(p)
    args = p.parse_args(argv)
    check_chromium(args.chromium)
    if args.rate <= 0:
        raise UserError(f"--rate must be above 0 MB/s, got {args.rate}", hint="e.g. --rate 0.5")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shared = data_root(args.data_root)
    with tempfile.TemporaryDirectory(prefix="jepa4rec-fresh-") as tmp:
        os.environ["JEPA4REC_CACHE"] = str(Path(tmp) / "cache")  # nothing cached: a first visit
        empty = Path(tmp) / "data"
        empty.mkdir()
        os.environ["JEPA4REC_DATA_URL"] = f"http://127.0.0.1:{closed_port()}"
        with browser_on_app(args.chromium, ("--data-root", str(empty))) as (browser, url):
            page = open_app(browser, url, 1100)
            page.get_by_label("Dataset").click()
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / "1_fresh_clone_datasets.png"))
            page.get_by_test_id("dropdown-option").filter(has_text=LABEL).first.click()
            page.get_by_text("is not available here").first.wait_for(timeout=120_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / "2_offline_message.png"))
        mirror = start_mirror(shared, args.rate)
        os.environ["JEPA4REC_DATA_URL"] = f"http://127.0.0.1:{mirror.server_address[1]}"
        try:
            with browser_on_app(args.chromium, ("--data-root", str(empty))) as (browser, url):
                page = open_app(browser, url, 1100)
                started = time.perf_counter()
                pick_dataset(page, LABEL)
                page.get_by_text("downloading").first.wait_for(timeout=60_000)
                page.wait_for_timeout(2000)
                page.screenshot(path=str(out / "3_download_progress.png"))
                load_user(page, 0)
                print(f"{DATASET}: downloaded at {args.rate} MB/s and ranked {time.perf_counter() - started:.1f} s after "
                      f"it was picked ({SOURCES[DATASET].size / 2**20:.1f} MB)")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out / "4_downloaded_and_ranked.png"), full_page=True)
        finally:
            mirror.shutdown()
    print(f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
