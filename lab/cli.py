# SPDX-License-Identifier: Apache-2.0
"""`python -m lab up|down|ssh|status|inventory|instance-config|image`."""

import argparse
import json
import os
import sys
from pathlib import Path

from lab import core, image, paths, vm
from lab.errors import LabError
from lab.host import log
from lab.recipe import default_recipe
from lab.spec import DEFAULT_CPUS, DEFAULT_MEM, platforms_from_flags, platforms_from_json


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="build/reuse the image and boot the VMs of a lab")
    up.add_argument("--name", required=True, help="lab (scenario) name")
    up.add_argument("--vms", type=int, default=1, help="number of VMs (default 1)")
    up.add_argument(
        "--disk", action="append", default=[], help="extra disk per VM, e.g. 4G (repeatable)"
    )
    up.add_argument(
        "--mem", type=int, default=DEFAULT_MEM, help=f"MiB per VM (default {DEFAULT_MEM})"
    )
    up.add_argument(
        "--cpus", type=int, default=DEFAULT_CPUS, help=f"vCPUs per VM (default {DEFAULT_CPUS})"
    )
    up.add_argument(
        "--platforms", help="JSON list of {name, memory, cpus, disks} (overrides the flags)"
    )
    up.add_argument("--ssh-port", type=int, help="first SSH forward port (default: any free port)")
    up.add_argument(
        "--timeout", type=float, default=600, help="seconds to wait for SSH (default 600)"
    )
    up.add_argument("--inventory", type=Path, help="also write the Ansible inventory here")

    down = sub.add_parser("down", help="stop the VMs and delete their overlays")
    group = down.add_mutually_exclusive_group(required=True)
    group.add_argument("--name")
    group.add_argument("--all", action="store_true")

    ssh = sub.add_parser("ssh", help="ssh into a VM (runs the command after `--`)")
    ssh.add_argument("--name", required=True)
    ssh.add_argument("--vm", help="VM name (default: the first)")
    ssh.add_argument("command", nargs=argparse.REMAINDER)

    status = sub.add_parser("status", help="list labs and their VMs")
    status.add_argument("--json", action="store_true")

    inv = sub.add_parser("inventory", help="write the Ansible inventory of a lab")
    inv.add_argument("--name", required=True)
    inv.add_argument("--output", type=Path, help="file to write (default: stdout)")

    inst = sub.add_parser("instance-config", help="Molecule instance config (JSON) of a lab")
    inst.add_argument("--name", required=True)
    inst.add_argument("--output", type=Path)

    img = sub.add_parser("image", help="build (or find) the cached image and print its path")
    img.add_argument("--digest", action="store_true", help="print the recipe hash only")
    return p


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    log(f"wrote {output}")


def _cmd_up(args: argparse.Namespace, cache: Path) -> int:
    if args.platforms:
        specs = platforms_from_json(args.platforms)
    else:
        specs = platforms_from_flags(args.name, args.vms, args.mem, args.cpus, args.disk)
    st = core.up(cache, args.name, specs, args.timeout, args.ssh_port)
    if args.inventory:
        _write(core.inventory_yaml(cache, st), args.inventory)
    for v in st.vms:
        print(f"{v.name}\tssh -p {v.ssh_port} root@127.0.0.1\tprivate {v.private_ip}")
    return 0


def _cmd_down(args: argparse.Namespace, cache: Path) -> int:
    from lab import state

    names = state.all_names(cache) if args.all else [args.name]
    for name in names:
        stopped = core.down(cache, name)
        log(
            f"'{name}' down"
            + (f" (stopped {', '.join(stopped)})" if stopped else " (nothing was running)")
        )
    return 0


def _cmd_ssh(args: argparse.Namespace, cache: Path) -> int:
    st = core.require_up(cache, args.name)
    target = next((v for v in st.vms if v.name == args.vm), None) if args.vm else st.vms[0]
    if target is None:
        raise LabError(
            f"no VM '{args.vm}' in lab '{args.name}'",
            f"one of: {', '.join(v.name for v in st.vms)}",
        )
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    argv = vm.ssh_base(cache, target.ssh_port)
    if sys.stdin.isatty() and not command:
        argv.insert(1, "-t")
    os.execvp(argv[0], [*argv, *command])
    return 0  # not reached


def _cmd_status(args: argparse.Namespace, cache: Path) -> int:
    rows = core.status(cache)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no labs")
        return 0
    cols = [
        "scenario",
        "vm",
        "running",
        "pid",
        "ssh",
        "private_ip",
        "accel",
        "memory",
        "cpus",
        "disks",
    ]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    return 0


def _cmd_inventory(args: argparse.Namespace, cache: Path) -> int:
    _write(core.inventory_yaml(cache, core.require_up(cache, args.name)), args.output)
    return 0


def _cmd_instance_config(args: argparse.Namespace, cache: Path) -> int:
    st = core.require_up(cache, args.name)
    _write(json.dumps(core.instance_config(cache, st), indent=2) + "\n", args.output)
    return 0


def _cmd_image(args: argparse.Namespace, cache: Path) -> int:
    if args.digest:
        print(default_recipe().digest())
        return 0
    print(image.ensure_image(cache))
    return 0


COMMANDS = {
    "up": _cmd_up,
    "down": _cmd_down,
    "ssh": _cmd_ssh,
    "status": _cmd_status,
    "inventory": _cmd_inventory,
    "instance-config": _cmd_instance_config,
    "image": _cmd_image,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.cmd](args, paths.cache_dir())
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
