"""``comptrust inspect DIR``: what a compressed artifact is, what was measured, and whether it is whole."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from comptrust.commands._common import common_parser
from comptrust.compression.base import artifact_files_problem, missing_manifest_fields, read_manifest

UNKNOWN = "?"  # printed for a field the manifest lacks; the 'missing' line names them all


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", parents=[common_parser()], help="print a compressed artifact's manifest",
                       description="Print what a compressed artifact is and what was measured. Exits 1 when its "
                                   "comptrust.json lacks fields or its files differ from what was recorded.")
    p.add_argument("dir", metavar="DIR", help="folder written by 'comptrust compress'")
    p.add_argument("--json", action="store_true", help="the raw comptrust.json")
    p.add_argument("--verify", action="store_true",
                   help="also re-read every file and compare its SHA-256 with the one recorded (slow for big models)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir).expanduser()
    manifest = read_manifest(folder)
    missing = missing_manifest_fields(manifest)
    files = artifact_files_problem(folder, manifest, hashes=args.verify)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        for note in _problems(missing, files):
            print(f"comptrust: {note}", file=sys.stderr)
    else:
        print(describe(manifest, folder, missing, files, args.verify))
    return 1 if missing or files else 0


def _problems(missing: list[str], files: str | None) -> list[str]:
    notes = []
    if missing:
        notes.append(f"comptrust.json lacks {', '.join(missing)}")
    if files:
        notes.append(f"files differ from the record: {files}")
    return notes


def _mb(n: Any) -> str:
    return UNKNOWN if not isinstance(n, (int, float)) else f"{n / 1e6:.1f} MB"


def _v(value: Any) -> Any:
    return UNKNOWN if value is None else value


def describe(m: dict[str, Any], path: Path, missing: list[str] | None = None, files: str | None = None,
             verified: bool = False) -> str:
    """A short human summary of a manifest; absent fields show as '?' and are named on a 'missing' line."""
    missing = missing_manifest_fields(m) if missing is None else missing
    base = m.get("base_model") if isinstance(m.get("base_model"), dict) else {}
    raw_params = m.get("params") if isinstance(m.get("params"), dict) else {}
    params = {k: v for k, v in raw_params.items() if k != "method"}
    lines = [
        f"artifact   {path}",
        f"method     {_v(m.get('method'))} ({_v(m.get('kind'))}) "
        + " ".join(f"{k}={v}" for k, v in sorted(params.items())),
        f"base       {_v(base.get('name'))} [{_v(base.get('architecture'))}] sha256:{_v(base.get('weights_sha256'))}",
    ]
    calib = m.get("calibration")
    if isinstance(calib, dict):
        token_hash = str(calib.get("token_ids_sha256") or UNKNOWN)[:16]
        lines.append(f"calib      {_v(calib.get('source'))} {_v(calib.get('samples'))}x{_v(calib.get('seqlen'))} "
                     f"tokens, seed {_v(calib.get('seed'))}{', chat template' if calib.get('chat_template') else ''}, "
                     f"token ids sha256:{token_hash}")
    sparsity = m.get("sparsity")
    if isinstance(sparsity, dict) and isinstance(sparsity.get("overall"), (int, float)):
        per = list((sparsity.get("per_layer") or {}).values())
        layers = f" (layers {min(per):.4f}..{max(per):.4f})" if per else ""
        text = f"sparsity   {sparsity['overall']:.4f} overall{layers}"
        if "nm_valid" in sparsity:
            text += f", {raw_params.get('pattern')} valid: {'yes' if sparsity['nm_valid'] else 'NO'}"
        lines.append(text)
    fmt = m.get("quantized_format") if isinstance(m.get("quantized_format"), dict) else None
    if fmt:
        lines.append(f"format     weights {_v(fmt.get('weights'))}; activations {_v(fmt.get('activations'))}")
        lines.append(f"runtime    {_v(fmt.get('runtime'))}")
    engine = m.get("engine") if isinstance(m.get("engine"), dict) else {}
    if isinstance(engine.get("tensor_types"), dict) and engine["tensor_types"]:
        lines.append("tensors    " + ", ".join(f"{k} x{v}" for k, v in engine["tensor_types"].items()))
    storage = m.get("storage") if isinstance(m.get("storage"), dict) else {}
    lines.append(f"storage    {_v(storage.get('effective_bits_per_weight'))} bits/weight in "
                 f"{_v(storage.get('compressed_layers'))} compressed layers, "
                 f"{_v(storage.get('bits_per_parameter'))} bits/parameter overall")
    lines.append(f"size       {_mb(m.get('weights_size_bytes'))} weights ({_mb(base.get('size_bytes'))} dense, "
                 f"x{_v(m.get('compression_ratio'))}), {_mb(m.get('size_bytes'))} folder")
    peak = m.get("peak_memory") if isinstance(m.get("peak_memory"), dict) else {}
    mem = ", ".join(f"{k} {v:.0f}" for k, v in peak.items() if isinstance(v, (int, float))) or UNKNOWN
    lines.append(f"cost       {_v(m.get('wall_time_s'))} s on {_v(m.get('device'))}; {mem}")
    versions = m.get("library_versions") if isinstance(m.get("library_versions"), dict) else {}
    lines.append("libraries  " + (" ".join(f"{k}={v}" for k, v in versions.items()) or UNKNOWN))
    lines.append(f"key        {_v(m.get('key'))}  (created {_v(m.get('created_utc'))})")
    records = m.get("files")
    if files:
        lines.append(f"files      DIFFER from the record: {files}")
    elif isinstance(records, dict):
        how = "every SHA-256 re-read and as recorded" if verified else "sizes as recorded (--verify re-reads them)"
        lines.append(f"files      {len(records)} recorded, {how}")
    else:
        lines.append("files      not recorded (written by comptrust before files were recorded)")
    if missing:
        lines.append(f"missing    comptrust.json lacks {', '.join(missing)} (shown as '{UNKNOWN}'): written by an "
                     "older or interrupted comptrust, or edited; 'comptrust compress' again rebuilds it")
    return "\n".join(lines)
