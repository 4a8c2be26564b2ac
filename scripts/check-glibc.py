#!/usr/bin/env python3
"""Check that a Linux binary runs on a target C library.

    scripts/check-glibc.py BINARY [--max-glibc 2.36]

The operator binary runs in its own image (distroless, Debian 12) and, copied by
`blocksight copy-self`, inside the default PostgreSQL image of the backup, drill and restore
Jobs (Debian bookworm). Both have glibc 2.36. A binary linked on a newer system asks the
dynamic loader for newer symbol versions (GLIBC_2.38's __isoc23_strtol, say) and fails to
start there with "version `GLIBC_2.38' not found". This reads the ELF file's version needs
(.gnu.version_r) and its DT_NEEDED libraries and fails when a required GLIBC_x.y exceeds the
target or a library outside the C runtime is needed (the PostgreSQL image has no others that
the operator may assume).

Exit 0 and a one-line summary when the binary fits; exit 1 naming every offending symbol
version or library otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys

from elftools.elf.elffile import ELFFile
from elftools.elf.dynamic import DynamicSection
from elftools.elf.gnuversions import GNUVerNeedSection

# The libraries of the C runtime that every glibc system has.
C_RUNTIME = re.compile(
    r"^(libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1"
    r"|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$"
)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def inspect(path: str) -> tuple[set[str], dict[str, set[str]]]:
    """(DT_NEEDED libraries, {library: required version names})."""
    needed: set[str] = set()
    versions: dict[str, set[str]] = {}
    with open(path, "rb") as handle:
        elf = ELFFile(handle)
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.add(tag.needed)
            elif isinstance(section, GNUVerNeedSection):
                for verneed, auxiliaries in section.iter_versions():
                    versions.setdefault(verneed.name, set()).update(aux.name for aux in auxiliaries)
    return needed, versions


def check(path: str, max_glibc: str) -> list[str]:
    needed, versions = inspect(path)
    limit = version_tuple(max_glibc)
    problems = []
    for library in sorted(needed):
        if not C_RUNTIME.match(library):
            problems.append(f"needs {library}, which is not part of the C runtime")
    for library, names in sorted(versions.items()):
        for name in sorted(names):
            match = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)+)", name)
            if match and version_tuple(match.group(1)) > limit:
                problems.append(f"needs {name} from {library}; the target has glibc {max_glibc}")
    return problems


def newest_glibc(path: str) -> str:
    _, versions = inspect(path)
    found = [
        match.group(1)
        for names in versions.values()
        for name in names
        if (match := re.fullmatch(r"GLIBC_(\d+(?:\.\d+)+)", name))
    ]
    return max(found, key=version_tuple) if found else "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary")
    parser.add_argument("--max-glibc", default="2.36", help="the target's glibc (default: 2.36, Debian bookworm)")
    args = parser.parse_args()
    problems = check(args.binary, args.max_glibc)
    if problems:
        for problem in problems:
            print(f"{args.binary}: {problem}", file=sys.stderr)
        return 1
    print(f"{args.binary}: newest glibc symbol version {newest_glibc(args.binary)} <= {args.max_glibc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
