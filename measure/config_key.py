"""One measured configuration's identity, independent of the sweep that asked for it.

A sweep's ``spec_hash`` changes when a batch size is added to its list or the sweep is renamed; the
configuration key does not. It hashes what decides the measurement: the spec without its name, its list
of batch sizes and which GPU indices it named (under Ray the scheduler picks them; their count stays in
the key), plus the one batch size (``max_num_seqs``) measured. ``measure run --ray --resume`` skips a
configuration whose key is already recorded.
"""

from __future__ import annotations

import hashlib
import json

from measure.schema import RunRecord, SweepSpec


def config_key(spec: SweepSpec, max_num_seqs: int) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of one configuration of ``spec``."""
    body = spec.model_dump(mode="json")
    for field in ("name", "batch_sizes", "gpu_indices"):
        body.pop(field)
    body["num_gpus"] = len(spec.gpu_indices)
    body["max_num_seqs"] = max_num_seqs
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def recorded_key(record: RunRecord, specs: list[SweepSpec]) -> str | None:
    """The configuration key of a record: its own, else (records written before keys existed) the key of the
    configuration in ``specs`` with the record's spec hash and batch size, else None."""
    if record.provenance.config_key:
        return record.provenance.config_key
    for spec in specs:
        if spec.spec_hash() == record.provenance.spec_hash and record.max_num_seqs in spec.batch_sizes:
            return config_key(spec, record.max_num_seqs)
    return None
