# SPDX-License-Identifier: Apache-2.0
"""library/hvguard_migrate with a mocked virsh runner (no libvirt, no VM).

The fake keeps each URI's domains ({name: (state, uuid)}) and answers domstate, domuuid, uri,
migrate, domjobabort and domjobinfo the way virsh 9.0 prints them. Every test also checks the
invariant the rolling playbook relies on: the module never asks virsh to shut down, destroy,
suspend or managed-save a domain.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import ansible_doc, load_library, run_module

mod = load_library("hvguard_migrate")
SRC, DST = "qemu:///system", "qemu+tls://hv2/system"
UUID = "3f6e0a52-9d1c-4c5b-8f44-2a4ce0d1f001"
FORBIDDEN = {"shutdown", "destroy", "suspend", "managedsave", "save", "undefine", "start"}
JOBINFO = "Job type:         Completed\nTime elapsed:     5230 ms\nTotal downtime:   42 ms\n"


class FakeVirsh:
    def __init__(self, hosts: dict[str, dict[str, tuple[str, str]]]) -> None:
        self.hosts = hosts
        self.calls: list[list[str]] = []
        self.migrate_rc = 0
        self.migrate_err = ""
        self.reachable = {SRC: True, DST: True}
        self.land_uuid: str | None = None  # a different UUID arriving (a broken move)

    def __call__(self, argv: list[str], timeout: int) -> tuple[int, str, str]:
        self.calls.append(argv)
        assert argv[:3] == ["virsh", "-q", "-c"] and timeout > 0
        uri, cmd, args = argv[3], argv[4], argv[5:]
        if not self.reachable.get(uri, False):
            return 1, "", f"error: failed to connect to the hypervisor {uri}"
        domains = self.hosts.setdefault(uri, {})
        if cmd == "uri":
            return 0, uri + "\n", ""
        if cmd in ("domstate", "domuuid", "domjobinfo", "domjobabort"):
            name = args[-1]
            if name not in domains:
                return 1, "", f"error: failed to get domain '{name}'"
            state, uuid = domains[name]
            out = {"domstate": state, "domuuid": uuid, "domjobinfo": JOBINFO}.get(cmd, "")
            return 0, out + "\n", ""
        if cmd == "migrate":
            name, dest = [a for a in args if not a.startswith("--")][:2]
            if self.migrate_rc:
                return self.migrate_rc, "", self.migrate_err
            state, uuid = domains.pop(name)
            self.hosts.setdefault(dest, {})[name] = (state, self.land_uuid or uuid)
            return 0, "Migration: [100 %]\n", ""
        raise AssertionError(f"unexpected virsh command {argv}")

    def commands(self) -> list[str]:
        return [c[4] for c in self.calls]


@pytest.fixture
def virsh(monkeypatch: pytest.MonkeyPatch) -> FakeVirsh:
    fake = FakeVirsh({SRC: {"web1": ("running", UUID)}, DST: {}})
    monkeypatch.setattr(mod, "run_virsh", fake)
    yield fake
    assert not FORBIDDEN & set(fake.commands()), fake.calls


def migrate(capsys, check: bool = False, **args: Any) -> dict[str, Any]:
    return run_module(mod, capsys, {"domain": "web1", "dest_uri": DST, **args}, check=check)


def test_live_migration_over_tls_moves_the_domain(virsh: FakeVirsh, capsys) -> None:
    result = migrate(capsys)
    assert (result["changed"], result["migrated"], result["uuid"]) == (True, True, UUID)
    assert (result["downtime_ms"], result["elapsed_ms"]) == (42, 5230)
    [argv] = [c for c in virsh.calls if c[4] == "migrate"]
    assert argv == ["virsh", "-q", "-c", SRC, "migrate", "--live", "--persistent",
                    "--undefinesource", "--verbose", "--tls", "web1", DST]  # fmt: skip
    assert virsh.hosts[DST] == {"web1": ("running", UUID)} and virsh.hosts[SRC] == {}


def test_check_mode_moves_nothing(virsh: FakeVirsh, capsys) -> None:
    result = migrate(capsys, check=True)
    assert (result["changed"], result["migrated"]) == (True, False)
    assert "migrate" not in virsh.commands() and virsh.hosts[SRC] == {"web1": ("running", UUID)}
    assert result["commands"][-1][4:6] == ["migrate", "--live"]


def test_already_on_the_destination_is_unchanged(virsh: FakeVirsh, capsys) -> None:
    virsh.hosts = {SRC: {}, DST: {"web1": ("running", UUID)}}
    result = migrate(capsys)
    assert (result["changed"], result["migrated"], result["uuid"]) == (False, False, UUID)
    assert "migrate" not in virsh.commands()


@pytest.mark.parametrize("state", ["shut off", "paused"])
def test_a_domain_not_running_is_never_moved_or_started(
    virsh: FakeVirsh, capsys, state: str
) -> None:
    virsh.hosts[SRC]["web1"] = (state, UUID)
    result = migrate(capsys)
    assert result["failed"] and "never starts, resumes or moves" in result["msg"]
    assert "migrate" not in virsh.commands()


def test_failed_migration_is_aborted_and_the_domain_stays(virsh: FakeVirsh, capsys) -> None:
    virsh.migrate_rc, virsh.migrate_err = 1, "error: operation failed: migration out job: failed"
    result = migrate(capsys)
    assert result["failed"] and "failed and was aborted" in result["msg"]
    assert "state here now: running" in result["msg"]
    assert virsh.commands().index("domjobabort") > virsh.commands().index("migrate")
    assert virsh.hosts[SRC] == {"web1": ("running", UUID)}


def test_timeout_aborts_the_job(virsh: FakeVirsh, capsys) -> None:
    virsh.migrate_rc, virsh.migrate_err = 124, "timed out after 5 s"
    result = migrate(capsys, timeout=5)
    assert result["failed"] and "timed out and was aborted" in result["msg"]
    assert "domjobabort" in virsh.commands()
    [call] = [c for c in virsh.calls if c[4] == "migrate"]
    assert call  # the migrate call got the migration timeout (checked by the fake: > 0)


def test_unreachable_destination_fails_before_any_move(virsh: FakeVirsh, capsys) -> None:
    virsh.reachable[DST] = False
    result = migrate(capsys)
    assert result["failed"] and f"destination {DST} does not answer" in result["msg"]
    assert "migrate" not in virsh.commands()


def test_a_different_uuid_on_arrival_fails(virsh: FakeVirsh, capsys) -> None:
    virsh.land_uuid = "00000000-0000-0000-0000-000000000000"
    result = migrate(capsys)
    assert result["failed"] and f"expected {UUID}" in result["msg"]


def test_options_reach_virsh(virsh: FakeVirsh, capsys) -> None:
    migrate(capsys, tls=False, migrate_uri="tcp://10.10.0.2")
    [argv] = [c for c in virsh.calls if c[4] == "migrate"]
    assert "--tls" not in argv and argv[-2:] == ["--migrateuri", "tcp://10.10.0.2"]


@pytest.mark.parametrize(
    ("args", "msg"),
    [({"dest_uri": SRC}, "cannot migrate to itself"), ({"timeout": 0}, "timeout must be")],
)
def test_bad_arguments(virsh: FakeVirsh, capsys, args: dict[str, Any], msg: str) -> None:
    result = migrate(capsys, **args)
    assert result["failed"] and msg in result["msg"] and virsh.calls == []


def test_documentation_renders() -> None:
    assert "dest_uri" in ansible_doc("hvguard_migrate")
