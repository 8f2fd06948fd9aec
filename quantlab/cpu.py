"""What the CPU can do for INT8: VNNI on x86-64, the dot-product instructions on ARM64."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

X86_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "avx512vnni", "avxvnni"})


@dataclass(frozen=True)
class CpuInfo:
    """arch: 'x86_64', 'arm64' or other; flags as /proc/cpuinfo spells them."""

    arch: str
    model: str
    flags: frozenset[str]
    cores: int

    @property
    def has_vnni(self) -> bool:
        return bool(self.flags & X86_VNNI_FLAGS)

    @property
    def has_avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def has_arm_dot(self) -> bool:
        return "asimddp" in self.flags or (self.arch == "arm64" and platform.system() == "Darwin")

    def notable_flags(self) -> list[str]:
        """The flags that decide INT8 speed, for reports."""
        wanted = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve"}
        return sorted(self.flags & wanted)


def _normalise_arch(machine: str) -> str:
    machine = machine.lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    return machine


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) from the text of /proc/cpuinfo (x86 'flags', ARM 'Features')."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, frozenset(flags)


@lru_cache(maxsize=1)
def detect_cpu() -> CpuInfo:
    """The CPU this process runs on (Linux: /proc/cpuinfo; elsewhere: platform only)."""
    cpuinfo = Path("/proc/cpuinfo")
    model, flags = parse_cpuinfo(cpuinfo.read_text()) if cpuinfo.exists() else ("", frozenset())
    return CpuInfo(
        arch=_normalise_arch(platform.machine()),
        model=model or platform.processor() or platform.machine(),
        flags=flags,
        cores=os.cpu_count() or 1,
    )
