"""What a benchmark figure was measured on, said the same way by every script that reports one."""

from __future__ import annotations

import datetime
import os
import platform


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else whatever the platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: timings taken beside other work are read with them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe_machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": load_average(),
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}
