"""Building the agent's kernel and initramfs from Debian packages.

``debs`` finds and fetches the packages (apt), ``elf`` follows binaries to
their shared libraries, ``modules`` picks kernel modules with their
dependencies, ``cpio`` writes a byte-reproducible initramfs, and ``image``
puts them together (``manage.py build_agent``).
"""

AGENT_VERSION = "1"


class BuildError(Exception):
    """The agent cannot be built; the message says what is missing and how to fix it."""
