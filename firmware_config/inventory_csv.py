"""Device inventory from a spreadsheet export (CSV).

Header (first line; order free, names exact; see docs/configuration.md):
    id,kind,profile,address,credentials,interval_s,lat,lon,street_address,kelurahan,kecamatan,
    pole_id,circuit,rated_w,uplink_if
Required columns: id, kind, profile, address, lat, lon. An empty cell means "not given".
Comma- or semicolon-separated (a spreadsheet in an Indonesian locale writes ';' and decimal
commas, which are read as decimal points). A UTF-8 byte-order mark is accepted.
Credentials are never in the sheet: 'credentials' names a set in the gateway config.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from firmware_config.problems import ConfigProblem

COLUMNS = (
    "id",
    "kind",
    "profile",
    "address",
    "credentials",
    "interval_s",
    "lat",
    "lon",
    "street_address",
    "kelurahan",
    "kecamatan",
    "pole_id",
    "circuit",
    "rated_w",
    "uplink_if",
)
REQUIRED = ("id", "kind", "profile", "address", "lat", "lon")
NUMERIC = ("interval_s", "lat", "lon", "rated_w")
LOCATION = {
    "lat": "lat",
    "lon": "lon",
    "street_address": "address",
    "kelurahan": "kelurahan",
    "kecamatan": "kecamatan",
}


def read_inventory_csv(
    file: Path, data: bytes
) -> tuple[list[tuple[int, dict[str, Any]]], list[ConfigProblem]]:
    """Rows as (line number, device dict ready for Device.model_validate), and problems."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [ConfigProblem(file, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    problems = []
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        problems.append(
            ConfigProblem(
                file,
                "line 1",
                f"unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}",
            )
        )
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        problems.append(ConfigProblem(file, "line 1", f"missing column(s) {', '.join(missing)}"))
    if problems:
        return [], problems
    rows = []
    for row in reader:
        line = reader.line_num
        if None in row:
            problems.append(
                ConfigProblem(
                    file, f"line {line}", "more cells than header columns", row.get("id") or None
                )
            )
            continue
        cells = {k: (v or "").strip() for k, v in row.items()}
        if not any(cells.values()):
            continue
        if delimiter == ";":
            cells.update({k: cells[k].replace(",", ".") for k in NUMERIC if k in cells})
        device: dict[str, Any] = {"location": {}}
        for key, value in cells.items():
            if value == "":
                continue
            if key in LOCATION:
                device["location"][LOCATION[key]] = value
            else:
                device[key] = value
        rows.append((line, device))
    return rows, problems
