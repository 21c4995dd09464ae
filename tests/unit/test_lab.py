# SPDX-License-Identifier: Apache-2.0
"""Unit tests for the lab's pure logic: recipe hash, MBR, sizes, specs, ports, slots, errors."""

import json
import socket
import struct
from pathlib import Path

import pytest

from lab import core, mbr, net, recipe, spec, vm
from lab.errors import LabError
from lab.host import missing_packages
from lab.image import mounts_under
from lab.paths import cache_dir
from lab.state import ScenarioState, VmState


# --- recipe hash -------------------------------------------------------------------------
def test_recipe_digest_is_stable_and_order_insensitive():
    a = recipe.Recipe(packages=("b", "a", "a"), guest_files={"x": "1", "y": "2"})
    b = recipe.Recipe(packages=("a", "b"), guest_files={"y": "2", "x": "1"})
    assert a.digest() == b.digest()
    assert len(a.digest()) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"packages": ("a", "b", "c")},
        {"suite": "trixie"},
        {"variant": "buildd"},
        {"disk_size_gib": 9},
        {"guest_files": {"x": "1", "y": "3"}},
    ],
)
def test_recipe_digest_changes_with_any_input(change):
    base = {"packages": ("a", "b"), "guest_files": {"x": "1", "y": "2"}}
    assert recipe.Recipe(**base).digest() != recipe.Recipe(**{**base, **change}).digest()


def test_guest_file_hashes_cover_content_and_mode(tmp_path):
    (tmp_path / "etc").mkdir()
    f = tmp_path / "etc" / "a"
    f.write_text("one")
    f.chmod(0o644)
    first = recipe.guest_file_hashes(tmp_path)
    assert list(first) == ["etc/a"]
    f.chmod(0o755)
    second = recipe.guest_file_hashes(tmp_path)
    f.write_text("two")
    third = recipe.guest_file_hashes(tmp_path)
    assert len({first["etc/a"], second["etc/a"], third["etc/a"]}) == 3


def test_default_recipe_includes_what_the_roles_need():
    pkgs = set(recipe.PACKAGES)
    for needed in (
        "grub-pc",
        "libvirt-daemon-system",
        "qemu-system-x86",
        "python3-cryptography",
        "python3-apt",
        "lvm2",
        "thin-provisioning-tools",
        "openssl",
        "nftables",
    ):
        assert needed in pkgs
    assert recipe.default_recipe().guest_files  # the real guest files are hashed


# --- mirror discovery ----------------------------------------------------------------------
DEB822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_deb822_picks_the_suite_stanza():
    assert recipe.mirror_from_deb822(DEB822, "bookworm") == "http://mirror.example/debian"
    assert recipe.mirror_from_deb822(DEB822, "bookworm-security").endswith("debian-security")
    assert recipe.mirror_from_deb822(DEB822, "trixie") is None


def test_mirror_from_deb822_skips_disabled_and_source_stanzas():
    text = "Types: deb-src\nURIs: http://src\nSuites: bookworm\nComponents: main\n\n" + (
        "Enabled: no\nTypes: deb\nURIs: http://off\nSuites: bookworm\nComponents: main\n"
    )
    assert recipe.mirror_from_deb822(text, "bookworm") is None


def test_mirror_from_one_line_list_with_options():
    text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main contrib\n"
    assert recipe.mirror_from_list(text, "bookworm") == "http://m/debian"
    assert recipe.mirror_from_list("deb http://m/debian bookworm contrib\n", "bookworm") is None


