"""Password hashes for technician accounts: scrypt (hashlib), per-user salt, constant-time check.

Format: ``scrypt$N$r$p$salt$hash`` (salt and hash in standard base64). The parameters travel
with the hash, so stronger ones can be used later without breaking old accounts.
"""

from __future__ import annotations

import base64
import functools
import getpass
import hashlib
import hmac
import secrets
import sys
from typing import TextIO

from firmware_config.web_config import HASH_FORMAT

N, R, P = 2**15, 8, 1  # 32 MiB, about 0.1 s on a Raspberry Pi 4
SALT_BYTES, KEY_BYTES = 16, 32


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=KEY_BYTES
    )


def hash_password(password: str, n: int = N, r: int = R, p: int = P) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, n, r, p)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches; False for a wrong one or a malformed hash. CPU-heavy:
    call it in a worker thread, not in the event loop."""
    m = HASH_FORMAT.match(stored)
    if m is None:
        return False
    n, r, p = (int(x) for x in m.groups())
    _, _, _, _, salt_b64, key_b64 = stored.split("$")
    try:
        salt, key = base64.b64decode(salt_b64), base64.b64decode(key_b64)
        found = _scrypt(password, salt, n, r, p)
    except ValueError:
        return False
    return hmac.compare_digest(found, key)


@functools.cache
def dummy_hash() -> str:
    """Checked against when the user name is unknown, so a wrong name costs the same time."""
    return hash_password(secrets.token_urlsafe(16))


MIN_LENGTH = 8


def hash_password_command(stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """`siaran-edge hash-password`: asked twice at a terminal, else the first line of stdin."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return 2
    else:
        password = stdin.readline().rstrip("\r\n")
    if len(password) < MIN_LENGTH:
        print(f"a password needs at least {MIN_LENGTH} characters", file=sys.stderr)
        return 2
    print(hash_password(password), file=out)
    return 0
