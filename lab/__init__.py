# SPDX-License-Identifier: Apache-2.0
"""hvguard VM lab: Debian 12 hypervisor VMs under QEMU for Molecule scenarios and `make lab`."""
