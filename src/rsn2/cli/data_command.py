"""``rsn2 data list | download | verify``."""

from __future__ import annotations

from typing import Any

from rsn2.data.catalog import CATALOG
from rsn2.data.download import download_dataset
from rsn2.data.location import data_dir, locate
from rsn2.errors import DataError


def dataset_status(root: str | None, verify: bool) -> list[dict[str, Any]]:
    """One row per catalogued dataset: found or missing, where, which layout, verified or not."""
    rows = []
    for name, info in CATALOG.items():
        row: dict[str, Any] = {"name": name, "title": info.title, "folder": str(data_dir(root) / name)}
        try:
            found = locate(name, root, verify=False)
        except DataError:
            rows.append({**row, "status": "missing", "layout": None, "verified": None})
            continue
        row.update(status="found", layout=found.layout.name, files=[f.name for f in found.layout.files])
        if verify:
            try:
                found.verify()
                row["verified"] = True
            except DataError as exc:
                row.update(verified=False, problem=str(exc))
        else:
            row["verified"] = None
        rows.append(row)
    return rows


def format_status(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'dataset':<14} {'status':<8} {'layout':<17} {'verified':<9} folder"]
    for r in rows:
        verified = {True: "yes", False: "NO", None: "-"}[r["verified"]]
        lines.append(f"{r['name']:<14} {r['status']:<8} {r['layout'] or '-':<17} {verified:<9} {r['folder']}")
        if r.get("problem"):
            lines.append(f"  problem: {r['problem']}")
    return "\n".join(lines)


def download(names: list[str], root: str | None, mirror: str | None, progress: bool) -> list[str]:
    """Download the named datasets (``all``: every downloadable one); returns the files now present."""
    wanted = [n for n, i in CATALOG.items() if any(lo.downloadable for lo in i.layouts)] if names == ["all"] else names
    unknown = [n for n in wanted if n not in CATALOG]
    if unknown:
        raise DataError(f"unknown dataset(s) {unknown}; known: {sorted(CATALOG)} or 'all'")
    paths = []
    for name in wanted:
        paths += [str(p) for p in download_dataset(name, root, mirror=mirror, progress=progress)]
    return paths
