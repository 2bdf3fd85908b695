# PureBoot developer entry points. See README.md ("Quick start").
#
#   make run    set up .venv, migrate, bootstrap, start a Celery worker (+beat)
#               in the background and the web server in the foreground
#   make test   set up .venv with the dev extras and run pytest
#   make lab    the boot lab (QEMU, dnsmasq, the daemons; needs root)
#   make lint   ruff, `manage.py check`, missing-migration check
#   make bench  TFTP against tftpd-hpa, atftpd, dnsmasq; /boot/ipxe under gunicorn (root)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PUREBOOT_LISTEN ?= 127.0.0.1:8000
# Port 69 needs root; make run serves TFTP on a high port unless told otherwise.
PUREBOOT_TFTP_PORT ?= 6969
PYTEST_ARGS ?=
# Logs go under the same var/ directory settings.py uses.
VAR_DIR := $(or $(PUREBOOT_VAR_DIR),var)
LOG_DIR := $(VAR_DIR)/log

MANAGE := $(BIN)/python manage.py

.DEFAULT_GOAL := help
.PHONY: help run test lab lint format tools lab-tools build-deps bench

help:
	@echo "make run     migrate, bootstrap, start worker+beat and the web server on $(PUREBOOT_LISTEN)"
	@echo "make test    run the test suite (PYTEST_ARGS='...' is passed to pytest)"
	@echo "make lab     the boot lab: QEMU machines boot through PureBoot (root, a few minutes)"
	@echo "make lint    ruff check, ruff format --check, manage.py check, makemigrations --check"
	@echo "make format  apply ruff's fixes and formatting"
	@echo "make bench   TFTP benchmark against tftpd-hpa, atftpd and dnsmasq (root; BENCH_QUICK=1 for a short run)"

# --- virtualenv -----------------------------------------------------------
# pyproject.toml declares no importable packages (the apps are top-level
# folders run from this directory), so an editable install of "." installs
# exactly the dependencies. The stamps make a re-install happen only when
# pyproject.toml changes.

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The dev install includes the optional LDAP extra, whose python-ldap is
# built from source (build-deps installs its Debian build packages).
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python build-deps
	$(BIN)/python -m pip install --quiet -e ".[dev,ldap,libvirt,ovirt]"
	touch $(VENV)/.installed $@

# --- run ------------------------------------------------------------------
# The worker runs in the background with embedded beat (periodic tasks);
# without REDIS_URL it talks to the web process through kombu's filesystem
# transport under var/celery. The trap stops it when the server stops
# (Ctrl-C, or the server failing to start).

run: $(VENV)/.installed
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput --verbosity 0
	$(MANAGE) bootstrap
	@mkdir -p $(LOG_DIR); \
	$(BIN)/celery -A pureboot worker -B --concurrency=1 --loglevel=INFO \
		>>$(LOG_DIR)/worker.log 2>&1 & \
	worker=$$!; \
	$(MANAGE) bootserve --port $(PUREBOOT_TFTP_PORT) >>$(LOG_DIR)/tftp.log 2>&1 & \
	tftp=$$!; \
	trap 'kill $$worker $$tftp 2>/dev/null; wait $$worker $$tftp 2>/dev/null; echo "worker and TFTP stopped"' EXIT; \
	trap 'exit 130' INT TERM; \
	echo "worker (pid $$worker) logs to $(LOG_DIR)/worker.log; TFTP on port $(PUREBOOT_TFTP_PORT) logs to $(LOG_DIR)/tftp.log"; \
	echo "PureBoot on http://$(PUREBOOT_LISTEN)/ (admin at /admin/, API docs at /api/v1/docs)"; \
	$(MANAGE) runserver $(PUREBOOT_LISTEN) --noreload

# --- test and lint --------------------------------------------------------
# pytest's exit code 5 means it collected no tests: that is a failure too,
# said in words so that nobody mistakes it for a green run.

# The distributions' own checkers and image tools (Debian packages). As root
# with apt-get they are installed when missing; otherwise they are named, and
# the tests that need one fail naming it.
TOOLS := qemu-img:qemu-utils cloud-init:cloud-init debconf-set-selections:debconf \
	shellcheck:shellcheck curl:curl wget:wget chromium:chromium \
	grub-script-check:grub-common grub-mknetdir:grub-common busybox:busybox-static ip:iproute2 \
	ldapadd:ldap-utils atftp:atftp go:golang-go ganesha.nfsd:nfs-ganesha nfs-cp:libnfs-utils \
	wimlib-imagex:wimtools samba-tool:samba-common-bin smbclient:smbclient kinit:krb5-user \
	xmlsec1:xmlsec1 promtool:prometheus redis-server:redis-server \
	puppet:puppet ssh-keygen:openssh-client

