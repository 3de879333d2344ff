"""Import layers (docs/architecture.md, "Imports"): every module imports on its own, the light commands
never load torch, and every import of comptrust's own modules inside a function has a listed reason."""

from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import comptrust

SRC = Path(comptrust.__file__).parent
ROOT = Path(__file__).resolve().parents[1]

# Why each remaining in-function import of comptrust's own modules is there, keyed "importer -> imported".
HELP = "keeps `comptrust --help` light (every command module loads to build the parser): "
ALLOWED: dict[str, str] = {
    "comptrust.commands.cache -> comptrust.store.cache": HELP + "sqlite3 and the cache schema load in run()",
    "comptrust.commands.cache -> comptrust.store.repair": HELP + "sqlite3 and the repair code load in run()",
    "comptrust.commands.demo -> comptrust.api": HELP + "api pulls the runner, store and sqlite3",
    "comptrust.commands.compress -> comptrust.compression.pipeline": HELP + "pipeline pulls model resolution",
    "comptrust.commands.demo -> comptrust.compression.pipeline": HELP + "pipeline pulls model resolution",
    "comptrust.commands.demo -> comptrust.models": HELP + "models pulls model resolution, GGUF and dequantization",
    "comptrust.commands.eval -> comptrust.api": HELP + "api pulls the runner, store and sqlite3",
    "comptrust.commands.eval -> comptrust.divergence": HELP + "divergence imports numpy",
    "comptrust.commands.report -> comptrust.report.build": HELP + "the report imports matplotlib, numpy and jinja2",
    "comptrust.commands.score -> comptrust.scoring": HELP + "scoring pulls every perspective's scorer",
    "comptrust.commands.sweep -> comptrust.sweep": HELP + "sweep files are validated with pydantic",
    "comptrust.commands.sweep -> comptrust.sweep.estimate": HELP + "the sweep package imports pydantic",
    "comptrust.commands.sweep -> comptrust.sweep.executors": HELP + "the sweep package imports pydantic",
    "comptrust.commands.sweep -> comptrust.sweep.jobs": HELP + "the sweep package imports pydantic",
    "comptrust.compression.magnitude -> comptrust.compression.measure":
        "measure imports torch; compressor classes are looked up (methods(), --help) without it",
    "comptrust.compression -> comptrust.compression.pipeline":
        "the public compression.compress_model loads pipeline (models, model_files, gguf.tools) on first use, "
        "so the package those modules import stays light and no cycle closes",
    "comptrust.compression.pipeline -> comptrust.compression.measure":
        "measure imports torch; the sweep and the Python API load pipeline without compressing",
}

# What the commands that need no model (--help, report, sweep planning) import: never torch or transformers.
LIGHT_MODULES = ["comptrust.cli", "comptrust.commands.report", "comptrust.commands.sweep", "comptrust.report.build",
                 "comptrust.sweep", "comptrust.sweep.plan", "comptrust.sweep.estimate", "comptrust.sweep.sizes"]
HEAVY = ["torch", "transformers", "llmcompressor", "compressed_tensors", "llama_cpp", "vllm", "ray"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def own_modules() -> list[str]:
    return sorted(module_name(p) for p in SRC.rglob("*.py") if p.name != "__main__.py")


def imported_module(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    """The comptrust modules one import statement loads (``from comptrust import api`` -> comptrust.api)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "comptrust"]
    base = node.module or ""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
    if base.split(".")[0] != "comptrust":
        return []
    folder = SRC.parent / base.replace(".", "/")
    submodules = [f"{base}.{a.name}" for a in node.names
                  if (folder / f"{a.name}.py").is_file() or (folder / a.name / "__init__.py").is_file()]
    return submodules or [base]


@functools.cache
def in_function_imports() -> dict[str, list[str]]:
    """``"importer -> imported"`` -> the ``file:line`` of each such import inside a function body."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        importer = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    for target in imported_module(node, importer, path.name == "__init__.py"):
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        found.setdefault(f"{importer} -> {target}", [])
                        if where not in found[f"{importer} -> {target}"]:
                            found[f"{importer} -> {target}"].append(where)
    return found


def test_every_in_function_import_of_an_own_module_has_a_listed_reason():
    found = in_function_imports()
    unlisted = {k: v for k, v in found.items() if k not in ALLOWED}
    assert not unlisted, (
        "import these at the top of the module, or add them to ALLOWED with the heavy dependency or the "
        f"cycle that keeps them inside the function (docs/architecture.md, 'Imports'): {unlisted}")
    stale = sorted(set(ALLOWED) - set(found))
    assert not stale, f"ALLOWED lists imports that are gone; remove them: {stale}"


def test_the_scan_sees_function_imports_and_ignores_module_level_ones():
    found = in_function_imports()
    assert "comptrust.commands.demo -> comptrust.api" in found  # `from comptrust import api` names the module
    assert "comptrust.compression.pipeline -> comptrust.compression.measure" in found
    assert not any(k.startswith("comptrust.cli ->") for k in found)  # cli's own imports sit at the top


def test_every_module_imports_first_in_a_fresh_comptrust():
    """Each module imported with no other comptrust module loaded: a cycle that breaks only when one of
    its modules comes first fails here.  Third-party packages stay loaded (a cycle is comptrust's own)."""
    code = """
import importlib, json, sys, traceback
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "comptrust" or m.startswith("comptrust.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failures[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failures))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(own_modules())], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


def test_help_report_and_sweep_planning_do_not_import_torch(tmp_path):
    code = f"""
import contextlib, io, json, sys
sys.path.insert(0, {str(ROOT / "tests")!r})
import importlib
from comptrust.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
after_help = [m for m in {HEAVY!r} if m in sys.modules]
for name in {LIGHT_MODULES!r}:
    importlib.import_module(name)
from comptrust.sweep import build_plan, load_sweep
build_plan(load_sweep({str(ROOT / "examples/sweeps/smollm2-cpu.yaml")!r}), out={str(tmp_path / "sweep")!r})
from pathlib import Path
from report_fakes import compressed_model, dense_model, write_run
dense = write_run(Path({str(tmp_path)!r}), "dense", dense_model(), {{"mmlu": 50.0, "toxicity": 60.0}})
rtn = write_run(Path({str(tmp_path)!r}), "rtn", compressed_model("rtn"), {{"mmlu": 45.0, "toxicity": 58.0}})
code = main(["report", str(dense), str(rtn), "--out", {str(tmp_path / "report")!r}, "--quiet"])
print(json.dumps({{"help": after_help, "all": [m for m in {HEAVY!r} if m in sys.modules], "report": code}}))
"""
    env = {**os.environ, "COMPTRUST_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(SRC.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"help": [], "all": [], "report": 0}
    assert (tmp_path / "report" / "report.html").is_file()
