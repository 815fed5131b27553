"""Street-light rules on a simulated lamp (agent/demo/lamp.py read through pju-generic) and on
hand-made readings, at fixed WIB times in Tangerang Selatan: raise, clear, thresholds, gaps."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from agent.demo.lamp import LampController
from agent.faults.astro import sun_times
from agent.faults.rule import LAMP_FAILURE, UNREACHABLE
from agent.faults.rules import RULES
from agent.faults.rules.power_deviation import PowerDeviationSettings, limits
from collectors.reading import ReadingError
from tests.rule_helpers import (
    DAY,
    NIGHT,
    TANGSEL,
    Judge,
    SimTime,
    lamp_device,
    lamp_reading,
    lamp_values,
    minutes,
    reading,
    wib,
)

SUNSET = sun_times(TANGSEL.lat, TANGSEL.lon, date(2026, 11, 28))[1]
SUNRISE = sun_times(TANGSEL.lat, TANGSEL.lon, date(2026, 11, 29))[0]
SEC = timedelta(seconds=1)


def judge(name: str, **settings: Any) -> Judge:
    return Judge(RULES[name], lamp_device(), **settings)


def lamp(**fields: Any) -> LampController:
    return LampController(clock=SimTime(), **fields)


def healthy() -> dict[str, Any]:
    return lamp_values(lamp())


# --- lamp_failure -----------------------------------------------------------------------------


async def test_lamp_failure_raise_and_clear_on_the_simulated_lamp() -> None:
    j, sim = judge(LAMP_FAILURE), lamp()
    ok = await j.good(lamp_reading(sim, NIGHT))
    assert ok.summary == "Lampu menyala, daya 60,4 W dari 60 W"
    sim.fail_lamp()
    bad = await j.bad(lamp_reading(sim, NIGHT + minutes(1)))
    assert bad.summary == (
        "Lampu mati: seharusnya menyala (fotosel: gelap), daya 0,4 W dari 60 W pada redup 100 %: "
        "periksa lampu/driver"
    )
    assert bad.evidence["active_power_w"] == pytest.approx(0.4)
    assert bad.evidence["rated_w"] == 60 and bad.evidence["expected_by"] == "photocell"
    by_sun = await judge(LAMP_FAILURE, use_photocell=False).bad(lamp_reading(sim, NIGHT))
    assert by_sun.summary.startswith(
        "Lampu mati: seharusnya menyala (malam (matahari terbenam 17:54"
    )
    sim.repair()
    await j.good(lamp_reading(sim, NIGHT + minutes(2)))


async def test_lamp_failure_is_not_judged_by_day() -> None:
    sim = lamp(daylight=True)
    sim.fail_lamp()
    await judge(LAMP_FAILURE).none(lamp_reading(sim, DAY))
    await judge(LAMP_FAILURE, use_photocell=False).none(lamp_reading(sim, DAY))


async def test_lamp_switched_off_at_night() -> None:
    bad = await judge(LAMP_FAILURE).bad(lamp_reading(lamp(lamp_on=False), NIGHT))
    assert bad.summary.startswith("Lampu padam")


@pytest.mark.parametrize(
    ("dim", "watts", "bad"),
    [(100, 6.0, False), (100, 5.9, True), (30, 3.0, False), (30, 2.9, True)],
)
async def test_lamp_failure_power_threshold(dim: int, watts: float, bad: bool) -> None:
    # 10 % of 60 W at the commanded dim, never below 3 W
    values = healthy() | {"dim_command": dim, "active_power": watts, "lamp_failure": False}
    found = await judge(LAMP_FAILURE)(reading(NIGHT, values))
    assert found is not None and found.bad is bad


async def test_lamp_failure_sunset_offset_boundary() -> None:
    dead = healthy() | {"active_power": 0.4}
    del dead["daylight"]  # no photocell reading: the sun decides
    start = SUNSET + minutes(30)  # default: judged from 30 min after sunset
    await judge(LAMP_FAILURE).none(reading(start - SEC, dead))
    await judge(LAMP_FAILURE).bad(reading(start + SEC, dead))
    end = SUNRISE - minutes(30)
    await judge(LAMP_FAILURE).bad(reading(end - SEC, dead))
    await judge(LAMP_FAILURE).none(reading(end + SEC, dead))


async def test_lamp_failure_photocell() -> None:
    dead = healthy() | {"active_power": 0.4}
    # photocell sees dark at noon: the lamp should burn
    bad = await judge(LAMP_FAILURE).bad(reading(DAY, dead | {"daylight": False}))
    assert bad.evidence["expected_by"] == "photocell" and "fotosel: gelap" in bad.summary
    # photocell says daylight at night: not judged; with use_photocell off the sun decides
    await judge(LAMP_FAILURE).none(reading(NIGHT, dead | {"daylight": True}))
    await judge(LAMP_FAILURE, use_photocell=False).bad(reading(NIGHT, dead | {"daylight": True}))


async def test_lamp_failure_controller_flag() -> None:
    flagged = healthy() | {"lamp_failure": True}
    bad = await judge(LAMP_FAILURE).bad(reading(NIGHT, flagged))
    assert bad.summary.startswith("Pengendali melaporkan lampu gagal")
    await judge(LAMP_FAILURE, use_controller_flag=False).good(reading(NIGHT, flagged))


async def test_lamp_failure_missing_metrics() -> None:
    await judge(LAMP_FAILURE).none(reading(NIGHT, {"sys_descr": "x", "supply_voltage": 220.0}))


# --- day_burning ------------------------------------------------------------------------------


async def test_day_burning_raise_clear_and_wasted_energy() -> None:
    j = judge("day_burning")
    on = healthy()  # 60.4 W
    start = wib(2026, 11, 28, 9, 0)
    first = await j.bad(reading(start, on))
    assert first.evidence["wasted_kwh"] == 0
    for i in range(1, 16):
        last = await j.bad(reading(start + minutes(i), on))
    assert last.evidence["wasted_kwh"] == pytest.approx(60.4 * 0.25 / 1000, rel=1e-3)
    assert last.evidence["burning_s"] == 900
    assert "sejak 09:00 WIB (15 menit, 60,4 W): energi terbuang 0,015 kWh" in last.summary
    off = healthy() | {"lamp_on": False, "dim_command": 0, "active_power": 0.4}
    await j.good(reading(start + minutes(16), off))
    assert j.memory == {}
    again = await j.bad(reading(start + minutes(17), on))
    assert again.evidence["wasted_kwh"] == 0  # a new burn starts from zero


async def test_day_burning_gap_is_not_counted() -> None:
    j = judge("day_burning")
    await j.bad(reading(wib(2026, 11, 28, 9, 0), healthy()))
    late = await j.bad(reading(wib(2026, 11, 28, 10, 0), healthy()))  # 1 h gap > max_gap_s
    assert late.evidence["wasted_kwh"] == 0 and late.evidence["burning_s"] == 3600


async def test_day_burning_defaults_give_a_grace_period() -> None:
    s = RULES["day_burning"].settings_model()
    assert s.raise_after_s == 900 and s.raise_after == 1000


async def test_day_burning_night_and_twilight_are_fine() -> None:
    await judge("day_burning").good(reading(NIGHT, healthy()))
    # daylight starts 30 min after sunrise by default
    start = SUNRISE + minutes(30)
    await judge("day_burning").good(reading(start - SEC, healthy()))
    await judge("day_burning").bad(reading(start + SEC, healthy()))
    end = SUNSET - minutes(30)
    await judge("day_burning").bad(reading(end - SEC, healthy()))
    await judge("day_burning").good(reading(end + SEC, healthy()))


@pytest.mark.parametrize(("watts", "bad"), [(6.0, False), (6.1, True)])
async def test_day_burning_power_threshold(watts: float, bad: bool) -> None:
    found = await judge("day_burning")(reading(DAY, healthy() | {"active_power": watts}))
    assert found is not None and found.bad is bad


async def test_day_burning_ignores_a_stuck_photocell_by_default() -> None:
    stuck = healthy() | {"daylight": False}
    await judge("day_burning").bad(reading(DAY, stuck))
    await judge("day_burning", use_photocell=True).good(reading(DAY, stuck))


async def test_day_burning_without_power_uses_lamp_on() -> None:
    await judge("day_burning").bad(reading(DAY, {"lamp_on": True, "dim_command": 100}))
    await judge("day_burning").good(reading(DAY, {"lamp_on": False}))
    await judge("day_burning").none(reading(DAY, {"sys_descr": "x"}))


# --- cycling ----------------------------------------------------------------------------------


async def test_cycling_from_switch_count() -> None:
    j = judge("cycling")
    t = NIGHT
    await j.good(reading(t, {"switch_count": 10}))
    for i, count in enumerate((11, 12, 13), start=1):
        found = await j.good(reading(t + minutes(10 * i), {"switch_count": count}))
    assert found.evidence["switch_offs_in_window"] == 3
    bad = await j.bad(reading(t + minutes(40), {"switch_count": 14}))  # 4th within 1 h
    assert bad.summary.startswith("Lampu berkedip/hidup-mati 4 kali dalam 1 jam")
    await j.bad(reading(t + minutes(65), {"switch_count": 14}))  # first at +10 min: 4 in window
    await j.good(reading(t + minutes(71), {"switch_count": 14}))  # the +10 min one aged out


async def test_cycling_on_the_simulated_lamp_between_polls() -> None:
    j, sim = judge("cycling"), lamp()
    await j.good(lamp_reading(sim, NIGHT))
    for _ in range(4):
        sim.update(lamp_on=False)
        sim.update(lamp_on=True)
    bad = await j.bad(lamp_reading(sim, NIGHT + minutes(1)))
    assert bad.evidence["counted_from"] == "switch_count"


async def test_cycling_from_lamp_on_and_counter_reset() -> None:
    j = judge("cycling")
    t = NIGHT
    for i, on in enumerate([True, False, True, False, True, False, True]):
        found = await j(reading(t + minutes(i), {"lamp_on": on}))
    assert found is not None and not found.bad and found.evidence["counted_from"] == "lamp_on"
    assert (await j.bad(reading(t + minutes(8), {"lamp_on": False}))).evidence[
        "switch_offs_in_window"
    ] == 4
    k = judge("cycling")
    await k.good(reading(t, {"switch_count": 500}))
    await k.good(reading(t + minutes(1), {"switch_count": 2}))  # controller reset: no switches


async def test_cycling_controller_flag_and_missing() -> None:
    await judge("cycling").bad(reading(NIGHT, {"cycling_failure": True}))
    await judge("cycling").none(reading(NIGHT, {"sys_descr": "x"}))


# --- power_deviation --------------------------------------------------------------------------


async def test_power_deviation_degraded_driver_raise_and_clear() -> None:
    j, sim = judge("power_deviation"), lamp()
    await j.good(lamp_reading(sim, NIGHT))
    sim.degrade_driver(0.5)  # 30.4 W of 60
    bad = await j.bad(lamp_reading(sim, NIGHT + minutes(1)))
    assert bad.summary.startswith("Daya lampu terlalu rendah: 30,4 W, seharusnya 60 W pada redup")
    assert (bad.evidence["low_w"], bad.evidence["high_w"]) == (45.0, 78.0)
    sim.repair()
    await j.good(lamp_reading(sim, NIGHT + minutes(2)))


async def test_power_deviation_low_dim_band() -> None:
    j = judge("power_deviation")
    # 30 %: expected 18 W, band 9..36 W
    await j.good(lamp_reading(lamp(dim=30, health=0.6), NIGHT))  # 11.2 W
    await j.bad(lamp_reading(lamp(dim=30, health=0.45), NIGHT))  # 8.5 W


def test_power_deviation_limits_interpolate_and_keep_a_floor() -> None:
    s = PowerDeviationSettings()
    assert limits(60.0, 100, s) == pytest.approx((45.0, 78.0))
    assert limits(36.0, 60, s) == pytest.approx((36 * 0.625, 36 * 1.65))  # halfway 30..90 %
    assert limits(18.0, 30, s) == pytest.approx((9.0, 36.0))
    assert limits(4.0, 10, s) == pytest.approx((1.0, 8.0))  # at least expected ± 3 W


@pytest.mark.parametrize(
    ("watts", "bad"), [(45.0, False), (44.9, True), (78.0, False), (78.1, True)]
)
async def test_power_deviation_edges(watts: float, bad: bool) -> None:
    found = await judge("power_deviation")(reading(NIGHT, healthy() | {"active_power": watts}))
    assert found is not None and found.bad is bad


async def test_power_deviation_not_judged_off_dark_or_missing() -> None:
    j = judge("power_deviation")
    await j.none(lamp_reading(lamp(lamp_on=False), NIGHT))
    await j.none(reading(NIGHT, healthy() | {"active_power": 0.4}))  # dark: lamp_failure's
    await j.none(reading(NIGHT, {"dim_command": 100}))


# --- supply_voltage, low_power_factor, over_temperature -------------------------------------


@pytest.mark.parametrize(
    ("volts", "bad"), [(220.0, False), (198.0, False), (197.9, True), (242.0, False), (242.1, True)]
)
async def test_supply_voltage(volts: float, bad: bool) -> None:
    found = await judge("supply_voltage")(reading(NIGHT, {"supply_voltage": volts}))
    assert found is not None and found.bad is bad


async def test_supply_voltage_on_the_simulated_lamp() -> None:
    j, sim = judge("supply_voltage"), lamp(supply_voltage=185.0)
    bad = await j.bad(lamp_reading(sim, NIGHT))
    assert bad.summary == "Tegangan PLN rendah: 185 V (batas 198-242 V): periksa jaringan/panel"
    sim.update(supply_voltage=221.4)
    await j.good(lamp_reading(sim, NIGHT + minutes(1)))
    await j.none(reading(NIGHT, {"active_power": 60.0}))


async def test_low_power_factor() -> None:
    j = judge("low_power_factor")
    await j.good(lamp_reading(lamp(), NIGHT))  # 0.97
    await j.bad(lamp_reading(lamp(power_factor=0.45), NIGHT))
    await j.good(lamp_reading(lamp(power_factor=0.5), NIGHT))  # exactly the limit
    await j.none(lamp_reading(lamp(lamp_on=False), NIGHT))  # standby 0.35 at 0.4 W
    await j.none(lamp_reading(lamp(dim=20, power_factor=0.3), NIGHT))  # 12.4 W < 15 W
    await j.none(reading(NIGHT, {"active_power": 60.0}))


async def test_over_temperature_gear() -> None:
    j = judge("over_temperature")
    await j.good(lamp_reading(lamp(), NIGHT))  # 28 + 18 = 46 °C
    bad = await j.bad(lamp_reading(lamp(gear_temperature=76.0), NIGHT))
    assert bad.summary.startswith("Terlalu panas: suhu driver LED 76 °C (batas 75 °C)")
    await j.good(lamp_reading(lamp(gear_temperature=75.0), NIGHT))
    shut = await j.bad(reading(NIGHT, {"gear_temperature": 60.0, "thermal_shutdown": True}))
    assert shut.severity == "major" and "mati karena panas" in shut.summary
    await j.none(reading(NIGHT, {"active_power": 60.0}))


# --- rebooted, reboot_loop, controller_alarm, photocell_fault --------------------------------


async def test_rebooted_once_then_clear() -> None:
    clock = SimTime()
    sim = LampController(clock=clock)
    j = judge("rebooted")
    clock.t += 3 * 86400
    await j.good(lamp_reading(sim, NIGHT))  # first reading: nothing to compare
    clock.t += 60
    await j.good(lamp_reading(sim, NIGHT + minutes(1)))
    clock.t += 60
    sim.reboot()
    clock.t += 30
    bad = await j.bad(lamp_reading(sim, NIGHT + minutes(2)))
    assert bad.summary == (
        "Pengendali lampu restart sekitar 21:01 WIB (uptime kini 30 detik, sebelumnya 3 hari)"
    )
    assert bad.evidence["previous_uptime_s"] == pytest.approx(3 * 86400 + 60)
    clock.t += 60
    await j.good(lamp_reading(sim, NIGHT + minutes(3)))
    await j.none(reading(NIGHT + minutes(4), {"active_power": 60.0}))


async def test_reboot_between_readings_even_if_uptime_grew() -> None:
    j = judge("rebooted")
    await j.good(reading(NIGHT, {"uptime": 100.0}))
    bad = await j.bad(reading(NIGHT + minutes(60), {"uptime": 1800.0}))  # booted 30 min ago
    assert "restart sekitar 21:30 WIB" in bad.summary
    await j.good(reading(NIGHT + minutes(61), {"uptime": 1860.0}))
    await j.good(reading(NIGHT + minutes(71), {"uptime": 2430.0}))  # 30 s of clock slack is fine


async def test_uptime_wrap_is_not_a_reboot() -> None:
    j = judge("rebooted")
    wrap = 2**32 / 100
    await j.good(reading(NIGHT, {"uptime": wrap - 30}))
    await j.good(reading(NIGHT + minutes(1), {"uptime": 30.0}))
    await j.bad(reading(NIGHT + minutes(2), {"uptime": 5.0}))


async def test_reboot_loop() -> None:
    j = judge("reboot_loop")
    t = NIGHT
    await j.good(reading(t, {"uptime": 5000.0}))
    await j.good(reading(t + minutes(10), {"uptime": 100.0}))  # 1: backwards
    await j.good(reading(t + minutes(20), {"uptime": 100.0}))  # 2: younger than 10 min
    bad = await j.bad(reading(t + minutes(30), {"uptime": 100.0}))  # 3 within 1 h
    assert bad.summary.startswith("Pengendali lampu restart berulang: 3 kali dalam 1 jam")
    await j.good(reading(t + minutes(30 + 60), {"uptime": 3700.0}))  # the first aged out


async def test_controller_alarm() -> None:
    j = judge("controller_alarm")
    await j.good(lamp_reading(lamp(), NIGHT))
    bad = await j.bad(lamp_reading(lamp(gear_failure=True, gear_failure_reason=3), NIGHT))
    assert bad.summary == "Pengendali melaporkan: driver LED rusak (kode 3)"
    await j.bad(reading(NIGHT, {"relay_failure": True}))
    await j.none(reading(NIGHT, {"active_power": 60.0}))


async def test_photocell_fault() -> None:
    j = judge("photocell_fault")
    await j.bad(reading(wib(2026, 11, 28, 23, 0), {"daylight": True}))
    await j.bad(reading(DAY, {"daylight": False, "lux": 3}))
    await j.good(reading(DAY, {"daylight": True}))
    await j.good(reading(NIGHT, {"daylight": False}))
    await j.none(reading(SUNSET + minutes(30), {"daylight": True}))  # twilight, within 1 h
    await j.none(reading(NIGHT, {"lux": 3}))


# --- unreachable (an MQTT street light) -----------------------------------------------------


async def test_unreachable_mqtt_silence_never_pings() -> None:
    async def ping(host: str, timeout_s: float, privileged: bool) -> bool:
        raise AssertionError("no ping for an MQTT device")

    from agent.faults.rules.unreachable import Unreachable

    device = lamp_device(profile="pju-mqtt-json", address="pju/pondok-aren/pju-0031/telemetry")
    j = Judge(Unreachable(ping), device)
    error = ReadingError(code="silent", message="nothing on topic for 151 s")
    bad = await j.bad(reading(NIGHT, reachable=False, errors=[error]))
    assert bad.summary.startswith("Pengendali tidak mengirim data MQTT (seharusnya tiap 60 detik)")
    assert bad.evidence["errors"] == ["silent"]
    await j.good(reading(NIGHT + minutes(1), {"lamp_on": True}))
    assert RULES[UNREACHABLE].applies_to(device, j.profile)