def test_host_mirror_error_names_the_fix(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(LabError) as err:
        recipe.host_mirror("bookworm", tmp_path)
    assert "HVGUARD_LAB_MIRROR" in str(err.value)


# --- MBR ----------------------------------------------------------------------------------
def test_mbr_has_one_bootable_linux_partition_from_1mib_to_the_end():
    size = 8 * 1024**3
    sector = mbr.mbr(size)
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    status, _, ptype, _, start, count = struct.unpack("<B3sB3sII", sector[446:462])
    assert (status, ptype, start) == (0x80, 0x83, 2048)
    assert start + count == size // 512
    assert sector[462:510] == bytes(48)  # the other three entries are empty


@pytest.mark.parametrize("size", [1000, 2048 * 512, 513])
def test_mbr_rejects_bad_sizes(size):
    with pytest.raises(ValueError):
        mbr.mbr(size)


# --- sizes and specs -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("4G", 4 * 1024**3), ("512M", 512 * 1024**2), ("10GiB", 10 * 1024**3), ("2t", 2 * 1024**4)],
)
def test_parse_size(text, expected):
    assert spec.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "4X", "-1G", "1.5G", "12K"])
def test_parse_size_rejects(text):
    with pytest.raises(LabError):
        spec.parse_size(text)


def test_platforms_from_json_reads_molecule_platforms():
    text = json.dumps(
        [
            {
                "name": "hv1",
                "memory": "2048",
                "cpus": 2,
                "disks": ["4G"],
                "groups": ["hypervisors"],
            },
            {"name": "hv2"},
        ]
    )
    specs = spec.platforms_from_json(text)
    assert specs[0] == spec.VmSpec("hv1", 2048, 2, (4 * 1024**3,))
    assert specs[1] == spec.VmSpec("hv2", spec.DEFAULT_MEM, spec.DEFAULT_CPUS, ())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"memory": 1}]', "has no 'name'"),
        ('[{"name": "Hv_1"}]', "not a valid VM hostname"),
        ('[{"name": "a"}, {"name": "a"}]', "duplicate VM names"),
        ('[{"name": "a", "memory": 64}]', "a: memory (MiB) must be between"),
        ('[{"name": "a", "cpus": "x"}]', "a: cpus must be an integer"),
        ('[{"name": "a", "disks": ["4Q"]}]', "invalid a: disk size"),
    ],
)
def test_platform_errors_name_the_field(text, message):
    with pytest.raises(LabError) as err:
        spec.platforms_from_json(text)
    assert message in str(err.value)


def test_platforms_from_flags_names():
    assert [s.name for s in spec.platforms_from_flags("lab", 1, 1024, 1, [])] == ["lab"]
    two = spec.platforms_from_flags("mig", 2, 1024, 1, ["1G"])
    assert [s.name for s in two] == ["mig-1", "mig-2"]
    assert all(s.disks == (1024**3,) for s in two)


# --- network slots, addresses, ports -------------------------------------------------------
def test_slot_is_stable_and_avoids_taken_slots():
    slot = net.preferred_slot("molecule-default")
    assert 1 <= slot <= net.SLOTS
    assert net.choose_slot("molecule-default", set()) == slot
    moved = net.choose_slot("molecule-default", {slot})
    assert moved != slot and 1 <= moved <= net.SLOTS


def test_all_slots_taken_is_an_error():
    with pytest.raises(LabError):
        net.choose_slot("x", set(range(1, net.SLOTS + 1)))


def test_scenarios_get_distinct_multicast_networks():
    assert net.mcast(3) != net.mcast(4)
    group, port = net.mcast(250)
    assert group == "239.77.250.1" and port == net.MCAST_PORT_BASE + 250


def test_private_addresses_and_macs():
    assert str(net.private_ip(7, 0)) == "10.77.7.10/24"
    assert str(net.private_ip(7, 1)) == "10.77.7.11/24"
    assert net.private_mac(255, 1) == "52:54:00:77:ff:0b"
    with pytest.raises(LabError):
        net.private_ip(7, 500)


def test_pick_ports_auto_gives_distinct_free_ports():
    ports = net.pick_ports(3, None, set())
    assert len(set(ports)) == 3
    assert not any(net.port_in_use(p) for p in ports)


def test_pick_ports_reports_a_busy_port_with_the_fix():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LabError) as err:
            net.pick_ports(1, port, set())
    assert f"{port}" in str(err.value) and "already in use" in str(err.value)
    assert "--ssh-port" in err.value.fix


def test_pick_ports_avoids_ports_of_other_labs():
    with pytest.raises(LabError):
        net.pick_ports(1, 40000, {40000})


