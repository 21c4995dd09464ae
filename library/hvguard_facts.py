#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: gather everything the hvguard roles decide on, in one read-only call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_facts
short_description: Gather hypervisor facts for hvguard (OS, kernel, boot, memory, libvirt, QEMU)
description:
  - Returns C(ansible_facts.hvguard), one dictionary with everything the hvguard roles decide
    on, gathered from C(/proc), C(/sys), C(/etc) and the C(virsh) command line client (no
    libvirt Python binding needed).
  - Never changes anything. Missing commands and files are tolerated; a host without libvirt
    gets C(libvirt.present=false) and empty lists.
  - All libvirt queries go through at most two C(virsh) processes (batch mode), each bounded
    by C(timeout).
  - "Top-level keys: C(os) (family, distribution, version, major_version, codename, pkg_mgr,
    init), C(kernel) (release, cmdline, params), C(boot) (loader, grub_dropin_dir,
    update_cmd), C(memory) (ksm, ksmtuned, swap, thp), C(libvirt) (present, version,
    daemon_mode, layouts_available, daemons, daemons_running, running, uri, conf_dir, units,
    pools, domains), C(qemu) (present, version, binaries), C(network) (bridges, ovs,
    tcp_listen_ports), C(lvm) (present, conf)."
  - C(libvirt.daemon_mode) is C(modular) when C(virtqemud) is installed and either its units
    are enabled (systemd), it runs (other init), or C(libvirtd) is not installed;
    C(monolithic) when C(libvirtd) is installed otherwise; C(none) without either.
  - C(libvirt.units) maps each libvirt unit file found to C({enabled, active}); both are
    null when the host does not run systemd.
  - Swap devices are resolved through device-mapper, partitions and loop devices; a device
    that is an encrypting cryptsetup mapping (dm UUID C(CRYPT-PLAIN-), C(CRYPT-LUKS1-),
    C(CRYPT-LUKS2-), ...; not C(VERITY), C(INTEGRITY) or C(SUBDEV)), or whose every lower
    device is encrypted, is C(encrypted=true, backing=dm-crypt); C(zram) devices are
    C(type=zram, backing=zram); anything else, or anything that cannot be resolved, is plain.
  - C(qemu.processes) lists every running QEMU system emulator (C(pid), C(name), C(exe)),
    whether libvirt started it or not (what a host reboot would kill).
  - Domains carry C(name), C(uuid), C(state) (C(running), C(paused), C(shutoff) or
    C(other)), C(persistent), C(qemu_pid), C(qemu_binary), C(qemu_binary_mtime),
    C(qemu_started) (epoch seconds), C(qemu_binary_deleted) (QEMU was upgraded after the
    domain started), C(memory_backing.nosharepages), C(disks) and C(interfaces).
version_added: "0.1.0"
author: hvguard contributors
options:
  domains:
    description:
      - Include per-domain details from the domain XML (disks, interfaces, memory backing).
        With C(false) domains are still listed with name, state and persistence.
    type: bool
    default: true
  timeout:
    description: Seconds each external command (virsh, qemu, systemctl, lvs) may take.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
