"""Copy a user's function (or class) into generated code: its source, and what its code refers to.

For ``kingpost.create(..., preprocess=fn)`` the function's own source is written into model.py,
together with what it needs from the module it was defined in:

- modules it uses (``np.asarray``)              -> ``import numpy as np``
- functions and classes of installed packages   -> ``from scipy.special import softmax``
- helper functions and classes defined next to it (a notebook, the same file) -> their source, recursively
- constants that Python can write as literals (numbers, strings, lists, dicts of them) -> ``NAME = value``

Anything else it refers to (a fitted object, an open file, an array) cannot be written as code;
that is one BundleError sentence naming the hook and the name. A lambda is written as a ``def``.
Free variables of closures are treated like globals. Names are found from the code objects
(all nested functions and comprehensions included), so an attribute that happens to share a
global's name may add an unused line; harmless.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import sys
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any

from kingpost.errors import BundleError


@dataclass
class Code:
    """Module-level code for a generated file: import lines, constants, definitions."""

    imports: dict[str, str] = field(default_factory=dict)  # bound name -> import line
    constants: dict[str, str] = field(default_factory=dict)  # name -> "NAME = value"
    definitions: dict[str, str] = field(default_factory=dict)  # name -> source of a def/class
    modules: set[str] = field(default_factory=set)  # top-level modules imported (for requirements)
    local_modules: dict[str, types.ModuleType] = field(default_factory=dict)  # not installed: copied to packages/

    def names(self) -> set[str]:
        return set(self.imports) | set(self.constants) | set(self.definitions)


class Copier:
    """Collects the code of several objects into one :class:`Code`, each definition once."""

    def __init__(self, reserved: dict[str, str] | None = None) -> None:
        self.code = Code()
        self._reserved = dict(reserved or {})  # names the template defines -> their import line (or "")
        self._done: dict[int, str] = {}  # id(obj) -> the name it is written under

    def function(self, fn: Any, role: str, *, preferred: str) -> str:
        """Write ``fn`` (a hook) and return the name to call it by.

        A lambda, or a function whose name is taken, is written under ``preferred``.
        """
        if not isinstance(fn, types.FunctionType):
            imported = self._importable(fn)
            if imported is None:
                raise BundleError(f"{role}: expected a function (def or lambda) or an importable callable, "
                                  f"found {_kind(fn)}.")
            module, qualname = imported
            return self._import_from(module, qualname, qualname, role)
        name = fn.__name__
        if name == "<lambda>" or name in self._reserved or name in self.code.names():
            name = preferred
        self._define(fn, name, role)
        return name

    def cls(self, cls: type, role: str) -> str:
        """Write a class defined by the user (with what it refers to); return its name."""
        self._define(cls, cls.__name__, role)
        return cls.__name__

    # -- definitions ------------------------------------------------------------------------------

    def _define(self, obj: Any, name: str, role: str) -> None:
        if id(obj) in self._done:
            return
        self._done[id(obj)] = name
        source, node, written = _source(obj, role)
        if name != written:
            source = _rename(source, written, name)
        self._claim(name, role)
        self.code.definitions[name] = source
        required, annotations = _referenced_names(obj, node)
        for ref in sorted(required):
            self._resolve(obj, ref, role)
        for ref in sorted(annotations - required):
            self._resolve(obj, ref, role, annotation=True)

    def _resolve(self, owner: Any, name: str, role: str, *, annotation: bool = False) -> None:
        """Write what ``name`` means for ``owner``. Names only used in annotations (never evaluated:
        model.py has ``from __future__ import annotations``) are imported when that is easy, else left."""
        found, value = _lookup(owner, name)
        if not found:
            return  # a builtin, a local or an attribute name
        if annotation and not isinstance(value, types.ModuleType) and self._importable(value) is None:
            return
        if isinstance(value, types.ModuleType):
            self._import_module(value, name, role)
        elif isinstance(value, types.FunctionType | type) and _is_user_code(value):
            if value is owner:
                return
            if value.__name__ != name:
                raise BundleError(f"{role}: refers to {value.__name__!r} under another name, {name!r}; kingpost can "
                                  "copy it only under its own name.")
            self._define(value, name, role)
        elif (imported := self._importable(value)) is not None:
            self._import_from(imported[0], imported[1], name, role)
        elif is_literal(value):
            self._claim(name, role)
            self.code.constants[name] = f"{name} = {value!r}"
        else:
            raise BundleError(
                f"{role}: refers to {name!r} ({_kind(value)}), which kingpost cannot write into model.py; "
                "pass it in as a literal, build it inside the function, or save it in data/ and edit load().")

    # -- imports ----------------------------------------------------------------------------------

    def _import_module(self, module: types.ModuleType, name: str, role: str) -> None:
        full = module.__name__
        if name == full:
            line = f"import {full}"
        elif full.endswith("." + name):
            line = f"from {full.rsplit('.', 1)[0]} import {name}"
        else:
            line = f"import {full} as {name}"
        self._add_import(name, line, full, role)

    def _import_from(self, module: str, qualname: str, name: str, role: str) -> str:
        top = qualname.split(".")[0]
        line = f"from {module} import {top}" + (f" as {name}" if "." not in qualname and name != top else "")
        bound = name if "." not in qualname else top
        self._add_import(bound, line, module, role)
        return name if "." not in qualname else qualname

    def _add_import(self, name: str, line: str, module: str, role: str) -> None:
        if self._reserved.get(name, line) != line:
            raise BundleError(f"{role}: uses the name {name!r}, which the generated model.py defines otherwise; "
                              "rename it in your function.")
        if name in self.code.imports and self.code.imports[name] != line:
            raise BundleError(f"{role}: {name!r} means two different things ({self.code.imports[name]!r} and "
                              f"{line!r}); rename one.")
        self.code.imports[name] = line
        top = module.split(".")[0]
        self.code.modules.add(top)
        root = sys.modules.get(top)
        if root is not None and is_local_module(root):
            self.code.local_modules[top] = root

    def _claim(self, name: str, role: str) -> None:
        if name in self._reserved or name in self.code.imports or name in self.code.constants:
            raise BundleError(f"{role}: defines or uses {name!r}, a name the generated model.py already uses; "
                              "rename it in your code.")

    @staticmethod
    def _importable(obj: Any) -> tuple[str, str] | None:
        """``(module, qualname)`` when ``obj`` is found again by importing it (a library function or class)."""
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__" or "<" in qualname:
            return None
        if not is_installed_module(module):
            return None
        try:
            found: Any = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            return None
        return (module, qualname) if found is obj else None


# -- reading source ---------------------------------------------------------------------------------


def _source(obj: Any, role: str) -> tuple[str, ast.AST, str]:
    """The dedented source of a def, class or lambda, its AST node, and the name it defines.

    A lambda becomes ``def _lambda_(...): return ...``, to be renamed by the caller.
    """
    what = f"{role}: cannot read the source of {getattr(obj, '__qualname__', obj)!r}"
    try:
        if getattr(obj, "__name__", "") == "<lambda>":
            return _lambda_source(obj, what)
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError) as exc:
        raise BundleError(f"{what} ({exc}); define it in a file or a notebook cell, not at an interactive prompt.") \
            from exc
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise BundleError(f"{what} as one definition.") from exc
    node = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        raise BundleError(f"{what} as one definition.")
    return source, node, node.name


def _lambda_source(fn: types.FunctionType, what: str) -> tuple[str, ast.AST, str]:
    lines, _ = inspect.findsource(fn)
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError as exc:  # a notebook cell with magics, say
        raise BundleError(f"{what}: its file does not parse; use a def.") from exc
    code = fn.__code__
    candidates = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda) and n.lineno == code.co_firstlineno]
    if len(candidates) > 1:  # several lambdas on one line: pick the one whose body this code object is
        positions = {(line, col) for line, _, col, _ in getattr(code, "co_positions", lambda: ())()
                     if line is not None}
        candidates = [n for n in candidates if (n.body.lineno, n.body.col_offset) in positions]
    if len(candidates) != 1:
        raise BundleError(f"{what}: found {len(candidates)} lambdas on line {code.co_firstlineno}; use a def.")
    node = candidates[0]
    return f"def _lambda_({ast.unparse(node.args)}):\n    return {ast.unparse(node.body)}\n", node, "_lambda_"


def _rename(source: str, old: str, new: str) -> str:
    pattern = re.compile(rf"^((?:async\s+)?def|class)\s+{re.escape(old)}\b", re.MULTILINE)
    return pattern.sub(lambda m: f"{m.group(1)} {new}", source, count=1)


def _referenced_names(obj: Any, node: ast.AST) -> tuple[set[str], set[str]]:
    """Global and free names the object's code uses, plus names in decorators, default values and
    base classes; and, apart, the names in its annotations."""
    names: set[str] = set()
    codes: list[types.CodeType] = []
    if isinstance(obj, type):
        for value in vars(obj).values():
            fn = value.__func__ if isinstance(value, classmethod | staticmethod) else value
            if isinstance(fn, property):
                codes.extend(f.__code__ for f in (fn.fget, fn.fset, fn.fdel) if isinstance(f, types.FunctionType))
            elif isinstance(fn, types.FunctionType):
                codes.append(fn.__code__)
    else:
        codes.append(obj.__code__)
    while codes:
        code = codes.pop()
        names.update(code.co_names, code.co_freevars)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    outer: list[ast.AST] = []
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        outer.extend(node.decorator_list)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        outer.extend(d for d in (*node.args.defaults, *node.args.kw_defaults) if d is not None)
    if isinstance(node, ast.ClassDef):
        outer.extend(node.bases)
    for expr in outer:
        names.update(n.id for n in ast.walk(expr) if isinstance(n, ast.Name))
    annotations: set[str] = set()
    for child in ast.walk(node):
        annotation: ast.expr | None = None
        if isinstance(child, ast.arg | ast.AnnAssign):
            annotation = child.annotation
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            annotation = child.returns
        if annotation is not None:
            annotations.update(n.id for n in ast.walk(annotation) if isinstance(n, ast.Name))
    return names, annotations


def _lookup(owner: Any, name: str) -> tuple[bool, Any]:
    """What ``name`` means where ``owner`` was defined: a closure cell, else a module global."""
    fn = owner if isinstance(owner, types.FunctionType) else None
    if fn is not None and fn.__closure__ and name in fn.__code__.co_freevars:
        cell = fn.__closure__[fn.__code__.co_freevars.index(name)]
        try:
            return True, cell.cell_contents
        except ValueError:
            return False, None
    module_globals = fn.__globals__ if fn is not None else vars(sys.modules.get(owner.__module__, builtins))
    if name in module_globals and not name.startswith("__"):
        return True, module_globals[name]
    return False, None


def _is_user_code(obj: Any) -> bool:
    """Defined in __main__ or in a module that no installed distribution provides (a notebook, a test file)."""
    module = getattr(obj, "__module__", None)
    return module == "__main__" or (isinstance(module, str) and not is_installed_module(module))


def is_installed_module(module: str) -> bool:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return True
    from kingpost.frameworks._requirements import distributions_of

    return bool(distributions_of(top))


def is_local_module(module: types.ModuleType) -> bool:
    return getattr(module, "__file__", None) is not None and not is_installed_module(module.__name__)


def is_literal(value: Any) -> bool:
    if isinstance(value, bool | int | float | complex | str | bytes | type(None)):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return len(value) <= 10_000 and all(is_literal(v) for v in value)
    if isinstance(value, dict):
        return len(value) <= 10_000 and all(is_literal(k) and is_literal(v) for k, v in value.items())
    return False


def _kind(value: Any) -> str:
    kind = type(value)
    return f"a {kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else f"a {kind.__name__}"
