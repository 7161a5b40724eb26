"""Start ``python app.py`` and take a screenshot of every tab in headless Chromium.

  python scripts/screenshot_app.py --out test-artifacts/screens          # ml-100k, user 0, reveal 30%

Needs Debian's chromium (/usr/bin/chromium) and the ``playwright`` package (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.errors import UserError
from jepa4rec.paths import PROJECT_ROOT

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking"]


@contextlib.contextmanager
def browser_on_app(chromium: str, app_args: tuple[str, ...] = ()):
    """``python app.py`` on a free port and a headless Chromium: yields (browser, url); both stop after."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "app.py"), "--port", str(port), *app_args],
                            cwd=PROJECT_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise UserError(f"python app.py exited with code {proc.returncode} before it served {url}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
            try:
                yield browser, url
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def add_chromium_argument(p) -> None:
    p.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium binary that takes the screenshots")


def check_chromium(path: str) -> None:
    """Checked before the app is started for nothing."""
    if not Path(path).is_file():
        raise UserError(f"no Chromium at --chromium {path}", hint="apt-get install chromium, or give its path")


def open_app(browser, url: str, height: int = 1500):
    """A 1,400 px wide page on the app, once its first ranking is on screen."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(url)
    page.get_by_text("No target chosen").wait_for(timeout=300_000)
    return page


def pick_dataset(page, label: str) -> None:
    """Choose the dataset whose menu entry contains ``label``."""
    page.get_by_label("Dataset").click()
    page.get_by_test_id("dropdown-option").filter(has_text=label).first.click()


def load_user(page, user: int, reveal: int | None = None) -> None:
    """Load a test user (history + true next item), then set the reveal share when one is given."""
    page.get_by_label("User of the test split").fill(str(user))
    page.get_by_role("button", name="Load this user").click()
    page.get_by_text("With 0% revealed").wait_for(timeout=120_000)
    if reveal is not None:
        page.get_by_label("number input for Reveal % of the target's words").fill(str(reveal))
        page.keyboard.press("Enter")


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(PROJECT_ROOT / "test-artifacts" / "screens"), help="folder for the PNG files")
    p.add_argument("--dataset", default=None, help="dataset to select (default: the app's default)")
    p.add_argument("--user", type=int, default=0, help="test-split user to load")
    p.add_argument("--reveal", type=int, default=30, help="reveal percentage to set")
    p.add_argument("--scoring", default=None, help="the Scoring choice to click before loading the user, e.g. "
                   "\"next-item predictor (paper's FFN2)\" (default: the app's default)")
    add_chromium_argument(p)
    args = p.parse_args(argv)
    check_chromium(args.chromium)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with browser_on_app(args.chromium) as (browser, url):
        page = open_app(browser, url)
        if args.dataset:
            pick_dataset(page, args.dataset)
            page.get_by_text("No target chosen").wait_for(timeout=600_000)
        if args.scoring:
            page.get_by_label(args.scoring).check()
        load_user(page, args.user, args.reveal)
        page.get_by_text(f"With {args.reveal}% revealed").first.wait_for(timeout=120_000)
        page.wait_for_selector(".js-plotly-plot", state="attached", timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "1_recommend_reveal.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 1500})  # a phone
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "1b_recommend_reveal_390px.png"), full_page=True)
        # Why this item? on a phone: the explanation's title and bars must fit 390 px.
        page.get_by_text("Why this item?").click()
        page.get_by_label("An item of the lists above, or the target").click()
        page.get_by_test_id("dropdown-option").first.click()
        page.get_by_role("button", name="Explain").click()
        page.get_by_text("Why '").first.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        page.get_by_text("Why this item?").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "1c_explain_390px.png"), full_page=True)
        page.set_viewport_size({"width": 1400, "height": 1500})
        started = time.perf_counter()
        page.get_by_role("tab", name="Embedding map").click()
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=300_000)
        print(f"embedding map drawn {time.perf_counter() - started:.1f} s after its tab was opened")
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "2_embedding_map.png"), full_page=True)
        page.get_by_role("tab", name="Compare models").click()
        page.get_by_role("button", name="Compare for the current history").click()
        page.get_by_text("Items shared").first.wait_for(timeout=600_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "5_compare_models.png"), full_page=True)
        page.get_by_role("tab", name="Experiments").click()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "3_experiments.png"), full_page=True)
        page.get_by_role("tab", name="About").click()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "4_about.png"), full_page=True)
    print(f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
