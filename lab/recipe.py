# SPDX-License-Identifier: Apache-2.0
"""The image recipe: what goes into the hypervisor image, and its content hash.

The cached image is named by the hash of everything that shapes it (suite, packages, the
files copied into the guest, the build settings and RECIPE_VERSION). Change any of them and
the next `up` builds a new image; otherwise the cached one is reused. Bump RECIPE_VERSION
when the build steps in image.py change in a way that alters the result.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import LabError

RECIPE_VERSION = 3  # the image stage: disk layout, GRUB, guest configuration
ROOTFS_VERSION = 1  # the base rootfs stage: debootstrap + apt
GUEST_FILES = Path(__file__).resolve().parent / "guest"

# Everything the roles and scenarios use is baked in: no scenario installs packages at run
# time (apt through slirp is slow). debootstrap resolves Depends, never Recommends.
PACKAGES: tuple[str, ...] = (
    # boot and base system
    "linux-image-amd64",
    "grub-pc",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "procps",
    "util-linux",
    "fdisk",
    "e2fsprogs",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "openssh-server",
    "netcat-openbsd",
    # Ansible on the target
    "python3",
    "python3-apt",
    "python3-cryptography",
    "python3-libvirt",
    "python3-lxml",
    # the hypervisor
    "libvirt-daemon-system",
    "libvirt-clients",
    "qemu-system-x86",
    "qemu-utils",
    "iptables",
    "dnsmasq-base",
    "dmidecode",
    "libxml2-utils",
    # storage
    "lvm2",
    "dmsetup",
    "thin-provisioning-tools",
    # network and TLS tooling used by controls and their proofs
    "nftables",
    "tcpdump",
    "gnutls-bin",
    "openssl",
)


@dataclass(frozen=True)
class Recipe:
    """Inputs of one image build."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = PACKAGES
    disk_size_gib: int = 8
    guest_files: dict[str, str] = field(default_factory=dict)

    def rootfs_digest(self) -> str:
        """Hash of the base rootfs (packages only): the slow stage, cached on its own."""
        return _hash(
            {
                "version": ROOTFS_VERSION,
                "suite": self.suite,
                "variant": self.variant,
                "packages": sorted(set(self.packages)),
            }
        )

    def digest(self) -> str:
        """A short content hash naming the image built from this recipe."""
        return _hash(
            {
                "version": RECIPE_VERSION,
                "rootfs": self.rootfs_digest(),
                "disk_size_gib": self.disk_size_gib,
                "guest_files": dict(sorted(self.guest_files.items())),
            }
        )


def _hash(doc: dict[str, object]) -> str:
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def guest_file_hashes(root: Path = GUEST_FILES) -> dict[str, str]:
    """sha256 (and mode, which matters for scripts) of each file copied into the guest."""
    out: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        mode = path.stat().st_mode & 0o777
        out[rel] = f"{mode:o}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    return out


def default_recipe() -> Recipe:
    return Recipe(guest_files=guest_file_hashes())


_SUITES_RE = re.compile(r"^Suites:\s*(.*)$", re.MULTILINE)
_URIS_RE = re.compile(r"^URIs:\s*(.*)$", re.MULTILINE)
_COMPONENTS_RE = re.compile(r"^Components:\s*(.*)$", re.MULTILINE)


def mirror_from_deb822(text: str, suite: str) -> str | None:
    """The first URI of a deb822 stanza that offers `suite` with the main component."""
    for stanza in re.split(r"\n\s*\n", text):
        if re.search(r"^Enabled:\s*no\s*$", stanza, re.MULTILINE | re.IGNORECASE):
            continue
        suites = _SUITES_RE.search(stanza)
        uris = _URIS_RE.search(stanza)
        components = _COMPONENTS_RE.search(stanza)
        if not (suites and uris and components):
            continue
        types = re.search(r"^Types:\s*(.*)$", stanza, re.MULTILINE)
        if types and "deb" not in types.group(1).split():
            continue
        if suite in suites.group(1).split() and "main" in components.group(1).split():
            return uris.group(1).split()[0]
    return None


def mirror_from_list(text: str, suite: str) -> str | None:
    """The URI of the first one-line `deb URI suite main` entry."""
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) < 4 or words[0] != "deb":
            continue
        words = _strip_opts(words)
        if len(words) >= 4 and words[2] == suite and "main" in words[3:]:
            return words[1]
    return None


def _strip_opts(words: list[str]) -> list[str]:
    """Drop a `[arch=amd64 signed-by=...]` option block from a one-line entry."""
    out: list[str] = []
    in_opts = False
    for word in words:
        if word.startswith("["):
            in_opts = not word.endswith("]")
            continue
        if in_opts:
            in_opts = not word.endswith("]")
            continue
        out.append(word)
    return out


def host_mirror(suite: str, apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror the host's apt uses for `suite` (never hard-coded in the repo)."""
    candidates = sorted((apt_dir / "sources.list.d").glob("*.sources"))
    for path in candidates:
        found = mirror_from_deb822(path.read_text(), suite)
        if found:
            return found
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if path.is_file():
            found = mirror_from_list(path.read_text(), suite)
            if found:
                return found
    raise LabError(
        f"no apt source for '{suite}' with component main under {apt_dir}",
        "add the Debian mirror to the host's apt sources, or set HVGUARD_LAB_MIRROR=<URI>",
    )
