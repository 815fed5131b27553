"""Write the contract's JSON Schemas: `python -m uplink.schemas docs/schemas`.

A test (tests/test_contract.py) checks that the committed files equal what this renders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from uplink.contract import SCHEMA_VERSION, WIRE_MODELS


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, one schema per wire message."""
    out: dict[str, str] = {}
    for name, model in WIRE_MODELS.items():
        schema = model.model_json_schema(by_alias=True, mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$comment"] = f"siaran-edge MQTT contract, schema version {SCHEMA_VERSION}"
        out[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m uplink.schemas FOLDER", file=sys.stderr)
        return 2
    for path in write_schemas(Path(argv[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
