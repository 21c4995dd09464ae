# SPDX-License-Identifier: Apache-2.0
"""Addresses of a scenario: SSH forward ports, the private L2 network, MACs and IPs.

Each scenario gets a slot 1..250 (from its name, moved on when another running scenario holds
it). The slot picks the multicast group/port of its private network, so two scenarios never
share a segment, and the private subnet 10.77.<slot>.0/24.
"""

import errno
import hashlib
import ipaddress
import re
import socket

from lab.errors import LabError

SLOTS = 250
MCAST_PORT_BASE = 47000
_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def preferred_slot(name: str) -> int:
    """A stable slot for a scenario name, 1..SLOTS."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % SLOTS + 1


def choose_slot(name: str, taken: set[int]) -> int:
    """The preferred slot, or the next free one when a running scenario already holds it."""
    start = preferred_slot(name)
    for step in range(SLOTS):
        slot = (start - 1 + step) % SLOTS + 1
        if slot not in taken:
            return slot
    raise LabError(f"all {SLOTS} lab network slots are in use", "python -m lab down --all")


def mcast(slot: int) -> tuple[str, int]:
    """Multicast group and UDP port of the scenario's private network."""
    return f"239.77.{slot}.1", MCAST_PORT_BASE + slot


def private_ip(slot: int, index: int) -> ipaddress.IPv4Interface:
    if not 0 <= index < 200:
        raise LabError(f"VM index {index} out of range (a scenario has at most 200 VMs)")
    return ipaddress.IPv4Interface(f"10.77.{slot}.{10 + index}/24")


def private_mac(slot: int, index: int) -> str:
    return f"52:54:00:77:{slot:02x}:{10 + index:02x}"


def check_hostname(name: str) -> str:
    if not _HOSTNAME_RE.match(name):
        raise LabError(
            f"'{name}' is not a valid VM hostname",
            "use lower-case letters, digits and '-' (at most 63, no leading/trailing '-')",
        )
    return name


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def free_port(avoid: set[int], host: str = "127.0.0.1") -> int:
    """A TCP port the kernel reports free now (QEMU binds it a moment later)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
    raise LabError("could not find a free TCP port on 127.0.0.1")


def pick_ports(count: int, first: int | None, avoid: set[int]) -> list[int]:
    """SSH forward ports: consecutive from `first` when given (each must be free), else any."""
    if first is None:
        ports: list[int] = []
        for _ in range(count):
            ports.append(free_port(avoid | set(ports)))
        return ports
    wanted = list(range(first, first + count))
    if wanted[-1] > 65535 or first < 1024:
        raise LabError(f"--ssh-port {first}: ports must lie in 1024..65535")
    busy = [p for p in wanted if p in avoid or port_in_use(p)]
    if busy:
        raise LabError(
            f"TCP port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use",
            "pick another --ssh-port, omit it to get free ports, or find the owner with "
            f"`ss -ltnp 'sport = :{busy[0]}'`",
        )
    return wanted
