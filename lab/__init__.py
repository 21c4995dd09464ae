"""hvguard VM lab: Debian 12 hypervisor VMs under QEMU for Molecule scenarios and `make lab`."""
