"""UniSRec / RecBole atomic files: ``.text``, ``.{train,valid,test}.inter``, ``.item2index``, ``.user2index``."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ._registry import register_format
from ..dataset import DataFormatError, RawData
from ._io import _find_one, _open_text


# Amazon category paths in UniSRec's text start with the top-level category name.
_UNISREC_SPLIT = re.compile(r"\.\s+")


def _pieces(text: str) -> list[str]:
    text = text.strip()
    if text.endswith("."):
        text = text[:-1]
    return [p.strip() for p in _UNISREC_SPLIT.split(text)]


def unisrec_top_category(texts, share: float = 0.8) -> str | None:
    """The top-level category name (e.g. "Industrial & Scientific") that starts most category paths.

    A right split ("title. categories. brand") gives each text's candidate path; the longest word
    prefix that at least ``share`` of them have is the top-level name (None when there is none).
    """
    paths = [parts[-2].split() for parts in map(_pieces, texts) if len(parts) >= 3 and parts[-2]]
    best = None
    for n in range(1, 8):
        counts = Counter(tuple(p[:n]) for p in paths if len(p) >= n)
        if not counts:
            break
        prefix, count = counts.most_common(1)[0]
        if count < share * len(paths):
            break
        best = " ".join(prefix)
    return best


def split_unisrec_text(text: str, top_category: str | None = None) -> dict[str, str]:
    """Split UniSRec's "title. categories. brand." string into attributes where the structure allows.

    The string is built by joining the title, the category path and the brand with ". ". Titles and
    brands may contain ". " themselves ("Mr. Heater", "Norton Abrasives - St. Gobain"). With
    ``top_category`` the category piece is the last one (after the first) that starts with it, or, for
    items without categories, the last empty piece before the brand; otherwise (or when neither is
    found) we split from the right: the last piece is the brand and the one before it the categories.
    Texts with fewer than three pieces are kept as one ``title`` attribute.
    """
    parts = _pieces(text)
    if len(parts) < 3:
        return {"title": ". ".join(parts)}
    cut = len(parts) - 2
    if top_category:
        hits = [i for i in range(1, len(parts)) if parts[i] == top_category or parts[i].startswith(top_category + " ")]
        if not hits:
            hits = [i for i in range(1, len(parts) - 1) if not parts[i]]
        if hits:
            cut = hits[-1]
    return {"title": ". ".join(parts[:cut]), "brand": ". ".join(parts[cut + 1:]), "categories": parts[cut]}


def _unisrec_index(path: Path, what: str) -> list[str]:
    """A RecBole ``.item2index`` / ``.user2index`` file as a list (position = index); the indexes must
    run 0, 1, 2, ... in file order, as RecBole writes them, so position and index column agree."""
    names: list[str] = []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            cols = line.split()
            if not cols:
                continue  # a blank line shifts nothing: the index column is checked
            if len(cols) != 2 or not cols[1].isdigit():
                raise DataFormatError(f"{path}:{lineno}: expected '<{what}> <index>', got {line.strip()[:80]!r}")
            if int(cols[1]) != len(names):
                raise DataFormatError(f"{path}:{lineno}: indexes must run 0, 1, 2, ... (got {cols[1]}, "
                                      f"expected {len(names)})")
            names.append(cols[0])
    return names


@register_format("unisrec", recognises=lambda names: any(n.endswith(".text") for n in names) and any(n.endswith(".train.inter") for n in names), order=10)
def read_unisrec(folder: Path) -> RawData:
    folder = Path(folder)
    text_path = _find_one(folder, "*.text")
    stem = text_path.name[: -len(".text")]
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with _open_text(text_path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if len(header) < 2 or not header[0].startswith("item_id"):
            raise DataFormatError(f"{text_path}:1: expected header 'item_id:token<TAB>text:token_seq', got {header}")
        for lineno, line in enumerate(fh, 2):
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 2:
                raise DataFormatError(f"{text_path}:{lineno}: expected 2 tab-separated fields, got {len(cols)}")
            if cols[0] in first_line:  # the later text would silently replace the first
                raise DataFormatError(f"{text_path}:{lineno}: item_id {cols[0]} repeats line {first_line[cols[0]]}")
            first_line[cols[0]] = lineno
            texts[cols[0]] = cols[1]
    top = unisrec_top_category(texts.values())
    items = {k: split_unisrec_text(v, top_category=top) for k, v in texts.items()}

    map_path = folder / f"{stem}.item2index"
    index2item = _unisrec_index(map_path, "asin")
    user_map_path = folder / f"{stem}.user2index"
    index2user = _unisrec_index(user_map_path, "user") if user_map_path.exists() else []

    def rows(split: str) -> list[tuple[str, list[str], str]]:
        path = folder / f"{stem}.{split}.inter"
        out = []
        with _open_text(path) as fh:
            header = fh.readline().split("\t")
            if len(header) != 3:
                raise DataFormatError(f"{path}:1: expected 3 columns (user_id, item_id_list, item_id)")
            for lineno, line in enumerate(fh, 2):
                cols = line.rstrip("\n").split("\t")
                if len(cols) != 3:
                    raise DataFormatError(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(cols)}")
                indexes = cols[1].split() + [cols[2]]
                # isdigit() also keeps '-3' from becoming an item through Python's negative indexing.
                bad = [x for x in indexes if not (x.isdigit() and int(x) < len(index2item))]
                if bad:
                    raise DataFormatError(f"{path}:{lineno}: item index not in {map_path.name} ({bad[0]!r}; "
                                          f"it holds 0..{len(index2item) - 1})")
                *hist, target = [index2item[int(x)] for x in indexes]
                out.append((cols[0], hist, target))
        return out

    # Train has one row per prefix; rebuild: shortest prefix, then the train targets from the
    # shortest prefix to the longest, then the valid target, then the test target.
    sequences: dict[str, list[str]] = {}
    # Histories are cut to the last 50 items, so several prefixes of a long user have the same length;
    # the file lists a user's rows longest (latest) first, so equal lengths sort by reversed row order.
    prefixes: dict[str, list[tuple[int, int, list[str], str]]] = {}
    for rownum, (user, hist, target) in enumerate(rows("train")):
        prefixes.setdefault(user, []).append((len(hist), -rownum, hist, target))
    for user, plist in prefixes.items():
        plist.sort(key=lambda p: (p[0], p[1]))
        seq = list(plist[0][2])
        seq.extend(p[3] for p in plist)
        sequences[user] = seq
    for split in ("valid", "test"):
        for user, hist, target in rows(split):
            sequences.setdefault(user, list(hist)).append(target)
    users, item_col = [], []
    for user, seq in sequences.items():
        name = index2user[int(user)] if index2user and user.isdigit() and int(user) < len(index2user) else user
        users.extend([name] * len(seq))
        item_col.extend(seq)
    ordered = {k: items.get(k, {}) for k in index2item}
    return RawData(ordered, pd.DataFrame({"user": users, "item": item_col}))
