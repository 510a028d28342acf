"""The layers of ARCHITECTURE.md, pinned: an AST walk over src/ that fails on an upward import.

Every import counts, at the top of a module or inside a function (a lazy import is still a
dependency) and under ``if TYPE_CHECKING``. A module may import from its own group and from any
lower layer; groups of the same layer (the front doors) never import each other. A module that is
in no group fails the test too: put a new module in the layer it belongs to, here and in
ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Bottom to top. Each layer holds groups (tuples of module-name prefixes).
LAYERS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("core shapes", (("kingpost._version", "kingpost.types", "kingpost.errors", "kingpost.defaults",
                      "kingpost.stats", "kingpost._yaml", "kingpost.codecs", "kingpost.concurrency"),)),
    ("bundle on disk", (("kingpost.config", "kingpost.limits", "kingpost.secrets", "kingpost.requirements",
                         "kingpost.custom_server",
                         "kingpost.codecs_v2",  # V2 tensors, checked against a bundle's signature
                         "kingpost.unsupported", "kingpost.truss_config", "kingpost.environment"),)),
    ("weights (fetched into the cache)", (("kingpost.weights",),)),
    ("loader", (("kingpost.loader", "kingpost.surface"),)),
    ("runtime", (("kingpost.hooks", "kingpost.predictor", "kingpost.runtime", "kingpost.reloading",
                  "kingpost.calls", "kingpost.disconnect"),)),
    ("async jobs", (("kingpost.jobs",),)),
    ("front doors", (("kingpost.bundle",), ("kingpost.server",), ("kingpost.check",), ("kingpost.scaffold",),
                     ("kingpost.client",))),
    ("isolated environments", (("kingpost.isolated",),)),
    ("container contexts and images", (("kingpost.container",),)),
    ("authoring (kingpost.create)", (("kingpost.frameworks",),)),
    ("deploy", (("kingpost.deploy",),)),
    ("the package face", (("kingpost",),)),
    ("the command line", (("kingpost.cli", "kingpost.__main__", "kingpost._progress"),)),
)


def _modules() -> dict[str, Path]:
    found = {}
    for file in sorted((SRC / "kingpost").rglob("*.py")):
        parts = list(file.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = file
    return found


MODULES = _modules()


def _place(module: str) -> tuple[int, int] | None:
    """(layer, group) of a module: the longest prefix that names it wins."""
    best: tuple[int, int, int] | None = None
    for layer, (_, groups) in enumerate(LAYERS):
        for group, prefixes in enumerate(groups):
            for prefix in prefixes:
                if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[2]):
                    best = (layer, group, len(prefix))
    return None if best is None else best[:2]


def _imports(module: str, file: Path) -> list[tuple[int, str]]:
    """(line, kingpost module) for every import of kingpost code in ``file``."""
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else base))
    return [(line, name) for line, name in found if name == "kingpost" or name.startswith("kingpost.")]


def _violations() -> list[str]:
    problems = []
    for module, file in MODULES.items():
        here = _place(module)
        if here is None:
            problems.append(f"{module}: in no layer; add it to LAYERS (tests/test_layers.py) and ARCHITECTURE.md")
            continue
        for line, target in _imports(module, file):
            there = _place(target)
            where = f"{file.relative_to(SRC.parent)}:{line}"
            if there is None:
                problems.append(f"{where}: imports {target}, which is in no layer")
            elif there[0] > here[0]:
                problems.append(f"{where}: {module} ({LAYERS[here[0]][0]}) imports {target} "
                                f"({LAYERS[there[0]][0]}), a layer above it")
            elif there[0] == here[0] and there[1] != here[1]:
                problems.append(f"{where}: {module} imports {target}, a sibling in the layer "
                                f"{LAYERS[here[0]][0]!r}; siblings do not import each other")
            elif target != "kingpost" and target == module.rpartition(".")[0] and file.name != "__init__.py":
                problems.append(f"{where}: {module} imports from its own package's __init__ ({target}), "
                                "which may import it by name: a hidden cycle")
    return problems


def test_imports_point_down_the_layers() -> None:
    problems = _violations()
    assert not problems, "\n".join(problems)


def test_the_walk_sees_every_module_and_catches_an_upward_import() -> None:
    # The rule has teeth: the runtime importing the server would be reported.
    assert {"kingpost.runtime", "kingpost.server.app", "kingpost.cli", "kingpost"} <= set(MODULES)
    assert _place("kingpost.runtime") < _place("kingpost.server.app")  # type: ignore[operator]
    runtime = _imports("kingpost.runtime", MODULES["kingpost.runtime"])
    assert ("kingpost.loader" in {name for _, name in runtime}) and runtime