# --- config, state, inventory --------------------------------------------------------------
def test_cache_dir_default_and_override(tmp_path):
    assert cache_dir({}).parts[-2:] == (".cache", "lab")
    assert cache_dir({"HVGUARD_LAB_CACHE": str(tmp_path)}) == tmp_path


def _state() -> ScenarioState:
    st = ScenarioState(name="molecule-migration", slot=9, accel="tcg", image="/i.qcow2")
    for i, name in enumerate(["hv1", "hv2"]):
        st.vms.append(VmState(name, i, 40000 + i, f"10.77.9.{10 + i}/24",
                              net.private_mac(9, i), 1536, 2, [1024**3], pid=0))  # fmt: skip
    return st


def test_state_round_trips():
    st = _state()
    assert ScenarioState.from_json(st.to_json()) == st


def test_inventory_yaml_lists_every_vm_in_hypervisors(tmp_path):
    yaml = pytest.importorskip("yaml")
    inv = yaml.safe_load(core.inventory_yaml(tmp_path, _state()))
    hosts = inv["all"]["children"]["hypervisors"]["hosts"]
    assert hosts["hv2"] == {
        "ansible_host": "127.0.0.1",
        "ansible_port": 40001,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(tmp_path / "ssh" / "id_ed25519"),
        "ansible_ssh_common_args": "-o ServerAliveInterval=5 -o ServerAliveCountMax=6",
        "hvguard_lab_private_ip": "10.77.9.11",
        "hvguard_lab_private_cidr": "10.77.9.11/24",
        "hvguard_migration_tls_addresses": ["10.77.9.11"],
    }


def test_instance_config_matches_molecule_keys(tmp_path):
    conf = core.instance_config(tmp_path, _state())
    assert [c["instance"] for c in conf] == ["hv1", "hv2"]
    assert {"instance", "address", "port", "user", "identity_file"} <= set(conf[0])


def test_fw_cfg_names_every_peer():
    st = _state()
    text = vm.fw_cfg_text(st, st.vms[1], "ssh-ed25519 AAAA lab\n")
    assert "hostname=hv2\n" in text
    assert "private_ip=10.77.9.11/24\n" in text
    assert "host=10.77.9.10 hv1\n" in text and "host=10.77.9.11 hv2\n" in text
    assert "authorized_key=ssh-ed25519 AAAA lab\n" in text


def test_qemu_argv_private_net_disks_and_no_reboot_exit(tmp_path):
    st = _state()
    argv = vm.qemu_argv(st, st.vms[0], tmp_path, net.mcast(st.slot))
    joined = " ".join(argv)
    assert "-no-reboot" not in argv  # guest reboots must not end QEMU
    assert f"mcast={net.mcast(9)[0]}:{net.mcast(9)[1]}" in joined
    assert "hostfwd=tcp:127.0.0.1:40000-:22" in joined
    assert f"mac={net.private_mac(9, 0)}" in joined
    assert "disk1.qcow2" in joined and "discard=unmap" in joined
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"


def test_scenario_name_validation():
    assert core.check_scenario("molecule-default") == "molecule-default"
    with pytest.raises(LabError):
        core.check_scenario("../etc")


def test_is_our_qemu_ignores_unrelated_pids():
    import os

    assert not vm.is_our_qemu(os.getpid(), "hv1")
    assert not vm.is_our_qemu(0, "hv1")


# --- host checks ---------------------------------------------------------------------------
def test_missing_packages_names_the_debian_package():
    found = {"ssh"}
    missing = missing_packages(
        {"ssh": "openssh-client", "qemu-img": "qemu-utils"}, found.__contains__
    )
    assert missing == ["qemu-utils"]


def test_lab_error_prints_the_fix():
    assert str(LabError("boom", "do this")) == "boom\n  fix: do this"


