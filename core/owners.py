"""Who holds a claim: `host:pid`, and whether that process is still alive.

The ledger, the lane and the record of job runs all stamp what they take with this name,
so that a restart on the same host can tell a dead holder at once; on another host only a
lease (or the database's own session) can tell.
"""

from __future__ import annotations

import os
import socket


def this_process() -> str:
    """`host:pid` of the running process (the host name cut to fit the columns)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def alive_here(owner: str | None) -> bool | None:
    """Whether the process named by `owner` (`host:pid`, anything after a further `:`
    ignored) is alive: True or False on this host, None when it is another host's or the
    name cannot be read (a lease must decide)."""
    host, _, rest = (owner or "").partition(":")
    pid = rest.split(":")[0]
    if host != socket.gethostname()[:40] or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
