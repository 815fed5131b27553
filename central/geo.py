"""The city boundary: is a position inside Tangerang Selatan?

A point-in-polygon test (ray casting) over one or more rings; holes are honoured. The default
is a rough outline of the 7 kecamatan (Serpong, Serpong Utara, Ciputat, Ciputat Timur, Pamulang,
Pondok Aren, Setu), good to a few hundred metres: enough to catch a swapped lat/lon, a missing
minus sign or a pole entered in Jakarta. For exact checks give the official boundary as GeoJSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LatLon = tuple[float, float]

# (lat, lon), clockwise from the north-west corner (Serpong Utara).
TANGSEL_ROUGH: tuple[LatLon, ...] = (
    (-6.215, 106.655),
    (-6.218, 106.700),
    (-6.222, 106.735),
    (-6.243, 106.760),
    (-6.283, 106.773),
    (-6.315, 106.771),
    (-6.350, 106.762),
    (-6.367, 106.730),
    (-6.362, 106.690),
    (-6.352, 106.650),
    (-6.327, 106.628),
    (-6.285, 106.628),
    (-6.250, 106.638),
)


def _in_ring(lat: float, lon: float, ring: Sequence[LatLon]) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        yi, xi = ring[i]
        yj, xj = ring[j]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


@dataclass(frozen=True)
class Area:
    outer: tuple[LatLon, ...]
    holes: tuple[tuple[LatLon, ...], ...] = ()

    def contains(self, lat: float, lon: float) -> bool:
        return _in_ring(lat, lon, self.outer) and not any(_in_ring(lat, lon, h) for h in self.holes)


@dataclass(frozen=True)
class Boundary:
    name: str
    areas: tuple[Area, ...]

    def contains(self, lat: float, lon: float) -> bool:
        return any(a.contains(lat, lon) for a in self.areas)

    @classmethod
    def of_points(cls, name: str, points: Sequence[Sequence[float]]) -> Boundary:
        return cls(name, (Area(tuple((p[0], p[1]) for p in points)),))

    @classmethod
    def default(cls) -> Boundary:
        return cls("Kota Tangerang Selatan", (Area(TANGSEL_ROUGH),))


def load_geojson(path: Path, name: str) -> Boundary:
    """A Polygon or MultiPolygon (bare, a Feature or the first of a FeatureCollection)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("type") == "FeatureCollection":
        data = data["features"][0]
    if data.get("type") == "Feature":
        data = data["geometry"]
    kind, coords = data.get("type"), data.get("coordinates")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = coords
    else:
        raise ValueError(f"{path}: expected a Polygon or MultiPolygon, found {kind!r}")
    areas = []
    for rings in polygons:
        # GeoJSON positions are [lon, lat]
        converted = [tuple((float(p[1]), float(p[0])) for p in ring) for ring in rings]
        if not converted or len(converted[0]) < 3:
            raise ValueError(f"{path}: a polygon needs at least 3 positions")
        areas.append(Area(converted[0], tuple(converted[1:])))
    return Boundary(name, tuple(areas))
