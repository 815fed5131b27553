"""What a report says, in Bahasa Indonesia, for the technician who has to act on it.

Pure functions: texts from a fault event (or a gateway's status) and where it is.
Times are shown in WIB (UTC+7, no daylight saving).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from uplink.contract import EvidenceValue, FaultEvent, Location

Scalar = bool | int | float | str | None
WIB = timezone(timedelta(hours=7), "WIB")
GATEWAY_OFFLINE = "gateway_offline"  # central's own fault type: the Last Will

_DAYS = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")
SEVERITY_LABELS = {"info": "informasi", "minor": "ringan", "major": "berat", "critical": "kritis"}

FAULT_LABELS: dict[str, str] = {
    "lamp_failure": "Lampu PJU mati",
    "lamp_out": "Lampu PJU mati",
    "circuit_outage": "Sirkuit PJU padam",
    "unreachable": "Perangkat tidak merespons",
    "gateway_network_down": "Jaringan gateway terputus",
    GATEWAY_OFFLINE: "Gateway siaran-edge offline",
    "day_burning": "Lampu PJU menyala di siang hari",
    "power_deviation": "Daya lampu PJU tidak normal",
    "controller_alarm": "Alarm kontroler lampu PJU",
    "cycling": "Lampu PJU mati-nyala berulang",
    "photocell_fault": "Fotosel (sensor cahaya) bermasalah",
    "supply_voltage": "Tegangan listrik tidak normal",
    "low_power_factor": "Faktor daya lampu rendah",
    "over_temperature": "Suhu perangkat terlalu tinggi",
    "rebooted": "Perangkat menyala ulang (restart)",
    "reboot_loop": "Perangkat restart berulang-ulang",
    "uplink_down": "Koneksi internet hotspot terputus",
    "radio_down": "Radio WiFi hotspot mati",
    "no_clients": "Hotspot tidak melayani pengguna",
    "interface_errors": "Banyak galat pada port jaringan",
    "cpu_high": "Beban CPU hotspot tinggi",
    "memory_high": "Memori hotspot hampir penuh",
    "outbox_store_reset": "Penyimpanan data gateway rusak dan diganti",
}

ADVICE: dict[str, str] = {
    "lamp_failure": "Periksa lampu, driver/ballast, konektor dan MCB di tiang.",
    "lamp_out": "Periksa lampu, driver/ballast, konektor dan MCB di tiang.",
    "circuit_outage": "Periksa panel PJU: MCB/kontaktor, timer/fotosel panel dan pasokan PLN.",
    "unreachable": "Periksa catu daya dan kabel/jaringan perangkat; bila lampu mati, periksa MCB.",
    "gateway_network_down": "Periksa switch/port jaringan dan catu daya di lokasi gateway.",
    GATEWAY_OFFLINE: "Periksa catu daya panel dan gateway, modem serta koneksi internet lokasi.",
    "day_burning": "Periksa fotosel/timer dan kontaktor (lampu menyala siang memboroskan listrik).",
    "cycling": "Periksa lampu/driver yang hampir rusak dan sambungan kabel yang longgar.",
    "photocell_fault": "Bersihkan atau ganti fotosel.",
    "supply_voltage": "Ukur tegangan di panel; laporkan ke PLN bila pasokan tidak normal.",
    "uplink_down": "Periksa kabel uplink/ISP, modem dan router di lokasi hotspot.",
    "radio_down": "Periksa access point (radio WiFi); nyalakan ulang bila perlu.",
    "no_clients": "Periksa apakah SSID tampil dan pengguna bisa tersambung.",
    "over_temperature": "Periksa ventilasi dan kipas kotak perangkat.",
}

SUBJECT_NOUNS = {
    "streetlight": "lampu PJU",
    "hotspot": "hotspot WiFi",
    "circuit": "sirkuit",
    "gateway": "gateway",
}


def wib(at: datetime) -> str:
    local = at.astimezone(WIB)
    return f"{_DAYS[local.weekday()]}, {local:%d-%m-%Y %H:%M} WIB"


def fault_label(fault_type: str) -> str:
    return FAULT_LABELS.get(fault_type, f"Gangguan {fault_type.replace('_', ' ')}")


def value_text(value: EvidenceValue) -> str:
    if isinstance(value, list):
        return ", ".join(value_text(v) for v in value) or "(kosong)"
    if isinstance(value, bool):
        return "ya" if value else "tidak"
    if value is None:
        return "(tidak ada)"
    return str(value)


def names(items: Sequence[Scalar], limit: int = 200) -> str:
    shown = ", ".join(value_text(i) for i in items[:limit])
    return shown + (f" (+{len(items) - limit} lagi)" if len(items) > limit else "")


def evidence_lines(evidence: Mapping[str, EvidenceValue], skip: tuple[str, ...] = ()) -> list[str]:
    lines = [f"- {k}: {value_text(v)}" for k, v in evidence.items() if k not in skip]
    return lines[:40] + ([f"- (+{len(lines) - 40} nilai lagi)"] if len(lines) > 40 else [])


def members(evidence: Mapping[str, EvidenceValue]) -> tuple[str, list[Scalar], int | None]:
    """The lamps of a circuit outage or the devices of a gateway fault, and their total."""
    for noun, label in (("lamps", "Lampu"), ("devices", "Perangkat")):
        found = evidence.get(noun)
        if isinstance(found, list):
            total = evidence.get(f"{noun}_total")
            return label, found, total if isinstance(total, int) else None
    return "", [], None


def place(loc: Location) -> str:
    parts = [loc.address, f"Kel. {loc.kelurahan}" if loc.kelurahan else ""]
    parts.append(f"Kec. {loc.kecamatan}" if loc.kecamatan else "")
    return ", ".join(p for p in parts if p) or f"{loc.lat:.6f}, {loc.lon:.6f}"


def where_lines(loc: Location, approximate: str = "") -> list[str]:
    lines = [
        f"Alamat: {loc.address or '-'}",
        f"Kelurahan: {loc.kelurahan or '-'}",
        f"Kecamatan: {loc.kecamatan or '-'}",
        f"Koordinat: {loc.lat:.6f}, {loc.lon:.6f}",
        f"Peta: https://www.google.com/maps?q={loc.lat:.6f},{loc.lon:.6f}",
    ]
    if approximate:
        lines.append(f"Catatan lokasi: {approximate}")
    return lines


@dataclass(frozen=True)
class Routing:
    """Who gets the report."""

    category_label: str
    agency: str
    unit: str
    priority: str


def subject_name(ev: FaultEvent) -> str:
    noun = SUBJECT_NOUNS.get(ev.device_kind, ev.device_kind)
    if ev.device_kind == "circuit":
        _, found, _ = members(ev.evidence)
        count = f" ({len(found)} lampu)" if found else ""
        return f"{noun} {ev.circuit or ev.device_id}{count}"
    return f"{noun} {ev.device_id}"


def report_title(ev: FaultEvent, loc: Location) -> str:
    title = f"{fault_label(ev.fault_type)}: {subject_name(ev)}, {place(loc)}"
    return title if len(title) <= 200 else title[:199] + "…"


def report_description(
    ev: FaultEvent, loc: Location, routing: Routing, approximate: str = ""
) -> str:
    sev = SEVERITY_LABELS.get(ev.severity, ev.severity)
    lines = [
        "[Laporan otomatis siaran-edge: dibuat oleh sensor, bukan oleh warga]",
        "",
        f"Masalah: {fault_label(ev.fault_type)} ({ev.fault_type})",
        f"Tingkat: {sev} ({ev.severity}), prioritas {routing.priority}",
    ]
    if ev.summary:
        lines.append(f"Keterangan sensor: {ev.summary}")
    lines += ["", f"Perangkat: {subject_name(ev)}"]
    if ev.circuit and ev.device_kind != "circuit":
        lines.append(f"Sirkuit/panel: {ev.circuit}")
    lines.append(f"Gateway: {ev.gateway_id}")
    lines += where_lines(loc, approximate)
    lines.append(f"Sejak: {wib(ev.first_seen)} (pertama terlihat)")
    lines.append(f"Dilaporkan sensor: {wib(ev.observed_at)}")
    label, found, total = members(ev.evidence)
    if found:
        of = f" dari {total}" if total is not None else ""
        lines.append(f"{label} yang terdampak ({len(found)}{of}): {names(found)}")
    skip = ("lamps", "devices", "lamps_total", "devices_total")
    ev_lines = evidence_lines(ev.evidence, skip)
    if ev_lines:
        lines += ["Bukti (pembacaan sensor):", *ev_lines]
    lines += _notes(ev)
    lines += [
        "",
        f"Tindakan yang disarankan: {ADVICE.get(ev.fault_type, 'Periksa perangkat di lokasi.')}",
        f"Penanggung jawab: {routing.agency}" + (f" / {routing.unit}" if routing.unit else ""),
        f"Kategori: {routing.category_label}",
        f"Kunci sensor: {ev.gateway_id}/{ev.device_id}/{ev.fault_type}",
    ]
    return "\n".join(lines)


def _notes(ev: FaultEvent) -> list[str]:
    notes = []
    if not ev.clock_synced:
        notes.append("Catatan: jam gateway belum tersinkron (NTP); waktu di atas bisa meleset.")
    if ev.replayed:
        notes.append("Catatan: dikirim terlambat (gateway sempat terputus atau dinyalakan ulang).")
    return notes


def update_comment(ev: FaultEvent) -> str:
    sev = SEVERITY_LABELS.get(ev.severity, ev.severity)
    lines = [
        f"Pembaruan dari sensor ({wib(ev.observed_at)}): {ev.summary or fault_label(ev.fault_type)}"
    ]
    lines.append(f"Tingkat sekarang: {sev} ({ev.severity})")
    label, found, total = members(ev.evidence)
    if found:
        of = f" dari {total}" if total is not None else ""
        lines.append(f"{label} yang terdampak sekarang ({len(found)}{of}): {names(found)}")
    added = ev.evidence.get("added")
    if isinstance(added, list) and added:
        lines.append(f"Bertambah: {names(added)}")
    skip = ("lamps", "devices", "lamps_total", "devices_total", "added")
    ev_lines = evidence_lines(ev.evidence, skip)
    if ev_lines:
        lines += ["Bukti:", *ev_lines]
    return "\n".join(lines + _notes(ev))


def raised_again_comment(ev: FaultEvent) -> str:
    return "Gateway melaporkan gangguan ini lagi.\n" + update_comment(ev)


def cleared_note(ev: FaultEvent, closing: bool) -> str:
    lines = [
        f"Sensor melihat gangguan ini sudah pulih pada {wib(ev.observed_at)}.",
        ev.summary or "",
    ]
    still = ev.evidence.get("still_down")
    if isinstance(still, list) and still:
        lines.append(f"Masih mati/tidak terjangkau (akan dipantau sendiri): {names(still)}")
    lines.append(
        "Laporan ditutup otomatis." if closing else "Mohon konfirmasi di lapangan bila perlu."
    )
    return "\n".join(line for line in lines + _notes(ev) if line)


def merged_note(ev: FaultEvent, into: str) -> str:
    what = (
        "padamnya sirkuit"
        if ev.evidence.get("absorbed_into") == "circuit_outage"
        else ("gangguan jaringan gateway")
    )
    return (
        f"Digabung ke laporan {what} {ev.evidence.get('absorbed_by')} ({into}) pada "
        f"{wib(ev.observed_at)}: gangguan {ev.device_id} kini bagian dari gangguan itu. "
        "Laporan ini ditutup; tindak lanjut ada di laporan tersebut."
    )


def merged_into_comment(ev: FaultEvent, merged: str) -> str:
    return (
        f"Laporan {merged} ({fault_label(ev.fault_type)}: {ev.device_id}) digabung ke laporan ini "
        f"pada {wib(ev.observed_at)}."
    )


def reopened_note(ev: FaultEvent, cleared_at: datetime | None) -> str:
    gap = ""
    if cleared_at is not None:
        hours = max(0.0, (ev.first_seen - cleared_at).total_seconds() / 3600)
        gap = f" ({hours:.1f} jam setelah pulih)"
    return f"Gangguan muncul lagi{gap}: laporan dibuka kembali.\n" + update_comment(ev)


# -- the gateway's own Last Will -------------------------------------------------------------


def offline_title(gateway_id: str, site: str, loc: Location) -> str:
    name = f" ({site})" if site else ""
    return f"{fault_label(GATEWAY_OFFLINE)}: gateway {gateway_id}{name}, {place(loc)}"[:200]


def offline_description(
    gateway_id: str,
    site: str,
    since: datetime,
    devices: int | None,
    loc: Location,
    routing: Routing,
    approximate: str = "",
) -> str:
    count = f"{devices} perangkat" if devices is not None else "perangkat"
    lines = [
        "[Laporan otomatis siaran-edge: dibuat oleh sistem pemantau, bukan oleh warga]",
        "",
        f"Masalah: {fault_label(GATEWAY_OFFLINE)}: koneksi gateway {gateway_id} ke server "
        "terputus tanpa pamit (Last Will MQTT).",
        f"Akibatnya {count} di belakang gateway ini tidak terpantau; gangguan lampu/hotspot di "
        "sana tidak akan terlaporkan sampai gateway tersambung lagi.",
        "",
        f"Gateway: {gateway_id}" + (f" ({site})" if site else ""),
        *where_lines(loc, approximate),
        f"Terputus sejak: {wib(since)} (terakhir tersambung)",
        "",
        f"Tindakan yang disarankan: {ADVICE[GATEWAY_OFFLINE]}",
        f"Penanggung jawab: {routing.agency}" + (f" / {routing.unit}" if routing.unit else ""),
        f"Kategori: {routing.category_label}",
        f"Kunci sensor: {gateway_id}/{gateway_id}/{GATEWAY_OFFLINE}",
    ]
    return "\n".join(lines)


def online_note(at: datetime) -> str:
    return f"Gateway tersambung kembali pada {wib(at)}; pemantauan berjalan lagi."


def red_flag_reason(agency: str, unit: str, sla_h: float, due: datetime) -> str:
    who = agency + (f" / {unit}" if unit else "")
    return (
        f"Belum ada tanggapan dari {who} dalam {sla_h:g} jam sejak laporan diterima "
        f"(batas {wib(due)})."
    )
