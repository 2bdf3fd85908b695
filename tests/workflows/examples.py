# ruff: noqa: E501  (hashes and keys are single tokens)
"""Workflow documents used by the tests: the product description's examples and installers."""

# The product description's examples: refused until their task types are built.
PRODUCT_UBUNTU_SERVER = """\
name: ubuntu-2404-server
description: Ubuntu 24.04 LTS Server Installation
tasks:
  - type: pxe_boot
    bootloader: grub
    kernel: /tftp/ubuntu/vmlinuz
    initrd: /tftp/ubuntu/initrd
    cmdline: "ip=dhcp url=http://pureboot.local/ubuntu-2404.iso"

  - type: image_deploy
    image: /templates/ubuntu-2404.tar.gz
    target: /dev/sda

  - type: script_run
    script: /scripts/post-install.sh

  - type: reboot
    delay: 10

  - type: chain_boot
    method: grub
    target: (hd0)+1
"""

PRODUCT_OVIRT_VM = """\
name: ovirt-ubuntu-vm
description: oVirt Ubuntu VM Provisioning
tasks:
  - type: ovirt_vm_create
    template: ubuntu-2404-template
    cluster: Default
    memory: 4096
    cores: 2
    disks:
      - size: 20GB
        storage_domain: data
        interface: virtio
    networks:
      - name: ovirtmgmt
        profile: default

  - type: ovirt_vm_start
    wait_for_ip: true

  - type: ovirt_vm_configure
    cloud_init:
      hostname: pureboot-node-{{ node_id }}
      users:
        - name: admin
          ssh_authorized_keys: ["ssh-rsa ..."]
      packages: ["qemu-guest-agent", "openssh-server"]
"""

# Shipped examples (docs/examples/workflows), built from task types PureBoot runs.
# The boot image they name, as import_iso names an Ubuntu 24.04.2 live-server ISO
# (tests/workflows/conftest.py registers it for the tests that save them).
UBUNTU_IMAGE = "ubuntu-24.04.2-live-server-amd64"

UBUNTU_SERVER = """\
# Boot image: manage.py import_iso ubuntu-24.04.2-live-server-amd64.iso
# (a path, or the ISO's URL with --sha256). The node boots the ISO's kernel
# and initrd, which download the ISO itself from PureBoot (url=).
name: ubuntu-2404-server
description: Ubuntu 24.04 LTS Server Installation
arch: [x86_64]
firmware: [bios, uefi]
tasks:
  - type: pxe_boot
    boot_image: ubuntu-24.04.2-live-server-amd64

  - type: ubuntu_autoinstall
    username: ops
    ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfXb0m0pX3b1Rz8Qd8yXv2cJvJtq9gJmT0nU7G0c4Xy ops@bastion"]

  - type: script_run
    script: "echo 'Installed by PureBoot' > /etc/motd"
"""

CLOUD_VM = """\
name: cloud-init-vm
description: A VM from a cloud image, configured by cloud-init
tasks:
  - type: cloud_init
    username: ops
    ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfXb0m0pX3b1Rz8Qd8yXv2cJvJtq9gJmT0nU7G0c4Xy ops@bastion"]
    packages: [qemu-guest-agent]
"""

# Kernel and initrd as raw paths under the boot root, so the ISO the
# live-server initrd downloads is named explicitly (url=), as Ubuntu documents.
UBUNTU_AUTOINSTALL = """\
name: ubuntu-autoinstall
description: Ubuntu 24.04 with subiquity autoinstall
arch: [x86_64]
firmware: [bios, uefi]
tasks:
  - type: pxe_boot
    kernel: /boot/ubuntu-24.04/vmlinuz
    initrd: /boot/ubuntu-24.04/initrd
    cmdline: "ip=dhcp url=http://mirror.example/ubuntu-24.04.2-live-server-amd64.iso"
  - type: ubuntu_autoinstall
    username: ops
    password_hash: "$6$rounds=4096$saltsalt$3MEaFVx0Ug9Ic4KqAbEXzGvGCwnvFxOTkZ1cuDuPCzBkS0bvQ7N8PEDV6JVLKsXUh7nHT/4zqvkG9WIjRPDn6/"
    ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnJ1vZs2vGmQmPJb6Fx2Vn4f6Zq0S7pRyq3+0aR1u9T ops@lab"]
    packages: [openssh-server, qemu-guest-agent]
"""
