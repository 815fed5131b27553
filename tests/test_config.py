"""Configuration: loading, cross-checks, CSV import and `siaran-edge check-config`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.cli import main
from firmware_config.inventory_csv import COLUMNS
from firmware_config.loader import load_config, load_profiles
from firmware_config.models import SnmpV3
from firmware_config.problems import ConfigError

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The documented example config, copied so a test may edit it."""
    for f in EXAMPLES.iterdir():
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "gateway.toml").read_text()
    # the example points at /etc; a test has no CA file there
    (tmp_path / "gateway.toml").write_text(
        text.replace('tls = { ca_file = "/etc/siaran-edge/ca.pem" }\n', "")
    )
    monkeypatch.setenv("SIARAN_BROKER_PASSWORD", "rahasia-broker")
    return tmp_path / "gateway.toml"


def test_example_config_loads_with_defaults_and_named_credentials(example: Path) -> None:
    config = load_config(example)
    ids = [d.id for d in config.devices]
    assert ids == ["ap-taman-kota-1", "pju-slw-001", "pju-slw-002", "pju-slw-003"]
    pole = next(d for d in config.devices if d.id == "pju-slw-003")
    assert pole.interval_s == 120  # from the CSV row
    assert pole.timeout_s == 2.0 and pole.retries == 1  # from [poll]
    assert isinstance(pole.snmp, SnmpV3) and pole.snmp.level == "authPriv"
    assert pole.location.kecamatan == "Pamulang" and pole.rated_w == 90
    assert config.gateway.state_dir == example.parent / "state"
    assert len(config.version) == 12


def test_config_version_changes_with_the_inventory(example: Path) -> None:
    before = load_config(example).version
    csv = example.parent / "poles.csv"
    csv.write_text(csv.read_text().replace("SLW-003,PNL-SLW-A,90", "SLW-003,PNL-SLW-A,100"))
    assert load_config(example).version != before


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BROKEN_GATEWAY = """
inventory = ["devices.toml", "poles.csv"]
[gateway]
id = "gw/bad"
site = "x"
location = { lat = -96.0, lon = 106.7 }
[broker]
port = 70000
password = { env = "NO_SUCH_VARIABLE_SIARAN" }
[poll]
interval_s = 0
intervall = 3
[snmp_credentials.v3]
version = "3"
user = "u"
auth_protocol = "SHA"
auth_key = "short"
"""

BROKEN_DEVICES = """
[[device]]
id = "ap-1"
kind = "hotspot"
profile = "no-such-profile"
address = "10.0.0.1:161"
credentials = "hotspot"
location = { lat = -6.3, lon = 106.7 }

[[device]]
id = "pju-1"
kind = "streetlight"
profile = "pju-generic"
address = "10.0.0.2:161"
credentials = "missing-set"
location = { lat = -6.3, lon = 106.7 }
"""

BROKEN_CSV = f"""{",".join(COLUMNS)}
pju-2,streetlight,pju-generic,10.0.0.3:99999,v3,,-6.3,106.7,,,,P2,C1,60,
pju-3,lamp,pju-generic,10.0.0.4:161,v3,,-6.3,106.7,,,,P3,C1,sixty,
pju-2,streetlight,pju-generic,10.0.0.5:161,v3,,-6.3,106.7,,,,P4,C1,60,
"""


def test_every_mistake_is_reported_at_once_with_its_place(tmp_path: Path) -> None:
    gw = write(tmp_path / "gateway.toml", BROKEN_GATEWAY)
    write(tmp_path / "devices.toml", BROKEN_DEVICES)
    write(tmp_path / "poles.csv", BROKEN_CSV)
    with pytest.raises(ConfigError) as caught:
        load_config(gw)
    text = str(caught.value)
    expected = [
        f"{gw}: gateway.id: String should match pattern",
        f"{gw}: gateway.location.lat: Input should be greater than or equal to -90",
        f"{gw}: broker.port: Input should be less than or equal to 65535",
        f"{gw}: poll.interval_s: Input should be greater than 0",
        f"{gw}: poll.intervall: Extra inputs are not permitted",
        f"{gw}: snmp_credentials.v3: SNMPv3 keys must be at least 8 characters",
        f"{tmp_path / 'devices.toml'}: device[1] (device pju-1): a streetlight needs pole_id",
        f"{tmp_path / 'poles.csv'}: line 3 (device pju-3): kind: Input should be",
        f"{tmp_path / 'poles.csv'}: line 3 (device pju-3): rated_w: Input should be a valid number",
        f"{tmp_path / 'poles.csv'}: line 4 (device pju-2): id: used twice (also poles.csv line 2)",
    ]
    for line in expected:
        assert line in text, f"missing {line!r} in:\n{text}"
    assert len(caught.value.problems) >= len(expected)


