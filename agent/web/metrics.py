"""Prometheus metrics for fleet monitoring, read from the AgentView at each scrape.

A registry of its own (not prometheus_client's global one): only these series, no process
collector surprises, and several apps in one test process do not collide.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.web.view import AgentView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class AgentCollector(Collector):
    def __init__(self, view: AgentView) -> None:
        self._view = view

    def collect(self) -> Iterable[Metric]:
        yield from self._devices()
        yield from self._uplink()
        yield from self._faults()
        yield from self._gateway()

    def _devices(self) -> Iterable[Metric]:
        labels = ["device", "kind"]
        polls = CounterMetricFamily("siaran_device_polls", "Polls of the device", labels=labels)
        errors = CounterMetricFamily(
            "siaran_device_poll_errors", "Polls that failed or returned errors", labels=labels
        )
        missed = CounterMetricFamily(
            "siaran_device_missed_slots", "Poll slots skipped (overrun)", labels=labels
        )
        duration = GaugeMetricFamily(
            "siaran_device_poll_duration_seconds", "Duration of the last poll", labels=labels
        )
        up = GaugeMetricFamily(
            "siaran_device_up", "1: the last reading answered, 0: it did not", labels=labels
        )
        stats, latest = self._view.poll_stats(), self._view.latest()
        for device in self._view.config.devices:
            lv = [device.id, device.kind]
            s = stats.get(device.id)
            if s is not None:
                polls.add_metric(lv, s.polls)
                errors.add_metric(lv, s.failures)
                missed.add_metric(lv, s.missed_slots)
                duration.add_metric(lv, s.last_duration_s)
            reading = latest.get(device.id)
            if reading is not None:
                up.add_metric(lv, 1.0 if reading.reachable else 0.0)
        yield from (polls, errors, missed, duration, up)

    def _uplink(self) -> Iterable[Metric]:
        u = self._view.uplink()
        if u is None:
            return
        depth = GaugeMetricFamily(
            "siaran_outbox_depth", "Items waiting in the outbox", labels=["kind"]
        )
        depth.add_metric(["fault"], u.faults_pending)
        depth.add_metric(["telemetry"], u.telemetry_pending)
        yield depth
        yield GaugeMetricFamily(
            "siaran_outbox_bytes", "Payload bytes on disk", value=u.bytes_on_disk
        )
        age = GaugeMetricFamily(
            "siaran_outbox_oldest_pending_age_seconds", "Age of the oldest unsent item"
        )
        if u.oldest_pending_at is not None:
            age.add_metric([], max((self._view.now() - u.oldest_pending_at).total_seconds(), 0))
        yield age
        yield GaugeMetricFamily(
            "siaran_outbox_dead_letters", "Rejected items", value=u.dead_letters
        )
        yield CounterMetricFamily(
            "siaran_outbox_telemetry_dropped", "Telemetry dropped (full)", value=u.telemetry_dropped
        )
        yield GaugeMetricFamily(
            "siaran_uplink_connected", "1 when connected to central", value=int(u.connected)
        )
        yield CounterMetricFamily("siaran_uplink_connects", "Connections made", value=u.connects)

    def _faults(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "siaran_faults_active",
            "Faults not ok now, by type, severity and status",
            labels=["fault_type", "severity", "status"],
        )
        counts = Counter((f.fault_type, f.severity, f.status) for f in self._view.active_faults())
        for (ftype, severity, status), n in sorted(counts.items()):
            family.add_metric([ftype, severity, status], n)
        yield family

    def _gateway(self) -> Iterable[Metric]:
        h = self._view.health()
        yield GaugeMetricFamily("siaran_gateway_uptime_seconds", "Board uptime", value=h.uptime_s)
        yield GaugeMetricFamily(
            "siaran_agent_uptime_seconds", "Agent uptime", value=h.agent_uptime_s
        )
        yield GaugeMetricFamily("siaran_gateway_cpu_percent", "CPU use", value=h.cpu_percent)
        yield GaugeMetricFamily(
            "siaran_gateway_memory_percent", "Memory use", value=h.memory_percent
        )
        if h.disk_percent is not None:
            yield GaugeMetricFamily(
                "siaran_gateway_disk_percent", "State disk use", value=h.disk_percent
            )
        if h.temperature_c is not None:
            yield GaugeMetricFamily(
                "siaran_gateway_temperature_celsius", "Board temperature", value=h.temperature_c
            )
        yield GaugeMetricFamily(
            "siaran_gateway_clock_synced", "1 when NTP-synchronised", value=int(h.clock_synced)
        )


def make_registry(view: AgentView) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(view))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
