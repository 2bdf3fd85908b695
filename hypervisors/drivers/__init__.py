"""Hypervisor drivers: one module per platform behind :mod:`.base`'s interface."""
