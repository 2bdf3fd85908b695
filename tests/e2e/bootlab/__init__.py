"""The boot lab: real firmware (QEMU's iPXE ROM, OVMF) booting through PureBoot."""
