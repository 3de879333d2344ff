"""``comptrust inspect DIR``: what a compressed artifact is and what was measured."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from comptrust.commands._common import common_parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", parents=[common_parser()], help="print a compressed artifact's manifest")
    p.add_argument("dir", metavar="DIR", help="folder written by 'comptrust compress'")
    p.add_argument("--json", action="store_true", help="the raw comptrust.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from comptrust.compression import load_manifest

    manifest = load_manifest(args.dir)
    print(json.dumps(manifest, indent=2, sort_keys=True) if args.json else describe(manifest, Path(args.dir)))
    return 0


def _mb(n: Any) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def describe(m: dict[str, Any], path: Path) -> str:
    """A short human summary of a manifest."""
    base = m.get("base_model", {})
    params = {k: v for k, v in m.get("params", {}).items() if k != "method"}
    lines = [
        f"artifact   {path}",
        f"method     {m['method']} ({m.get('kind')}) " + " ".join(f"{k}={v}" for k, v in sorted(params.items())),
        f"base       {base.get('name')} [{base.get('architecture')}] sha256:{base.get('weights_sha256')}",
    ]
    calib = m.get("calibration")
    if calib:
        lines.append(f"calib      {calib['source']} {calib['samples']}x{calib['seqlen']} tokens, seed {calib['seed']}"
                     f"{', chat template' if calib.get('chat_template') else ''}, "
                     f"token ids sha256:{calib['token_ids_sha256'][:16]}")
    sparsity = m.get("sparsity")
    if sparsity:
        per = list(sparsity["per_layer"].values())
        text = f"sparsity   {sparsity['overall']:.4f} overall (layers {min(per):.4f}..{max(per):.4f})"
        if "nm_valid" in sparsity:
            text += f", {m['params'].get('pattern')} valid: {'yes' if sparsity['nm_valid'] else 'NO'}"
        lines.append(text)
    fmt = m.get("quantized_format")
    if fmt:
        lines.append(f"format     weights {fmt.get('weights')}; activations {fmt.get('activations')}")
        lines.append(f"runtime    {fmt.get('runtime')}")
    engine = m.get("engine") or {}
    if engine.get("tensor_types"):
        lines.append("tensors    " + ", ".join(f"{k} x{v}" for k, v in engine["tensor_types"].items()))
    storage = m.get("storage", {})
    lines.append(f"storage    {storage.get('effective_bits_per_weight')} bits/weight in "
                 f"{storage.get('compressed_layers')} compressed layers, "
                 f"{storage.get('bits_per_parameter')} bits/parameter overall")
    lines.append(f"size       {_mb(m.get('weights_size_bytes'))} weights ({_mb(base.get('size_bytes'))} dense, "
                 f"x{m.get('compression_ratio')}), {_mb(m.get('size_bytes'))} folder")
    peak = m.get("peak_memory", {})
    mem = ", ".join(f"{k} {v:.0f}" for k, v in peak.items())
    lines.append(f"cost       {m.get('wall_time_s')} s on {m.get('device')}; {mem}")
    versions = m.get("library_versions", {})
    lines.append("libraries  " + " ".join(f"{k}={v}" for k, v in versions.items()))
    lines.append(f"key        {m.get('key')}  (created {m.get('created_utc')})")
    return "\n".join(lines)
