"""Datasets from their public source: the real download code against a local HTTP server that serves the files
of ../shared/data under the paths raw.githubusercontent.com has them at (and servers that fail, cut a file
short, or serve other bytes)."""
from __future__ import annotations

import json
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jepa4rec.data import DataFormatError, DataUnavailable, load_dataset
from jepa4rec.data.sources import RECORD, SOURCES, download, is_downloaded
from jepa4rec.paths import data_root


class Mirror(BaseHTTPRequestHandler):
    """GET /<owner>/<repo>/<commit>/<path>/<file> -> the shared copy of that file; ``mode`` breaks it."""

    def __init__(self, *args, mode: str = "ok", files: dict | None = None, **kwargs):
        self.mode, self.files = mode, files or {}
        super().__init__(*args, **kwargs)

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        body = self.files.get(self.path)
        if self.mode == "fail" or body is None:
            self.send_error(500 if self.mode == "fail" else 404)
            return
        if self.mode == "cut":
            body = body[: len(body) // 2]
        elif self.mode == "hangup":  # promises the whole file, sends half, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            return
        elif self.mode == "altered":
            body = body[:-1] + bytes([body[-1] ^ 1])
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def mirror():
    servers = []

    def start(mode: str, root: Path | None = None, names: tuple[str, ...] = ("Instruments_IISAN",)) -> str:
        files = {}
        for name in names:
            source = SOURCES[name]
            for f in source.files:
                path = f"/{source.repo}/{source.commit}/{source.path}/{f.name}"
                files[path] = (root / source.folder / f.name).read_bytes() if root else b"x" * f.size
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Mirror, mode=mode, files=files))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["Instruments_IISAN", "OnlineRetail"])
def test_download_fetches_checks_and_records_each_file_then_the_dataset_loads(mirror, tmp_path, name):
    base = mirror("ok", data_root(), (name,))
    seen = []
    folder = download(name, tmp_path, base_url=base, progress=lambda done, total: seen.append((done, total)))
    source = SOURCES[name]
    assert sorted(p.name for p in folder.iterdir()) == sorted([f.name for f in source.files] + [RECORD])
    assert seen[-1] == (source.size, source.size) and is_downloaded(name, tmp_path)
    record = json.loads((folder / RECORD).read_text())
    assert record["commit"] == source.commit and record["downloaded_from"] == base
    assert [f["sha256"] for f in record["files"]] == [f.sha256 for f in source.files]
    shared = load_dataset(name)
    fetched = load_dataset(name, root=tmp_path)
    assert (fetched.n_users, fetched.n_items, fetched.n_interactions) == (shared.n_users, shared.n_items,
                                                                           shared.n_interactions)
    assert download(name, tmp_path, base_url="http://127.0.0.1:9") == folder  # there already: nothing fetched


@pytest.mark.parametrize("mode, error, said", [
    ("fail", DataUnavailable, "could not download"),
    ("cut", DataFormatError, "not the 2,849,271 of the committed file"),
    ("hangup", DataFormatError, "gave 1,424,635 bytes, not the 2,849,271"),
    ("altered", DataFormatError, "is not the committed file (sha256"),
])
def test_a_failing_cut_or_altered_download_is_refused_and_leaves_nothing(mirror, tmp_path, mode, error, said):
    # The served bytes are the right size but not the file (the checksums are the real files').
    base = mirror(mode if mode != "altered" else "ok")
    with pytest.raises(error, match=said.replace("(", r"\(")):
        download("Instruments_IISAN", tmp_path, base_url=base)
    assert list(tmp_path.iterdir()) == [] and not is_downloaded("Instruments_IISAN", tmp_path)


def test_no_network_and_no_source_are_one_line_each(tmp_path, capsys):
    from commands import one_line_error

    from jepa4rec.data.__main__ import main

    line = one_line_error(capsys, main, ["download", "Instruments_IISAN", "--data-root", str(tmp_path),
                                         "--base-url", "http://127.0.0.1:9", "--quiet"])
    assert line.startswith("error: Musical_Instruments_items.tsv: could not download http://127.0.0.1:9/GAIR-Lab/IISAN/")
    line = one_line_error(capsys, main, ["download", "Beauty2014_SeqRecBench", "--data-root", str(tmp_path)])
    assert "has no download source here" in line and "only as pickles" in line
    assert list(tmp_path.iterdir()) == []


def test_a_missing_dataset_names_the_command_that_fetches_it(tmp_path):
    with pytest.raises(DataFormatError) as err:
        load_dataset("Scientific_LCRec", root=tmp_path)
    assert "python -m jepa4rec.data download Scientific_LCRec" in str(err.value)