def test_cross_checks_name_the_device(tmp_path: Path) -> None:
    gw = write(
        tmp_path / "gateway.toml",
        """
inventory = ["devices.toml"]
[gateway]
id = "gw-1"
site = "Panel A"
location = { lat = -6.3, lon = 106.7 }
[snmp_credentials.hotspot]
community = "public"
""",
    )
    write(
        tmp_path / "devices.toml",
        BROKEN_DEVICES.replace("missing-set", "nope").replace(
            'kind = "streetlight"',
            'kind = "streetlight"\npole_id = "P1"\ncircuit = "C1"\nrated_w = 60',
        ),
    )
    with pytest.raises(ConfigError) as caught:
        load_config(gw)
    problems = {(p.device, p.where): p.message for p in caught.value.problems}
    assert "no profile 'no-such-profile'" in problems[("ap-1", "profile")]
    assert "pju-generic" in problems[("ap-1", "profile")]  # lists the known ones
    assert "no [snmp_credentials.nope]" in problems[("pju-1", "credentials")]
    assert len(problems) == 2


def test_csv_import_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    gw = write(
        tmp_path / "gateway.toml",
        """
inventory = ["aset.csv"]
[gateway]
id = "gw-1"
site = "Panel A"
location = { lat = -6.3, lon = 106.7 }
[snmp_credentials.v2]
community = "public"
""",
    )
    csv = "\ufeffid;kind;profile;address;credentials;lat;lon;pole_id;circuit;rated_w;kecamatan\n"
    csv += "pju-9;streetlight;pju-generic;10.0.0.9;v2;-6,29;106,71;P9;C2;37,5;Serpong Utara\n"
    write(tmp_path / "aset.csv", csv)
    (device,) = load_config(gw).devices
    assert device.location.lat == -6.29 and device.rated_w == 37.5
    assert device.host_port() == ("10.0.0.9", 161)
    assert device.location.kecamatan == "Serpong Utara"


def test_csv_unknown_column_is_named(tmp_path: Path) -> None:
    gw = write(
        tmp_path / "gateway.toml",
        """
inventory = ["aset.csv"]
[gateway]
id = "gw-1"
site = "Panel A"
location = { lat = -6.3, lon = 106.7 }
""",
    )
    write(tmp_path / "aset.csv", "id,kind,profile,address,lat,lon,watt\n")
    with pytest.raises(ConfigError) as caught:
        load_config(gw)
    assert "aset.csv: line 1: unknown column(s) watt" in str(caught.value)


