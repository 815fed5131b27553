"""Words of the page in Bahasa Indonesia (default) and English, and how times and numbers read.

A missing English text falls back to the Indonesian one, a missing key shows the key, so a gap
is visible but never breaks a page. Times are shown in WIB (UTC+7, no daylight saving).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from firmware_config.web_config import Language

LANGUAGES: tuple[Language, ...] = ("id", "en")
WIB = timezone(timedelta(hours=7), "WIB")

# key: (Bahasa Indonesia, English)
CATALOGUE: dict[str, tuple[str, str]] = {
    "app.title": ("Status gateway", "Gateway status"),
    "nav.overview": ("Ringkasan", "Overview"),
    "nav.devices": ("Perangkat", "Devices"),
    "nav.faults": ("Gangguan", "Faults"),
    "nav.logout": ("Keluar", "Log out"),
    "nav.language": ("English", "Bahasa Indonesia"),
    "login.title": ("Masuk", "Log in"),
    "login.user": ("Nama pengguna", "User name"),
    "login.password": ("Kata sandi", "Password"),
    "login.submit": ("Masuk", "Log in"),
    "login.failed": ("Nama pengguna atau kata sandi salah.", "Wrong user name or password."),
    "login.limited": (
        "Terlalu banyak percobaan gagal. Coba lagi dalam {minutes} menit.",
        "Too many failed attempts. Try again in {minutes} min.",
    ),
    "login.expired": ("Sesi berakhir, silakan masuk lagi.", "Session ended, please log in again."),
    "login.as": ("Masuk sebagai {name}", "Logged in as {name}"),
    "csrf.bad": (
        "Formulir kedaluwarsa: muat ulang halaman dan coba lagi.",
        "The form is stale: reload the page and try again.",
    ),
    "health.title": ("Kesehatan gateway", "Gateway health"),
    "health.uptime": ("Menyala sejak boot", "Uptime"),
    "health.agent": ("Agen berjalan", "Agent running"),
    "health.cpu": ("CPU", "CPU"),
    "health.memory": ("Memori", "Memory"),
    "health.disk": ("Disk", "Disk"),
    "health.temperature": ("Suhu", "Temperature"),
    "health.clock": ("Jam", "Clock"),
    "health.clock_ok": ("tersinkron (NTP)", "synchronised (NTP)"),
    "health.clock_bad": ("BELUM tersinkron", "NOT synchronised"),
    "uplink.title": ("Koneksi ke pusat", "Link to central"),
    "uplink.connected": ("Terhubung", "Connected"),
    "uplink.disconnected": ("Terputus", "Disconnected"),
    "uplink.offline": ("Tanpa broker (luring)", "No broker (offline)"),
    "uplink.last_publish": ("Kirim terakhir", "Last publish"),
    "uplink.backlog": ("Antrean belum terkirim", "Outbox backlog"),
    "uplink.backlog_value": (
        "{faults} gangguan, {telemetry} telemetri",
        "{faults} faults, {telemetry} telemetry",
    ),
    "uplink.oldest": ("Tertua belum terkirim", "Oldest unsent"),
    "uplink.error": ("Galat terakhir", "Last error"),
    "devices.title": ("Perangkat", "Devices"),
    "devices.by_state": ("Perangkat menurut keadaan", "Devices by state"),
    "devices.total": ("{n} perangkat", "{n} devices"),
    "devices.none": ("Tidak ada perangkat yang cocok.", "No device matches."),
    "filter.kind": ("Jenis", "Kind"),
    "filter.circuit": ("Sirkuit", "Circuit"),
    "filter.state": ("Keadaan", "State"),
    "filter.all": ("Semua", "All"),
    "filter.apply": ("Saring", "Filter"),
    "kind.streetlight": ("Lampu jalan (PJU)", "Street light"),
    "kind.hotspot": ("Hotspot WiFi", "WiFi hotspot"),
    "kind.circuit": ("Sirkuit", "Circuit"),
    "kind.gateway": ("Gateway", "Gateway"),
    "state.ok": ("Normal", "OK"),
    "state.warning": ("Diamati", "Watching"),
    "state.fault": ("Gangguan", "Fault"),
    "state.unreachable": ("Tak terjangkau", "Unreachable"),
    "state.maintenance": ("Perawatan", "Maintenance"),
    "state.unknown": ("Belum terbaca", "Not read yet"),
    "device.last_reading": ("Bacaan terakhir", "Last reading"),
    "device.never": ("belum pernah", "never"),
    "device.lamp": ("Lampu", "Lamp"),
    "device.lamp_on": ("MENYALA", "ON"),
    "device.lamp_off": ("PADAM", "OFF"),
    "device.power": ("Daya", "Power"),
    "device.voltage": ("Tegangan", "Voltage"),
    "device.dim": ("Redup", "Dim"),
    "device.clients": ("Klien", "Clients"),
    "device.uplink": ("Uplink", "Uplink"),
    "device.circuit": ("Sirkuit", "Circuit"),
    "ifstatus.up": ("aktif", "up"),
    "ifstatus.down": ("MATI", "DOWN"),
    "ifstatus.not_found": ("tidak ditemukan", "not found"),
    "device.pole": ("Tiang", "Pole"),
    "device.profile": ("Profil", "Profile"),
    "device.address": ("Alamat", "Address"),
    "device.polls": ("Polling", "Polls"),
    "device.polls_value": ("{polls} kali, {failures} gagal", "{polls}, {failures} failed"),
    "device.poll_time": ("Lama polling", "Poll time"),
    "device.charts": ("Bacaan terbaru", "Recent readings"),
    "device.no_history": ("Belum ada riwayat bacaan.", "No readings yet."),
    "device.values": ("Semua nilai", "All values"),
    "device.errors": ("Galat bacaan", "Reading errors"),
    "device.history": ("Riwayat gangguan", "Fault history"),
    "device.no_events": ("Belum ada kejadian.", "No events yet."),
    "device.in_maintenance_until": ("Perawatan sampai {until}", "In maintenance until {until}"),
    "device.not_found": ("Perangkat tidak dikenal.", "Unknown device."),
    "chart.active_power": ("Daya (W)", "Power (W)"),
    "chart.supply_voltage": ("Tegangan (V)", "Voltage (V)"),
    "chart.gear_temperature": ("Suhu driver (°C)", "Driver temperature (°C)"),
    "chart.clients": ("Klien", "Clients"),
    "chart.board_temperature": ("Suhu papan (°C)", "Board temperature (°C)"),
    "chart.poll_s": ("Lama polling (s)", "Poll time (s)"),
    "chart.range": ("min {low} · maks {high}", "min {low} · max {high}"),
    "faults.active": ("Gangguan aktif", "Active faults"),
    "faults.none": ("Tidak ada gangguan aktif.", "No active faults."),
    "faults.recent": ("Kejadian terbaru", "Recent events"),
    "faults.evidence": ("Bukti", "Evidence"),
    "faults.since": ("sejak {at}", "since {at}"),
    "faults.members": ("Anggota", "Members"),
    "faults.absorbed_by": ("Bagian dari {id}", "Part of {id}"),
    "faults.flapping": ("naik-turun", "flapping"),
    "faults.acked": ("Diakui oleh {by}", "Acknowledged by {by}"),
    "fault.status.pending": ("menunggu", "pending"),
    "fault.status.raised": ("dilaporkan", "reported"),
    "fault.status.held": ("ditahan", "held"),
    "fault.status.absorbed": ("tergabung", "absorbed"),
    "fault.status.maintenance": ("perawatan", "maintenance"),
    "fault.status.muted": ("dibisukan", "muted"),
    "event.raised": ("muncul", "raised"),
    "event.updated": ("diperbarui", "updated"),
    "event.cleared": ("pulih", "cleared"),
    "severity.info": ("info", "info"),
    "severity.minor": ("ringan", "minor"),
    "severity.major": ("berat", "major"),
    "severity.critical": ("kritis", "critical"),
    "ack.title": ("Akui gangguan", "Acknowledge"),
    "ack.note": ("Catatan", "Note"),
    "ack.default_note": ("teknisi di lokasi", "technician on site"),
    "ack.submit": ("Akui", "Acknowledge"),
    "ack.done": (
        "Gangguan {fault} pada {device} diakui.",
        "Fault {fault} on {device} acknowledged.",
    ),
    "maint.title": ("Perawatan", "Maintenance"),
    "maint.target_device": ("Perangkat ini", "This device"),
    "maint.target_circuit": ("Sirkuit {circuit}", "Circuit {circuit}"),
    "maint.for": ("Selama", "For"),
    "maint.minutes": ("{n} menit", "{n} min"),
    "maint.hours": ("{n} jam", "{n} h"),
    "maint.note": ("Catatan", "Note"),
    "maint.submit": ("Mulai perawatan", "Start maintenance"),
    "maint.end": ("Akhiri", "End"),
    "maint.done": (
        "{target} dalam perawatan sampai {until}.",
        "{target} in maintenance until {until}.",
    ),
    "maint.ended": ("Perawatan {target} diakhiri.", "Maintenance of {target} ended."),
    "maint.active": ("Perawatan berjalan", "Maintenance in progress"),
    "maint.circuit_form": ("Sirkuit dalam perawatan", "Put a circuit in maintenance"),
    "maint.by": ("oleh {by}", "by {by}"),
    "lamp.title": ("Uji lampu", "Lamp test"),
    "lamp.minutes": ("Nyalakan selama", "Switch on for"),
    "lamp.submit": ("Uji sekarang", "Test now"),
    "lamp.ok": ("Uji lampu berhasil: {detail}", "Lamp test passed: {detail}"),
    "lamp.failed": ("Uji lampu gagal: {detail}", "Lamp test failed: {detail}"),
    "lamp.unsupported": (
        "Profil perangkat ini tidak mendukung perintah tulis.",
        "This device's profile has no write command.",
    ),
    "action.failed": ("Tidak dapat dilakukan: {why}", "Could not be done: {why}"),
    "time.ago_s": ("{n} dtk lalu", "{n} s ago"),
    "time.ago_m": ("{n} mnt lalu", "{n} min ago"),
    "time.ago_h": ("{n} jam lalu", "{n} h ago"),
    "time.ago_d": ("{n} hari lalu", "{n} d ago"),
    "time.none": ("—", "—"),
    "yes": ("ya", "yes"),
    "no": ("tidak", "no"),
    "fault.unreachable": ("Tak terjangkau", "Unreachable"),
    "fault.rebooted": ("Baru menyala ulang", "Rebooted"),
    "fault.reboot_loop": ("Menyala ulang berulang", "Reboot loop"),
    "fault.over_temperature": ("Terlalu panas", "Over temperature"),
    "fault.lamp_failure": ("Lampu mati", "Lamp failure"),
    "fault.day_burning": ("Menyala siang hari", "Burning by day"),
    "fault.cycling": ("Lampu berkedip", "Cycling"),
    "fault.power_deviation": ("Daya menyimpang", "Power deviation"),
    "fault.supply_voltage": ("Tegangan PLN", "Supply voltage"),
    "fault.low_power_factor": ("Faktor daya rendah", "Low power factor"),
    "fault.controller_alarm": ("Alarm pengendali", "Controller alarm"),
    "fault.photocell_fault": ("Fotosel rusak", "Photocell fault"),
    "fault.uplink_down": ("Uplink putus", "Uplink down"),
    "fault.radio_down": ("Radio WiFi mati", "Radio down"),
    "fault.cpu_high": ("CPU tinggi", "High CPU"),
    "fault.memory_high": ("Memori tinggi", "High memory"),
    "fault.no_clients": ("Tanpa klien", "No clients"),
    "fault.interface_errors": ("Galat antarmuka", "Interface errors"),
    "fault.circuit_outage": ("Sirkuit padam", "Circuit outage"),
    "fault.gateway_network_down": ("Jaringan gateway putus", "Gateway network down"),
}


@dataclass(frozen=True)
class Translator:
    lang: Language

    def __call__(self, key: str, **values: Any) -> str:
        pair = CATALOGUE.get(key)
        text = key if pair is None else pair[1] if self.lang == "en" and pair[1] else pair[0]
        return text.format(**values) if values else text

    def fault(self, fault_type: str) -> str:
        key = f"fault.{fault_type}"
        return self(key) if key in CATALOGUE else fault_type

    def ifstatus(self, status: str | None) -> str:
        if status is None:
            return ""
        key = f"ifstatus.{status}"
        return self(key) if key in CATALOGUE else status

    def time(self, at: datetime | None) -> str:
        if at is None:
            return self("time.none")
        return at.astimezone(WIB).strftime("%d/%m %H:%M:%S WIB")

    def ago(self, at: datetime | None, now: datetime) -> str:
        if at is None:
            return self("time.none")
        s = max(int((now - at).total_seconds()), 0)
        if s < 120:
            return self("time.ago_s", n=s)
        if s < 7200:
            return self("time.ago_m", n=s // 60)
        if s < 172800:
            return self("time.ago_h", n=s // 3600)
        return self("time.ago_d", n=s // 86400)

    def duration(self, seconds: float) -> str:
        s = int(seconds)
        d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
        hour = "j" if self.lang == "id" else "h"
        day = "h" if self.lang == "id" else "d"
        if d:
            return f"{d} {day} {h} {hour}"
        return f"{h} {hour} {m} m" if h else f"{m} m {s % 60} s"

    def number(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return self("time.none")
        text = f"{value:,.{digits}f}"
        if self.lang == "id":  # 1.234,5
            text = text.replace(",", "_").replace(".", ",").replace("_", ".")
        return text


def pick_language(asked: str | None, default: Language) -> Language:
    for lang in LANGUAGES:
        if asked == lang:
            return lang
    return default
