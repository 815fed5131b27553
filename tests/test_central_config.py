"""The central consumer's configuration: the shipped example, defaults, problems, boundary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from central.config import CentralConfig, CentralConfigError, load_config
from central.geo import Boundary, load_geojson

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "central.toml"

KECAMATAN = {  # a point well inside each of Tangerang Selatan's 7 kecamatan
    "Serpong": (-6.3166, 106.6647),
    "Serpong Utara": (-6.2435, 106.6640),
    "Setu": (-6.3420, 106.6750),
    "Pondok Aren": (-6.2650, 106.7100),
    "Ciputat": (-6.3095, 106.7483),
    "Ciputat Timur": (-6.2897, 106.7601),
    "Pamulang": (-6.3431, 106.7372),
}
OUTSIDE = {
    "Monas, Jakarta": (-6.1754, 106.8272),
    "Bogor": (-6.5950, 106.8166),
    "Tangerang (kota)": (-6.1783, 106.6319),
    "Depok": (-6.4025, 106.7942),
    "lat/lon swapped": (106.7372, -6.3431),
    "minus sign missing": (6.3431, 106.7372),
}


def test_the_example_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.broker.share_group == "central" and config.broker.client_id == "central-1"
    assert config.categories.streetlight.assignment("pamulang") == (
        "Dinas Perhubungan (Dishub)",
        "UPT PJU Wilayah II",
    )
    assert config.categories.wifi.sla_h == 24
    assert set(config.gateways) == {"gw-pamulang-01", "gw-hotspot-ciputat-03"}
    assert config.broker.tls is not None
    assert config.broker.tls.ca_file == Path("/etc/siaran-central/ca.pem")  # absolute: kept
    assert config.siaran.token is not None
    assert config.siaran.token.file == Path("/etc/siaran-central/siaran.token")
    # the example spells out the defaults: the same config as none at all, but for its site data
    defaults = CentralConfig()
    assert config.categories == defaults.categories
    assert config.reports == defaults.reports


def test_the_check_command(tmp_path: Path) -> None:
    def run(path: Path) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "agent.cli", "central", "--config", str(path), "--check"]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)

    ok = run(EXAMPLE)
    assert ok.returncode == 0, ok.stderr
    assert "UPT PJU" in ok.stdout and "$share/central" in ok.stdout
    assert "note: siaran.token: cannot read secret file" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'max_payload_bytes = 10\n[broker]\nport = 0\n[siaran]\nbase_url = "ftp://x"\n'
        "[gateways.gw-1]\nlocation = { lat = -6.1754, lon = 106.8272 }\n"
    )
    failed = run(bad)
    assert failed.returncode == 2
    for part in ("max_payload_bytes", "broker.port", "siaran.base_url"):
        assert part in failed.stderr


def test_a_site_outside_the_city_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[gateways.gw-1]\nlocation = { lat = -6.1754, lon = 106.8272 }\n")
    with pytest.raises(CentralConfigError, match=r"gateways\.gw-1\.location: outside"):
        load_config(path)


def test_secrets_never_print(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    (tmp_path / "token").write_text("tok-from-file\n")
    path.write_text(
        '[broker]\npassword = { value = "hunter22" }\n[siaran]\ntoken = { file = "token" }\n'
    )
    config = load_config(path)
    assert "hunter22" not in repr(config) and "hunter22" not in str(config.model_dump())
    assert config.siaran.token is not None
    assert config.siaran.token.resolve().get_secret_value() == "tok-from-file"
    assert config.siaran.token.file == tmp_path / "token"  # relative to the config file


@pytest.mark.parametrize(("name", "point"), KECAMATAN.items())
def test_the_default_boundary_holds_every_kecamatan(name: str, point: tuple[float, float]) -> None:
    assert Boundary.default().contains(*point), name


@pytest.mark.parametrize(("name", "point"), OUTSIDE.items())
def test_the_default_boundary_leaves_out(name: str, point: tuple[float, float]) -> None:
    assert not Boundary.default().contains(*point), name


def test_a_geojson_boundary_with_a_hole(tmp_path: Path) -> None:
    square = [[106.60, -6.40], [106.80, -6.40], [106.80, -6.20], [106.60, -6.20], [106.60, -6.40]]
    hole = [[106.70, -6.31], [106.71, -6.31], [106.71, -6.30], [106.70, -6.30], [106.70, -6.31]]
    path = tmp_path / "b.geojson"
    feature = {
        "type": "Feature",
        "geometry": {"type": "MultiPolygon", "coordinates": [[square, hole]]},
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    b = load_geojson(path, "Uji")
    assert b.contains(-6.25, 106.65) and not b.contains(-6.305, 106.705)
    assert not b.contains(-6.1, 106.65)
    config = tmp_path / "c.toml"
    config.write_text('[boundary]\nname = "Uji"\ngeojson_file = "b.geojson"\n')
    assert load_config(config).boundary.build().contains(-6.25, 106.65)
    config.write_text('[boundary]\ngeojson_file = "missing.geojson"\n')
    with pytest.raises(CentralConfigError, match="boundary"):
        load_config(config)
