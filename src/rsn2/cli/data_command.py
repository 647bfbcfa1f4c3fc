"""``rsn2 data list | download | verify``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rsn2.cli.options import data_dir_option
from rsn2.data.catalog import CATALOG
from rsn2.data.download import download_dataset
from rsn2.data.location import data_dir, locate
from rsn2.errors import DataError, RSN2Error


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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    data = sub.add_parser(
        "data",
        help="list, download and verify the paper's datasets",
        description="The datasets live in DATA_DIR/<name>/: --data-dir, else $RSN2_DATA, else ~/.cache/rsn2/data.",
    )
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    data_list = data_sub.add_parser("list", help="each dataset: found or missing, where, verified or not")
    data_list.add_argument("--no-verify", action="store_true", help="skip checksum verification (faster)")
    data_list.add_argument("--json", action="store_true", help="print JSON")
    data_dl = data_sub.add_parser("download", help="fetch datasets from their canonical sources (SHA-256 checked)")
    data_dl.add_argument("names", nargs="+", metavar="NAME", help="dataset name(s), or 'all'")
    data_dl.add_argument("--mirror", metavar="URL", help="fetch <URL>/<name>/<file> instead (or $RSN2_MIRROR)")
    data_dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    data_verify = data_sub.add_parser("verify", help="re-check the checksums of the datasets present")
    data_verify.add_argument("names", nargs="*", metavar="NAME", help="datasets to check (default: all present)")
    for p in (data_list, data_dl, data_verify):
        data_dir_option(p)
    data.set_defaults(handler=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from rsn2.data.location import locate

    if args.data_command == "list":
        rows = dataset_status(args.data_dir, verify=not args.no_verify)
        print(json.dumps(rows, indent=2) if args.json else format_status(rows))
        return 0
    if args.data_command == "download":
        for path in download(args.names, args.data_dir, args.mirror, progress=not args.no_progress):
            print(f"ok  {path}")
        return 0
    names = args.names or [r["name"] for r in dataset_status(args.data_dir, verify=False) if r["status"] == "found"]
    if not names:
        print("rsn2 data verify: no datasets found", file=sys.stderr)
        return 1
    failed = 0
    for name in names:
        try:
            found = locate(name, args.data_dir, verify=True)
            print(f"ok      {name} ({found.layout.name}) in {found.folder}")
        except RSN2Error as exc:
            failed += 1
            print(f"FAILED  {name}: {exc}")
    return 1 if failed else 0
