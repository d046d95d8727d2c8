"""Seeds in: sources (`readers`), rows to `Seed` records (`adapters`), hard negatives for
plain (query, positive) pairs (`mine`), and the seeds of one shard (`shards`)."""

from dvsynth.seeds.adapters import (
    TRIPLE_FIELDS,
    SeedFormat,
    SeedReader,
    SeedRowError,
    adapt_promptriever,
    adapt_triples,
    parse_mapping,
    to_doc,
)
from dvsynth.seeds.readers import BUNDLED_SAMPLE, describe_source, estimate_total, iter_raw_rows

__all__ = [
    "BUNDLED_SAMPLE",
    "TRIPLE_FIELDS",
    "SeedFormat",
    "SeedReader",
    "SeedRowError",
    "adapt_promptriever",
    "adapt_triples",
    "describe_source",
    "estimate_total",
    "iter_raw_rows",
    "parse_mapping",
    "to_doc",
]
