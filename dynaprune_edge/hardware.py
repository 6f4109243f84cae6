"""What this machine is, as the reports and the cost tables name it (torch-free: the device
side reads it too)."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
