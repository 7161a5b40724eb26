"""Start ``python app.py`` and take screenshots of a shop owner's path through "Your catalogue" in headless
Chromium: the scoreboard, the adaptation's progress, a cancelled adaptation, the adapted scoreboard, and
each bad-input message (interactions naming unknown items, one-purchase customers and duplicate rows
counted; a time column in a strange format, and too many customers to score all, refused).

  python scripts/measure_shop_upload.py --dataset Scientific_UniSRec --work-dir runs/shop   # writes the two CSVs
  python scripts/screenshot_shop.py --items runs/shop/Scientific_UniSRec_items.csv \\
      --interactions runs/shop/Scientific_UniSRec_interactions.csv --out test-artifacts/shop

Needs Debian's chromium (/usr/bin/chromium) and the ``playwright`` package (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.errors import UserError
from jepa4rec.paths import PROJECT_ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling script, whether run or imported
from screenshot_app import add_chromium_argument, browser_on_app, check_chromium, open_app  # noqa: E402

LONG = 900_000  # ms: a scoreboard of every customer, or an adaptation, takes minutes on two cores


def upload(page, folder: Path, items: Path, interactions: Path | None) -> None:
    """Put the two files in the tab's boxes and press *Use this catalogue*."""
    for box, path in (("#items-file", items), ("#interactions-file", interactions)):
        if path is None:
            continue
        clear = page.locator(box).get_by_label("Clear")
        if clear.count():
            clear.first.click()
        with page.expect_file_chooser() as chooser:
            page.locator(box).get_by_text("Click to Upload").click()
        chooser.value.set_files(str(path))
        page.locator(box).locator(f'a[href$="/{path.name}"]').wait_for(timeout=60_000)
    page.get_by_role("button", name="Use this catalogue").click()


def shot(page, out: Path, name: str) -> None:
    page.wait_for_timeout(800)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"  {name}.png")


def bad_files(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Small shops, each with one kind of bad input."""
    items = folder / "lamps.csv"
    items.write_text("item_id,title,brand\n" + "".join(f"l{i},Desk lamp model {i},Acme\n" for i in range(12)))
    rows = [f"c{u},l{(u + t) % 12},2026-01-{t + 1:02d}" for u in range(30) for t in range(4)]
    counted = folder / "purchases_with_problems.csv"
    counted.write_text("user,item,timestamp\n" + "\n".join(rows + [
        "c0,l99,2026-02-01",            # an item the catalogue does not have
        "c1,l1,2026-01-01", "c1,l1,2026-01-01",  # the same purchase twice
        "lone,l3,2026-01-05"]) + "\n")  # a customer with one purchase
    strange = folder / "purchases_strange_time.csv"
    strange.write_text("user,item,timestamp\n" + "\n".join(rows[:5] + ["c9,l2,next tuesday"]) + "\n")
    many = folder / "purchases_25k_customers.csv"
    many.write_text("user,item,timestamp\n" + "".join(f"u{u},l{u % 12},1\nu{u},l{(u + 1) % 12},2\nu{u},l{(u + 2) % 12},3\n"
                                                      for u in range(25_000)))
    return {"counted": (items, counted), "strange_time": (items, strange), "too_many": (items, many)}


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", required=True, help="the shop's item file (CSV or JSON lines)")
    p.add_argument("--interactions", required=True, help="the shop's purchases (user, item, timestamp)")
    p.add_argument("--out", default=str(PROJECT_ROOT / "test-artifacts" / "shop"), help="folder for the PNG files")
    p.add_argument("--minutes", type=float, default=2.0, help="adaptation time to set (the app's default: 2)")
    add_chromium_argument(p)
    args = p.parse_args(argv)
    for what, path in (("--items", args.items), ("--interactions", args.interactions)):
        if not Path(path).is_file():
            raise UserError(f"no file at {what} {path}",
                            hint="scripts/measure_shop_upload.py --work-dir DIR writes a shop's two files")
    check_chromium(args.chromium)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with browser_on_app(args.chromium) as (browser, url):
        page = open_app(browser, url)
        page.get_by_role("tab", name="Your catalogue").click()
        started = time.perf_counter()
        upload(page, out, Path(args.items), Path(args.interactions))
        page.get_by_text("customers with a held-out purchase").first.wait_for(timeout=LONG)
        page.get_by_role("button", name="Score the models on your purchases").click()
        page.get_by_text("JEPA4Rec, zero-shot + score priors").first.wait_for(timeout=LONG)
        print(f"scoreboard {time.perf_counter() - started:.1f} s after 'Use this catalogue' was pressed "
              "(the file transfers before it not counted)")
        shot(page, out, "1_scoreboard")

        page.get_by_label("Adaptation time (minutes)").fill(f"{args.minutes:g}")
        page.get_by_role("button", name="Adapt a model to your shop").click()
        page.get_by_text("validation NDCG@10").first.wait_for(timeout=LONG)
        page.wait_for_timeout(3000)
        shot(page, out, "2_adaptation_progress")
        page.get_by_role("button", name="Cancel the adaptation").click()
        page.get_by_text("Adapted in").first.wait_for(timeout=LONG)
        shot(page, out, "3_cancelled_adaptation")

        page.get_by_role("button", name="Adapt a model to your shop").click()
        page.get_by_text("validation NDCG@10").first.wait_for(timeout=LONG)  # the new run is under way ...
        page.get_by_text("stopped by cancelled").first.wait_for(state="detached", timeout=LONG)  # ... and done
        page.get_by_text("Adapted + priors / zero-shot + priors").first.wait_for(timeout=LONG)
        shot(page, out, "4_adapted_scoreboard")

        for name, (items, interactions) in bad_files(out).items():
            page.reload()
            page.get_by_text("No target chosen").wait_for(timeout=300_000)
            page.get_by_role("tab", name="Your catalogue").click()
            upload(page, out, items, interactions)
            if name == "strange_time":
                page.get_by_text("neither a number nor a date").first.wait_for(timeout=120_000)
            else:
                page.get_by_text("customers with a held-out purchase").first.wait_for(timeout=LONG)
            if name == "too_many":
                page.get_by_label("Customers to score (0: all)").fill("0")
                page.get_by_role("button", name="Score the models on your purchases").click()
                page.get_by_text("the app scores").first.wait_for(timeout=120_000)
            shot(page, out, f"5_bad_input_{name}")
    print(f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
