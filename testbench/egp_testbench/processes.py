"""Process groups, loopback ports and the checkout: the helpers every part of the test bench
(the control plane, the demo, the operator under test, the benchmarks) shares."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

#: How long a group gets to go after SIGKILL before it is reported stuck.
KILL_WAIT: Final = 10.0


#: Where the kernel's range of source ports for outgoing connections starts, unless it says.
_EPHEMERAL_LOW_DEFAULT: Final = 32768
#: How far below that range listening ports are picked.
_LISTEN_SPAN: Final = 16384


def _ephemeral_low() -> int:
    try:
        low, _ = (
            int(part) for part in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        )
    except (OSError, ValueError):
        return _EPHEMERAL_LOW_DEFAULT
    return low


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago: every socket stays bound until all
    are picked, so no two are the same. They lie below the kernel's ephemeral range: a server
    restarted on its port in a test must find it free, and while it is down, a client retrying
    a connection to it could otherwise be given that very port as its source and connect to
    itself (TCP self-connect), holding the port."""
    top = _ephemeral_low()
    bottom = max(1024, top - _LISTEN_SPAN)
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        candidates = random.sample(range(bottom, top), top - bottom) if top > bottom else []
        for port in candidates:
            if len(ports) == count:
                break
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
        while len(ports) < count:  # no room below the range: any free port
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    return free_ports(1)[0]


def group_exists(pid: int) -> bool:
    """Whether any process of the group `pid` leads is left (a group outlives its leader)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(
    pid: int,
    *,
    timeout: float,
    running: Callable[[], bool] | None = None,
    sig: int = signal.SIGTERM,
) -> bool:
    """Send `sig` to the process group `pid` leads, wait up to `timeout` for it to go, then
    SIGKILL it and wait `KILL_WAIT` more; returns whether it is gone.

    Every process of the bench leads its own session (start_new_session), so its pid is its
    group id and the signal also reaches whatever it forked. `running` says whether it is still
    there, and may reap a child of ours on the way (a zombie would count as running); by
    default it is whether the group still exists.
    """
    still_running = running or (lambda: group_exists(pid))
    for signal_, wait in ((sig, timeout), (signal.SIGKILL, KILL_WAIT)):
        if not still_running():
            return True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal_)
        deadline = time.monotonic() + wait
        while still_running():
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    return not still_running()


def repo_root() -> Path | None:
    """The checkout (the folder holding tools/kube/build.sh), from this file (an editable
    install) or the working directory; None outside one."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "tools" / "kube" / "build.sh").is_file():
                return candidate
    return None
