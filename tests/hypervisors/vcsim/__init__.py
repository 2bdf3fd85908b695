"""govmomi's vCenter simulator, built from Debian's sources, for the VMware driver tests."""