def test_user_profile_dir_adds_a_profile_without_code(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    write(
        tmp_path / "profiles" / "acme-lamp.toml",
        """
name = "acme-lamp"
protocol = "snmp"
kinds = ["streetlight"]
extends = "pju-generic"
[[metrics]]
name = "acme_lux"
oid = "1.3.6.1.4.1.32473.9.1.0"
type = "int"
unit = "lx"
""",
    )
    profiles = load_profiles([tmp_path / "profiles"])
    acme = profiles["acme-lamp"]
    names = [m.name for m in acme.metrics]
    assert "acme_lux" in names and "active_power" in names  # own plus inherited


def test_bad_profile_file_is_reported(tmp_path: Path) -> None:
    write(
        tmp_path / "broken.toml",
        'name = "broken"\nprotocol = "snmp"\nkinds = ["lamp"]\n'
        '[[metrics]]\nname = "x"\noid = "not.an.oid"\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_profiles([tmp_path])
    text = str(caught.value)
    assert f"{tmp_path / 'broken.toml'}: kinds.0: Input should be" in text
    assert f"{tmp_path / 'broken.toml'}: metrics.0.oid: String should match pattern" in text


def test_check_config_cli(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(example)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "4 devices" not in out and "devices: 4" in out

    gw = write(
        tmp_path / "bad.toml",
        BROKEN_GATEWAY.replace('inventory = ["devices.toml", "poles.csv"]', ""),
    )
    assert main(["check-config", str(gw)]) == 2
    err = capsys.readouterr().err
    assert "problem(s)" in err and "broker.port" in err and "gateway.id" in err


def test_secrets_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gw = write(
        tmp_path / "gateway.toml",
        """
[gateway]
id = "gw-1"
site = "Panel A"
location = { lat = -6.3, lon = 106.7 }
[snmp_credentials.v3]
version = "3"
user = "u"
auth_protocol = "SHA"
auth_key = "kunci-rahasia-auth"
priv_protocol = "AES"
priv_key = "pendek"
[snmp_credentials.v2]
version = "2c"
community = "komunitas-rahasia"
extra = 1
""",
    )
    assert main(["check-config", str(gw)]) == 2
    err = capsys.readouterr().err
    assert "snmp_credentials" in err
    for secret in ("kunci-rahasia-auth", "pendek", "komunitas-rahasia"):
        assert secret not in err


def test_unreadable_and_invalid_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = write(tmp_path / "bad.toml", "[gateway\nid = 1\n")
    assert main(["check-config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_configuration_doc_names_every_setting() -> None:
    from firmware_config.models import (
        BrokerConfig,
        Device,
        GatewayConfig,
        GatewayIdentity,
        PollDefaults,
        SnmpV3,
    )
    from firmware_config.uplink_config import OutboxConfig

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    models = (GatewayConfig, GatewayIdentity, BrokerConfig, PollDefaults, Device, SnmpV3)
    for model in (*models, OutboxConfig):
        for name in model.model_fields:
            if name in ("version",):
                continue
            forms = (f"`{name}`", f"`{name}.", f"`[{name}]`")
            assert any(f in doc for f in forms), f"{model.__name__}.{name} is not documented"


def test_rules_reference_is_current() -> None:
    from agent.faults.rules_doc import render

    doc = Path(__file__).parents[1] / "docs" / "rules.md"
    assert doc.read_text() == render(), "run: python -m agent.faults.rules_doc docs/rules.md"


MINIMAL = """
state_dir = "state"
[gateway]
id = "gw-1"
site = "Panel A"
location = { lat = -6.3, lon = 106.7 }
"""

HASH = "scrypt$16384$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNo"

FILES_AND_SECRETS = """
[influxdb]
url = "https://influx.example:8086"
bucket = "siaran"
ca_file = "certs/influx-ca.pem"
token = {{ {token} }}
[web]
tls = {{ cert_file = "certs/web.pem", key_file = "certs/web.key" }}
users = [{{ name = "teknisi1", password_hash = "{hash}" }}]
"""


def test_influxdb_and_web_files_and_secrets_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_INFLUX_TOKEN", raising=False)
    extra = FILES_AND_SECRETS.format(token='env = "NO_SUCH_INFLUX_TOKEN"', hash=HASH)
    gw = write(tmp_path / "gateway.toml", MINIMAL + extra)
    assert main(["check-config", str(gw)]) == 2
    err = capsys.readouterr().err
    certs = tmp_path / "certs"  # relative to the config file's folder
    for line in [
        f"{gw}: influxdb.ca_file: no file {certs / 'influx-ca.pem'}",
        f"{gw}: influxdb.token: environment variable NO_SUCH_INFLUX_TOKEN is not set",
        f"{gw}: web.tls.cert_file: no file {certs / 'web.pem'}",
        f"{gw}: web.tls.key_file: no file {certs / 'web.key'}",
    ]:
        assert line in err, f"missing {line!r} in:\n{err}"
    assert "4 problem(s)" in err

    token_file = 'file = "secrets/influx.token"'
    gw.write_text(MINIMAL + FILES_AND_SECRETS.format(token=token_file, hash=HASH))
    with pytest.raises(ConfigError) as caught:
        load_config(gw)
    (token,) = [p for p in caught.value.problems if p.where == "influxdb.token"]
    assert f"cannot read secret file {tmp_path / 'secrets' / 'influx.token'}" in token.message

    certs.mkdir()
    (tmp_path / "secrets").mkdir()
    for name in ("influx-ca.pem", "web.pem", "web.key"):
        (certs / name).write_text("PEM\n")
    (tmp_path / "secrets" / "influx.token").write_text("token-rahasia\n")
    config = load_config(gw)  # every path anchored: run time needs no base folder any more
    influx, web = config.gateway.influxdb, config.gateway.web
    assert influx is not None and influx.ca_file == certs / "influx-ca.pem"
    assert influx.token is not None and influx.token.file == tmp_path / "secrets" / "influx.token"
    assert influx.token.resolve().get_secret_value() == "token-rahasia"
    assert web is not None and web.tls is not None
    assert (web.tls.cert_file, web.tls.key_file) == (certs / "web.pem", certs / "web.key")
    assert main(["check-config", str(gw)]) == 0
    assert "token-rahasia" not in "".join(capsys.readouterr())


def test_an_unusable_state_dir_is_a_config_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = write(tmp_path / "gateway.toml", MINIMAL)
    assert main(["check-config", str(gw)]) == 0
    assert not (tmp_path / "state").exists()  # checked, not made

    blocked = "/proc/siaran-edge-test/state"  # /proc takes no new files, not even root's
    gw.write_text(MINIMAL.replace('"state"', f'"{blocked}"'))
    assert main(["check-config", str(gw)]) == 2
    err = capsys.readouterr().err
    assert f"{gw}: state_dir: {blocked}: cannot be made in /proc: " in err, err

    a_file = write(tmp_path / "a-file", "")
    gw.write_text(MINIMAL.replace('"state"', f'"{a_file}"'))
    assert main(["check-config", str(gw)]) == 2
    assert f"{gw}: state_dir: {a_file}: not a folder" in capsys.readouterr().err

    gw.write_text(MINIMAL.replace('"state"', f'"{blocked}"'))
    assert main(["run", "--config", str(gw), "--once"]) == 0  # --once keeps no state
    assert main(["run", "--config", str(gw)]) == 2  # no traceback: the setting and the error
    err = capsys.readouterr().err
    assert f"{gw}: state_dir {blocked}: " in err and "Traceback" not in err, err
