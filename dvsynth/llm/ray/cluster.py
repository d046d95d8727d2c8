"""Connecting to Ray: an existing cluster, or a local one; quiet, so the CLI's own
progress and summary stay readable."""

from __future__ import annotations

import logging
import os
import socket
import warnings
from typing import Any

from dvsynth.errors import UserError


def ray_module() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserError(
            '--engine ray: Ray is not installed: pip install "dvsynth[ray]" '
            '(and "dvsynth[ray-vllm]" on GPU nodes)'
        ) from None
    return ray


def connect(address: str, num_cpus: int | None = None) -> Any:
    """`ray.init` at `address`: "auto" joins a cluster started on this machine (`ray
    start`) or else starts a local one; "host:port" or "ray://..." must answer."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address not in ("auto", "local") and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        try:  # ray.init would retry a closed port for minutes
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError):
            raise UserError(f"--ray-address {address}: no Ray cluster answers there") from None
    if address != "local":
        try:
            ray.init(address=address, **quiet)
            return _quiet_data(ray)
        except ConnectionError:
            if address != "auto":
                hint = (
                    ""
                    if os.environ.get("RAY_AUTH_MODE")
                    else (
                        " (a cluster from `ray start` on Ray 2.60 wants RAY_AUTH_MODE=token"
                        " in this environment, or --ray-address auto on its head node)"
                    )
                )
                raise UserError(f"--ray-address {address}: could not connect{hint}") from None
    # address="local": without it ray.init joins whatever /tmp/ray names as the current
    # cluster, and a stale one from a killed run makes it hang
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    return _quiet_data(ray)


def _quiet_data(ray: Any) -> Any:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="ray")
    return ray