def test_mounts_under_orders_deepest_first(tmp_path):
    root = tmp_path / "b"
    mounts = (
        f"proc {root}/rootfs/proc proc rw 0 0\n"
        f"dev {root}/rootfs/dev/pts devpts rw 0 0\n"
        f"dev {root}/rootfs/dev devtmpfs rw 0 0\n"
        f"x {tmp_path}/bb ext4 rw 0 0\n"
    )
    points = mounts_under(root, mounts)
    assert points[0] == Path(f"{root}/rootfs/dev/pts")
    assert Path(f"{tmp_path}/bb") not in points and len(points) == 3


def test_boot_code_points_at_core_img_and_keeps_the_partition_table():
    table = mbr.mbr(8 * 1024**3)
    boot_img = bytes(range(256)) * 2
    sector = mbr.with_boot_code(table, boot_img)
    assert len(sector) == 512
    assert sector[mbr.BOOT_CODE_END :] == table[mbr.BOOT_CODE_END :]  # disk id, table, 55aa
    assert struct.unpack("<Q", sector[0x5C:0x64])[0] == mbr.CORE_SECTOR
    assert sector[0x66:0x68] == b"\x90\x90"
    assert sector[:0x5C] == boot_img[:0x5C]


def test_core_img_must_fit_the_gap():
    assert mbr.core_fits(60 * 1024)
    assert not mbr.core_fits(1024 * 1024)


def test_rootfs_digest_ignores_guest_files_and_disk_but_not_packages():
    base = recipe.Recipe(packages=("a",), guest_files={"x": "1"})
    assert (
        base.rootfs_digest()
        == recipe.Recipe(packages=("a",), guest_files={"x": "2"}).rootfs_digest()
    )
    assert base.rootfs_digest() == recipe.Recipe(packages=("a",), disk_size_gib=9).rootfs_digest()
    assert base.rootfs_digest() != recipe.Recipe(packages=("a", "b")).rootfs_digest()
    assert base.digest() != recipe.Recipe(packages=("a",), guest_files={"x": "2"}).digest()


# --- scenarios coming up side by side ----------------------------------------------------
def _up_in_child(cache: Path, name: str, errors: Path) -> None:
    try:
        core.up(cache, name, [spec.VmSpec(name="hv1")], timeout=1, ssh_port=None)
    except BaseException as exc:  # reported to the parent
        errors.write_text(f"{name}: {exc!r}")
        raise SystemExit(1) from exc


def test_two_scenarios_coming_up_at_once_share_nothing_half_made(tmp_path, monkeypatch):
    """`make molecule` boots default and scrub side by side on a fresh cache (CI): the SSH key,
    the KVM probe, slots and ports must be decided one scenario at a time. Without the lock
    both are inside at once (the marker below) and one ssh-keygen refuses to overwrite."""
    import multiprocessing
    import time

    inside = tmp_path / "inside"

    def fake_image(_cache: Path) -> Path:
        inside.touch(exist_ok=False)  # FileExistsError: the other scenario is allocating too
        time.sleep(0.3)
        return tmp_path / "base.qcow2"

    def fake_start(_st, v, _vmdir, _mcast, pubkey: str) -> None:
        assert pubkey.startswith("ssh-ed25519 ")
        v.pid = 1
        inside.unlink()

    monkeypatch.setenv(core.ACCEL_ENV, "tcg")
    monkeypatch.setattr(core, "require", lambda _cmds: None)
    monkeypatch.setattr(core.image, "ensure_image", fake_image)
    monkeypatch.setattr(vm, "prepare_disks", lambda *_a: None)
    monkeypatch.setattr(vm, "start", fake_start)
    monkeypatch.setattr(vm, "wait_ssh", lambda *_a: None)
    monkeypatch.setattr(vm, "is_our_qemu", lambda pid, _name: pid > 0)
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_up_in_child, args=(cache, n, tmp_path / f"{n}.err"))
        for n in ("default", "scrub")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    errors = [e.read_text() for e in tmp_path.glob("*.err")]
    assert errors == []
    assert [p.exitcode for p in procs] == [0, 0]
    states = [core.state.load(cache, n) for n in ("default", "scrub")]
    assert states[0].slot != states[1].slot
    assert states[0].vms[0].ssh_port != states[1].vms[0].ssh_port