TOOL_FILES := /usr/lib/ipxe/undionly.kpxe:ipxe /usr/lib/PXELINUX/lpxelinux.0:pxelinux \
	/usr/lib/syslinux/modules/bios/ldlinux.c32:syslinux-common \
	/usr/lib/grub/x86_64-efi/normal.mod:grub-efi-amd64-bin /usr/sbin/dnsmasq:dnsmasq-base \
	/usr/sbin/slapd:slapd /usr/sbin/nginx:nginx-light /usr/sbin/tgtd:tgt \
	/usr/share/gocode/src/github.com/vmware/govmomi/simulator:golang-github-vmware-govmomi-dev \
	/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so:nfs-ganesha-vfs \
	/usr/sbin/samba:samba /usr/sbin/smbd:samba /usr/sbin/winbindd:winbind \
	/usr/share/samba/setup:samba-ad-dc /usr/sbin/sshd:openssh-server \
	/usr/sbin/rsyslogd:rsyslog /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so:rsyslog-gnutls

# What building python-ldap (the "ldap" extra, part of the dev install) needs.
PY_INCLUDE := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_paths()['include'])" 2>/dev/null)
BUILD_TOOLS := gcc:gcc pkg-config:pkg-config
BUILD_FILES := /usr/include/ldap.h:libldap-dev /usr/include/sasl/sasl.h:libsasl2-dev \
	$(PY_INCLUDE)/Python.h:python3-dev /usr/include/libvirt/libvirt.h:libvirt-dev \
	/usr/include/x86_64-linux-gnu/curl/curl.h:libcurl4-openssl-dev \
	/usr/include/libxml2/libxml/parser.h:libxml2-dev

# The boot lab (tests/e2e/bootlab) also needs QEMU, its firmware and the
# tools that build the lab's disk image.
LAB_TOOLS := qemu-system-x86_64:qemu-system-x86 syslinux:syslinux mcopy:mtools \
	mkfs.fat:dosfstools sfdisk:fdisk qemu-system-aarch64:qemu-system-arm \
	libvirtd:libvirt-daemon-system grub-mkstandalone:grub-common ganesha.nfsd:nfs-ganesha
LAB_TOOL_FILES := /usr/lib/ipxe/qemu/pxe-virtio.rom:ipxe-qemu /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf \
	/usr/lib/syslinux/mbr/mbr.bin:syslinux-common /usr/lib/PXELINUX/pxelinux.0:pxelinux \
	/usr/share/AAVMF/AAVMF_CODE.fd:qemu-efi-aarch64 \
	/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so:nfs-ganesha-vfs

# $(call install-missing,COMMANDS,FILES): install the Debian packages behind
# missing commands or files (as root), or name them.
define install-missing
	@missing=""; for pair in $(1); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	for pair in $(2); do \
		[ -e $${pair%%:*} ] || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing Debian packages:$$missing"; \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
			|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing)) >/dev/null; \
		else \
			echo "make: missing tools (Debian packages):$$missing; the tests that need them will fail" >&2; \
		fi; \
	fi
endef

tools:
	$(call install-missing,$(TOOLS),$(TOOL_FILES))

build-deps:
	$(call install-missing,$(BUILD_TOOLS),$(BUILD_FILES))

lab-tools: tools
	$(call install-missing,$(LAB_TOOLS),$(LAB_TOOL_FILES))

# Salt (master, salt-api, minion) for tests/configmgmt/test_salt.py lives in its
# own virtualenv: it pins libraries (python-dateutil, ...) unlike the controller.
SALT_VENV ?= .venv-salt

$(SALT_VENV)/bin/salt-master:
	$(PYTHON) -m venv $(SALT_VENV)
	$(SALT_VENV)/bin/python -m pip install --quiet "salt>=3007,<3009" CherryPy

test: $(VENV)/.installed-dev tools $(SALT_VENV)/bin/salt-master
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: FAILED: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

# The boot lab: real firmware under QEMU boots through the whole controller in
# a private network namespace (root needed). A few minutes; CI runs it as its
# own leg. Artifacts (consoles, daemon logs) land in test-artifacts/bootlab/.
lab: $(VENV)/.installed-dev lab-tools
	@PUREBOOT_BOOTLAB=1 $(BIN)/pytest -m bootlab tests/e2e/test_boot_lab.py tests/e2e/test_agent_lab.py tests/e2e/test_vm_lab.py tests/e2e/test_arm_lab.py $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make lab: FAILED: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

# The benchmark (tests/bench/): servers pinned to CPU 0, the C load client on
# CPU 1, medians of BENCH_RUNS runs (3), in a private network namespace. It
# installs the peers from Debian packages as root. See README "Benchmarks".
bench: $(VENV)/.installed-dev
	$(BIN)/python tests/bench/tftp_bench.py
	$(BIN)/python tests/bench/http_bench.py
	$(BIN)/python tests/bench/deploy_bench.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MANAGE) check
	$(MANAGE) makemigrations --check --dry-run
	$(MANAGE) spectacular --validate --fail-on-warn --file /dev/null

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
