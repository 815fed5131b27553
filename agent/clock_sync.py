"""Is the wall clock synchronised? A Raspberry Pi has no real-time clock: after a power cut it
starts at the last saved time until NTP (systemd-timesyncd, chrony) corrects it. Events carry
this flag so central can tell a trustworthy timestamp from a guess.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

TIME_ERROR = 5  # adjtimex() state: the kernel clock is not synchronised (STA_UNSYNC)


def clock_synchronised() -> bool:
    """The kernel's view via adjtimex(2) in read-only mode (modes = 0); False if it can't tell."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        timex = ctypes.create_string_buffer(512)  # zeroed struct timex: modes = 0 reads only
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return False
    return 0 <= state < TIME_ERROR
