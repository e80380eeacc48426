"""The house rules of the layout, checked: one room per concern, no cycles, paths that work."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dgviz"

# What only dgviz/recording/ may touch: the libraries' private modules and the private helpers
# their loops call (which the recorder wraps).
PRIVATE = re.compile(
    r"\b(generation_diffusion_gemma|modeling_diffusion_gemma|pipeline_diffusion_gemma"
    r"|_prepare_sampler|_denoising_step|_prepare_denoiser_inputs|_finalize_canvas"
    r"|_prepare_diffusion_stopping_criteria|_prepare_inputs|step_correct"
    r"|pipeline_llada2|_prepare_input_ids|_top_k_filtering|_top_p_filtering)\b"
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _top_level_imports(name: str, path: Path) -> set[str]:
    """dgviz modules imported when ``name`` is imported (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dgviz")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.startswith("dgviz"):
                found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names}
    return found


def test_only_recording_touches_private_internals():
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
                 *(ROOT / "scripts").glob("*.py")]:
        if PACKAGE / "recording" in path.parents:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "private transformers/diffusers internals outside dgviz/recording/:\n" \
        + "\n".join(offenders)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {m for m in _top_level_imports(name, path) if m in modules and m != name}
             for name, path in modules.items()}
    # a package imports its submodules' names through its __init__: that is not a cycle
    done, stack = set(), []

    def visit(node):
        if node in stack:
            cycle = [*stack[stack.index(node):], node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph[node]):
            if not node.startswith(nxt + "."):  # a submodule importing its own package
                visit(nxt)
        stack.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def test_the_trace_imports_no_view():
    for name in ("dgviz.trace", "dgviz.payload"):
        imported = _top_level_imports(name, _modules()[name])
        views = {m for m in imported
                 if m.split(".")[1:2] in (["widget"], ["html"], ["plots"], ["comparison"])}
        assert not views, f"{name} imports views at module level: {views}"


def test_import_dgviz_loads_only_what_a_trace_needs(tmp_path):
    code = (
        "import sys, dgviz\n"
        "dgviz.load_trace, dgviz.Trace, dgviz.TraceFormatError\n"
        "heavy = [m for m in ('torch', 'transformers', 'plotly', 'anywidget', 'ipywidgets',"
        " 'pandas') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_public_function_shadows_its_module():
    import dgviz

    for name in dir(dgviz):
        if name.startswith("_"):
            continue
        value = getattr(dgviz, name)
        module = f"dgviz.{name}"
        if importlib.util.find_spec(module) is not None:
            assert type(value).__name__ == "module", f"dgviz.{name} hides the module {module}"


def _documented_paths() -> set[str]:
    """Dotted ``dgviz.…`` names and ``from dgviz… import …`` lines in the docs' code."""
    texts = [p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        texts += ["".join(c["source"]) for c in cells]
    paths = set()
    for text in texts:
        for module, names in re.findall(r"from (dgviz[\w.]*) import (\([^)]*\)|[^\n#]+)", text):
            for name in names.strip("()").replace("\n", ",").split(","):
                if name.split():
                    paths.add(f"{module}.{name.split()[0]}")
        paths |= set(re.findall(r"import (dgviz[\w.]*)", text))
        paths |= set(re.findall(r"(?<![\w/.-])(dgviz(?:\.[A-Za-z_]\w*)+)(?![\w-])", text))
        paths |= set(re.findall(r"^::: (dgviz[\w.]*)", text, flags=re.M))
    return paths


def _resolve(path: str):
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(path)


def test_documented_import_paths_work():
    paths = _documented_paths()
    assert len(paths) > 30, sorted(paths)  # the scan found the docs' names
    broken = []
    for path in sorted(paths):
        try:
            _resolve(path)
        except (ImportError, AttributeError) as err:
            broken.append(f"{path}: {err}")
    assert not broken, "documented names that do not resolve:\n" + "\n".join(broken)