notes:
  - Reading libvirt state needs root (C(qemu:///system)). Without access,
    C(libvirt.running) is false and C(libvirt.error) says why.
  - On systemd hosts C(virsh) is only called when a libvirt daemon runs or one of its units
    is active, so gathering never socket-activates a stopped daemon. An active socket unit
    does start the daemon on connect, as any libvirt client would.
"""

EXAMPLES = r"""
- name: Gather hvguard facts
  hvguard_facts:

- name: Only host-level facts, quickly
  hvguard_facts:
    domains: false
    timeout: 5

- name: Show the libvirt layout
  ansible.builtin.debug:
    msg: "{{ hvguard.libvirt.daemon_mode }} {{ hvguard.libvirt.version }}"
"""

RETURN = r"""
ansible_facts:
  description: The facts, under the single key C(hvguard).
  returned: always
  type: complex
  contains:
    hvguard:
      description: See the module description for the keys.
      type: dict
      returned: always
      sample:
        os: {family: Debian, distribution: Debian, version: "12", major_version: "12",
             codename: bookworm, pkg_mgr: apt, init: systemd}
        kernel: {release: 6.1.0-13-amd64, cmdline: "BOOT_IMAGE=/vmlinuz ro quiet",
                 params: {BOOT_IMAGE: /vmlinuz, ro: true, quiet: true}}
        boot: {loader: grub, grub_dropin_dir: /etc/default/grub.d, update_cmd: update-grub}
        memory:
          ksm: {present: true, run: 0, pages_shared: 0, merge_across_nodes: 1}
          ksmtuned: {installed: false}
          swap: [{device: /dev/dm-1, name: /dev/mapper/swap, type: partition,
                  size_kb: 999420, encrypted: true, backing: dm-crypt}]
          thp: {enabled: madvise, defrag: madvise}
        libvirt:
          present: true
          version: 9.0.0
          daemon_mode: monolithic
          layouts_available: [monolithic]
          daemons: [libvirtd, virtlogd, virtlockd]
          daemons_running: [libvirtd, virtlogd]
          running: true
          uri: qemu:///system
          conf_dir: /etc/libvirt
          units: {libvirtd.service: {enabled: true, active: true},
                  libvirtd-tls.socket: {enabled: false, active: false}}
          pools: [{name: default, type: dir, active: true, target: /var/lib/libvirt/images,
                   source_device: null, source_name: null, thin: false}]
          domains: [{name: vm1, uuid: 8f1a..., state: running, persistent: true,
                     qemu_pid: 4242, memory_backing: {nosharepages: true},
                     disks: [{target: vda, source: /var/lib/libvirt/images/vm1.qcow2,
                              type: file, format: qcow2, device: disk}],
                     interfaces: [{type: bridge, source: br0, target_dev: vnet0,
                                   mac: "52:54:00:12:34:56", model: virtio}]}]
        qemu: {present: true, version: 7.2.22, binaries: [/usr/bin/qemu-system-x86_64],
               processes: [{pid: 4242, name: qemu-system-x86_64,
                            exe: /usr/bin/qemu-system-x86_64}]}
        network: {bridges: [{name: br0, ports: [eth0, vnet0]}],
                  ovs: {present: false, bridges: []}, tcp_listen_ports: [22, 16514]}
        lvm: {present: true, conf: /etc/lvm/lvm.conf}
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hvguard_facts_base import URI, CmdResult, FactsBase, run_command
from ansible.module_utils.hvguard_facts_host import (
    HostFacts,
    parse_cmdline,
    parse_os_release,
    selected_word,
    unescape_mount,
)
from ansible.module_utils.hvguard_facts_libvirt import (
    PROBE_RETRIES,
    LibvirtFacts,
    daemon_mode,
    domain_xml_facts,
    listening_ports,
    names_of,
    parse_systemctl_show,
    pool_facts,
    quote,
)

# Re-exported for callers and tests that know the single-file module.
__all__ = [
    "PROBE_RETRIES", "URI", "CmdResult", "FactsBase", "Gatherer", "daemon_mode",
    "domain_xml_facts", "listening_ports", "names_of", "parse_cmdline", "parse_os_release",
    "parse_systemctl_show", "pool_facts", "quote", "run_command", "selected_word",
    "unescape_mount",
]  # fmt: skip


class Gatherer(HostFacts, LibvirtFacts):
    """Every area's collectors; ``gather`` is the one round trip the roles pay for."""

    def gather(self) -> dict[str, Any]:
        os_facts = self.os_facts()
        return {
            "os": os_facts,
            "kernel": self.kernel_facts(),
            "boot": self.boot_facts(os_facts["family"]),
            "memory": self.memory_facts(),
            "libvirt": self.libvirt_facts(os_facts["init"]),
            "qemu": self.qemu_facts(),
            "network": self.network_facts(),
            "lvm": self.lvm_facts(),
        }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "domains": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    if module.params["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1 second")
    gatherer = Gatherer(timeout=module.params["timeout"], with_domains=module.params["domains"])
    facts = gatherer.gather()
    for warning in gatherer.warnings:
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"hvguard": facts})


if __name__ == "__main__":
    main()
