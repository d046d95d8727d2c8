"""The export's `audit` config: the per-judgment labels people gave in the runs' blind
audits (`dvsynth audit`), reviewers under anonymous ids, beside the intended label and
the judge's, so anyone can recompute the card's audit figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

CONFIG = "audit"
FILE = f"{CONFIG}/train-00000.parquet"
SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("item", pa.string()),
        ("sampled_as", pa.string()),  # verified, or rejected (by the judge)
        ("view", pa.string()),
        ("doc", pa.string()),
        ("reviewer", pa.string()),
        ("label", pa.string()),  # yes, no or unsure: does the doc meet the view's need?
        ("intended", pa.string()),
        ("judge", pa.string()),
        ("note", pa.string()),
    ]
)


def write_audit_config(run_dirs: Sequence[Path], out: Path) -> int:
    """Write `audit/train-00000.parquet` under `out` when the runs hold answers; the
    rows written (0: no file)."""
    from dvsynth.view.audit import label_rows

    rows = label_rows(list(run_dirs))
    if not rows:
        return 0
    (out / CONFIG).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out / FILE, compression="zstd")
    return len(rows)
