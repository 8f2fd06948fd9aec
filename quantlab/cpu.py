"""What the CPU can do for INT8: VNNI on x86-64, the dot-product instructions on ARM64.

Linux's /proc/cpuinfo is read directly: it is instant and spells flags as the kernel does. Elsewhere
(Windows, macOS) py-cpuinfo reads CPUID or sysctl; it takes a fraction of a second (it runs CPUID in a
child process), once per process, and its flag names are respelt as the kernel's.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

X86_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})
# py-cpuinfo's CPUID and sysctl names -> the kernel's, for the flags that decide INT8 speed
_KERNEL_SPELLING = {"avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni", "amxint8": "amx_int8"}
_PROC_CPUINFO = Path("/proc/cpuinfo")


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


def parse_py_cpuinfo(info: dict) -> tuple[str, frozenset[str]]:
    """(model name, flags in the kernel's spelling) from py-cpuinfo's get_cpu_info() dict."""
    flags = {_KERNEL_SPELLING.get(flag.lower(), flag.lower()) for flag in info.get("flags", ())}
    return info.get("brand_raw", ""), frozenset(flags)


@lru_cache(maxsize=1)
def detect_cpu() -> CpuInfo:
    """The CPU this process runs on (Linux: /proc/cpuinfo; elsewhere: py-cpuinfo)."""
    if _PROC_CPUINFO.exists():
        model, flags = parse_cpuinfo(_PROC_CPUINFO.read_text())
    else:
        import cpuinfo

        model, flags = parse_py_cpuinfo(cpuinfo.get_cpu_info())
    return CpuInfo(
        arch=_normalise_arch(platform.machine()),
        model=model or platform.processor() or platform.machine(),
        flags=flags,
        cores=os.cpu_count() or 1,
    )
