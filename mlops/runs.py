"""Run identity: every local run writes under its own id, `<local.root>/runs/<run id>/`."""

from __future__ import annotations

import secrets
import time

from mlops.config import PipelineConfig


def new_run_id(config: PipelineConfig) -> str:
    """`<name>-<UTC date>-<time>-<4 hex>`: sortable by start time, unique across concurrent runs."""
    return f"{config.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"
