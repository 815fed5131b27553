"""Write docs/rules.md, the reference of every rule and its settings, from the code itself.

`python -m agent.faults.rules_doc docs/rules.md`; a test checks the committed file is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.faults.rule import RuleSettings
from agent.faults.rules import RULES
from agent.faults.settings import CircuitOutageSettings, GatewayNetworkDownSettings

HEADER = """# Fault rules reference

Generated from the code by `python -m agent.faults.rules_doc docs/rules.md`; do not edit.
How the settings combine, and what the engine does with verdicts: [faults.md](faults.md).
Set any of these in the gateway config as `[rules.NAME]` (or in a profile for its devices).
"""


def _table(model: type[RuleSettings], common: bool) -> list[str]:
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    own = set(model.model_fields) - set(RuleSettings.model_fields)
    for name, info in model.model_fields.items():
        if common or name in own or info.default != RuleSettings.model_fields[name].default:
            text = (info.description or "").replace("|", "/")
            rows.append(f"| `{name}` | `{info.default!r}` | {text} |")
    return rows


def render() -> str:
    out = [HEADER, "## Settings every rule has", "", *_table(RuleSettings, common=True), ""]
    engine: dict[str, type[RuleSettings]] = {
        "circuit_outage": CircuitOutageSettings,
        "gateway_network_down": GatewayNetworkDownSettings,
    }
    for name, model in engine.items():
        out += [
            f"## `{name}` (correlation, by the engine)",
            "",
            (model.__doc__ or "").strip(),
            "",
            *_table(model, common=False),
            "",
        ]
    for name, rule in RULES.items():
        kinds = ", ".join(sorted(rule.kinds))
        source = type(rule).__doc__ or sys.modules[type(rule).__module__].__doc__ or ""
        doc = source.strip().split("\n\n")[0].replace("\n", " ")
        out += [
            f"## `{name}` ({kinds})",
            "",
            doc,
            "",
            "Own settings and defaults that differ from the common ones:",
            "",
            *_table(rule.settings_model, common=False),
            "",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(render())
