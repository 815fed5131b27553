"""Settings of the technician status page (the `[web]` table of the gateway config).

No `[web]` table: no page. Accounts carry scrypt hashes made by `siaran-edge hash-password`,
never passwords. Relative TLS paths are relative to the gateway config's folder (anchored by
`firmware_config.loader`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# scrypt$N$r$p$salt$hash (base64): what agent.web.passwords.hash_password writes.
HASH_FORMAT = re.compile(r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")
MIN_SCRYPT_N = 2**14

Language = Literal["id", "en"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebUser(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$", description="Login name")
    password_hash: str = Field(description="From `siaran-edge hash-password`; never a password")
    display_name: str = Field("", max_length=80, description="Shown on the page and in actions")

    @field_validator("password_hash")
    @classmethod
    def _strong_hash(cls, value: str) -> str:
        m = HASH_FORMAT.match(value)
        if m is None:
            raise ValueError("not a scrypt hash: make one with `siaran-edge hash-password`")
        n, r, p = (int(x) for x in m.groups())
        if n < MIN_SCRYPT_N or n & (n - 1) or r < 8 or p < 1:
            raise ValueError(f"scrypt parameters too weak (need N >= {MIN_SCRYPT_N}, r >= 8)")
        return value

    @property
    def shown(self) -> str:
        return self.display_name or self.name


class WebTls(_Strict):
    cert_file: Path = Field(description="PEM certificate (chain) the page is served with")
    key_file: Path = Field(description="PEM private key of that certificate")


class LoginLimit(_Strict):
    max_failures: int = Field(5, ge=1, le=1000, description="Failed logins allowed per window")
    window_s: float = Field(300.0, gt=0, le=86400, description="Window that failures count in")
    lockout_s: float = Field(300.0, gt=0, le=86400, description="Refusal time once over the limit")


class WebConfig(_Strict):
    listen: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to listen on: the technician LAN's, never the uplink's",
    )
    port: int = Field(8080, ge=1, le=65535)
    tls: WebTls | None = Field(None, description="HTTPS with this certificate; none = HTTP")
    session_ttl_s: float = Field(8 * 3600.0, ge=60, le=7 * 86400, description="Login lifetime")
    language: Language = Field("id", description="Default page language: id or en")
    users: list[WebUser] = Field(min_length=1, description="Technician accounts")
    login_limit: LoginLimit = Field(default_factory=LoginLimit)
    history_points: int = Field(
        120, ge=10, le=2000, description="Readings per device kept in memory for the charts"
    )

    @model_validator(mode="after")
    def _unique_users(self) -> WebConfig:
        names = [u.name for u in self.users]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"user names used twice: {', '.join(dupes)}")
        return self

    def user(self, name: str) -> WebUser | None:
        return next((u for u in self.users if u.name == name), None)

    def anchored(self, base: Path) -> WebConfig:
        """TLS paths made absolute against `base`; a no-op on absolute ones.

        `load_config` already anchors them (the one place that does); this is for a WebConfig
        built without the loader. agent/web/server.py still calls it, harmlessly.
        """
        if self.tls is None:
            return self
        tls = WebTls(cert_file=base / self.tls.cert_file, key_file=base / self.tls.key_file)
        return self.model_copy(update={"tls": tls})
