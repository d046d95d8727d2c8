"""litellm, imported on first use and set up once.

Its import alone takes seconds, which the lean HTTP and embedded paths never pay; the
environment it reads at import is set here, before anything can import it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

# litellm fetches its price table over the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# litellm caps its aiohttp pool at 500 connections per host, read once at import; past
# that, calls queue inside litellm (and log a warning each). --concurrency is the cap.
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", "65536")
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "0")


@lru_cache(maxsize=1)
def litellm() -> Any:
    import litellm as module

    module.suppress_debug_info = True
    module.drop_params = True  # providers that lack a parameter (seed) still answer
    return module
