"""The SIARAN HTTP API as siaran-edge speaks it: request and response models.

SIARAN's own API is not public, so this is siaran-edge's definition: the HTTP client
(`central.siaran_client`) sends these, the sandbox (`central.sandbox`) serves them, and
docs/siaran-api.md (with its OpenAPI document, `openapi()`) describes them for the city's
integrators. Field names are English, texts for people are in Bahasa Indonesia.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

API_PREFIX = "/api/v1"
API_VERSION = "1.0.0"

ReportStatus = Literal["new", "in_progress", "done", "verified", "closed", "reopened"]
SensorStatus = Literal["verified", "closed", "reopened"]  # what a reporter may set
AgencyStatus = Literal["in_progress", "done"]  # what the agency sets (its dashboard)
Priority = Literal["rendah", "sedang", "tinggi", "darurat"]

STATUS_LABELS: dict[str, str] = {
    "new": "Baru",
    "in_progress": "Diproses dinas",
    "done": "Selesai (menurut dinas)",
    "verified": "Terverifikasi pulih (sensor)",
    "closed": "Ditutup",
    "reopened": "Dibuka kembali",
}
AWAITING_AGENCY: frozenset[str] = frozenset({"new", "reopened"})

Scalar = bool | int | float | str | None
EvidenceValue = Scalar | list[Scalar]


class _Api(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Position(_Api):
    lat: float = Field(ge=-90, le=90, description="Latitude, decimal degrees (WGS 84)")
    lon: float = Field(ge=-180, le=180, description="Longitude, decimal degrees (WGS 84)")
    address: str = Field("", max_length=300, description="Street address")
    kelurahan: str = Field("", max_length=100)
    kecamatan: str = Field("", max_length=100)


class Reporter(_Api):
    kind: Literal["citizen", "sensor"] = "sensor"
    id: str = Field(min_length=1, max_length=100, description="e.g. 'siaran-edge:gw-01'")
    name: str = Field("", max_length=200)


class ReportCreate(_Api):
    """POST /api/v1/reports (header Idempotency-Key: the same key returns the same report)."""

    category: str = Field(
        pattern=r"^[a-z][a-z0-9_]{1,63}$", description="e.g. penerangan_jalan_umum, wifi_publik"
    )
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=20000)
    position: Position = Field(description="Must lie inside the city's boundary (else 422)")
    agency: str = Field(min_length=1, max_length=200, description="Responsible agency (SKPD)")
    unit: str = Field("", max_length=200, description="Technical unit (UPT)")
    priority: Priority = "sedang"
    reporter: Reporter
    external_ref: str | None = Field(
        None, max_length=300, description="The reporter's own key of the problem"
    )
    observed_at: AwareDatetime | None = Field(None, description="Since when the problem is seen")
    photo_url: str | None = Field(
        None, max_length=2000, description="Citizen reports carry a photo; sensors send evidence"
    )
    evidence: dict[str, EvidenceValue] = Field(
        default_factory=dict, description="Measurements behind a sensor report, metric -> value"
    )


class CommentCreate(_Api):
    """POST /api/v1/reports/{id}/comments."""

    body: str = Field(min_length=1, max_length=20000)
    author: str = Field("sensor", min_length=1, max_length=100)


class StatusChange(_Api):
    """POST /api/v1/reports/{id}/status: what a reporter may set (agency steps are its own)."""

    status: SensorStatus
    note: str = Field("", max_length=20000, description="Added to the report as a comment")


class RedFlagRequest(_Api):
    """POST /api/v1/reports/{id}/red-flag: the agency is late. Once per report."""

    reason: str = Field(min_length=1, max_length=2000)


class Comment(_Api):
    id: int
    author: str
    body: str
    created_at: AwareDatetime


class Report(_Api):
    id: str = Field(description="SIARAN's id of the report")
    category: str
    title: str
    description: str
    position: Position
    agency: str
    unit: str
    priority: Priority
    reporter: Reporter
    external_ref: str | None
    observed_at: AwareDatetime | None
    photo_url: str | None
    evidence: dict[str, EvidenceValue]
    status: ReportStatus
    created_at: AwareDatetime
    updated_at: AwareDatetime
    responded_at: AwareDatetime | None = Field(
        description="When the agency last answered (null: not since it was filed or reopened)"
    )
    done_at: AwareDatetime | None
    red_flag: bool
    red_flagged_at: AwareDatetime | None
    red_flag_reason: str | None
    comments: list[Comment]


class ReportList(_Api):
    reports: list[Report]


class ApiError(_Api):
    error: str = Field(description="Machine-readable code, e.g. position_outside_boundary")
    message: str = Field(description="For people, in Bahasa Indonesia")


SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    ReportCreate,
    CommentCreate,
    StatusChange,
    RedFlagRequest,
    Report,
    ReportList,
    Comment,
    ApiError,
)


def _schema(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _answer(description: str, ref: str = "ApiError") -> dict[str, Any]:
    return {"description": description, "content": _json(ref)}


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API (also served by the sandbox)."""
    rid = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    idem = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A repeated request with the same key returns the first answer",
        "schema": {"type": "string", "maxLength": 200},
    }
    errors = {
        "401": _answer("Missing or wrong bearer token"),
        "404": _answer("No such report"),
        "422": _answer("Invalid request; position_outside_boundary for a position outside"),
    }

    def post(summary: str, body: str, ok: str, code: str = "200") -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": [rid, idem],
                "requestBody": {"required": True, "content": _json(body)},
                "responses": {code: _answer("Done", ok), **errors},
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SIARAN reports API (siaran-edge definition)",
            "version": API_VERSION,
            "description": "What siaran-edge needs of SIARAN; served by siaran-sandbox",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schema(SCHEMA_MODELS),
        },
        "security": [{"bearer": []}],
        "paths": {
            f"{API_PREFIX}/reports": {
                "post": {
                    "summary": "File a report",
                    "parameters": [idem],
                    "requestBody": {"required": True, "content": _json("ReportCreate")},
                    "responses": {
                        "201": _answer("Filed", "Report"),
                        "200": _answer("Already filed with this Idempotency-Key", "Report"),
                        **{k: v for k, v in errors.items() if k != "404"},
                    },
                },
                "get": {
                    "summary": "List reports, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string"}},
                        {"name": "external_ref", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    ],
                    "responses": {"200": _answer("Reports", "ReportList"), "401": errors["401"]},
                },
            },
            f"{API_PREFIX}/reports/{{id}}": {
                "get": {
                    "summary": "Read a report and its status",
                    "parameters": [rid],
                    "responses": {"200": _answer("The report", "Report"), **errors},
                }
            },
            f"{API_PREFIX}/reports/{{id}}/comments": post(
                "Add a comment", "CommentCreate", "Comment", "201"
            ),
            f"{API_PREFIX}/reports/{{id}}/status": post(
                "Change the status (reporter: verified, closed, reopened)",
                "StatusChange",
                "Report",
            ),
            f"{API_PREFIX}/reports/{{id}}/red-flag": post(
                "Red-flag a report the agency has not answered in time", "RedFlagRequest", "Report"
            ),
        },
    }


if __name__ == "__main__":  # the OpenAPI document, as in docs/siaran-api.md
    import json

    print(json.dumps(openapi(), indent=2, ensure_ascii=False))
