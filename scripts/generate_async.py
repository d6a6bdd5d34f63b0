"""Generate ``src/arquivo/aio_facades.py``: the async twins of the domain facades.

``AsyncArquivo`` exposes the same methods as ``Arquivo`` as coroutines. Rather than keep
a second copy of every signature by hand, this script writes them from the sync
facades; ``tests/test_async.py`` fails when the generated file is out of date. Run::

    python scripts/generate_async.py
"""

from __future__ import annotations

import inspect
import keyword
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from arquivo.domain.agents import Agents
from arquivo.domain.base import Facade
from arquivo.domain.conversations import Conversations
from arquivo.domain.hitl import HITL
from arquivo.domain.knowledge import Knowledge
from arquivo.domain.metrics import Metrics
from arquivo.domain.preferences import Preferences
from arquivo.domain.retention import Retention
from arquivo.domain.users import Users

TARGET = Path(__file__).resolve().parents[1] / "src" / "arquivo" / "aio_facades.py"
FACADES: list[type[Facade]] = [
    Preferences,
    Conversations,
    Metrics,
    Agents,
    HITL,
    Users,
    Retention,
    Knowledge,
]
# Methods that are not blocking calls: handed through as they are.
PASS_THROUGH = {("Metrics", "timer"), ("Users", "add_hook"), ("Knowledge", "bulk_load")}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BUILTIN_NAMES = {
    *("None", "int", "str", "float", "bool", "dict", "list", "tuple", "bytes", "object", "type")
}


def _public_methods(cls: type) -> list[tuple[str, object]]:
    return [
        (name, member)
        for name, member in cls.__dict__.items()
        if not name.startswith("_") and inspect.isfunction(member)
    ]


def _imports_for(annotations: list[str], module: ModuleType, imports: dict[str, set[str]]) -> None:
    for text in annotations:
        for name in _NAME.findall(text):
            if name in _BUILTIN_NAMES or keyword.iskeyword(name):
                continue
            obj = getattr(module, name, None)
            if obj is None:
                raise SystemExit(f"cannot resolve {name!r} used in {module.__name__}")
            source = getattr(obj, "__module__", None) or module.__name__
            if source == "builtins":
                continue
            if inspect.ismodule(obj):
                imports.setdefault("", set()).add(obj.__name__)
            else:
                imports.setdefault(source, set()).add(name)


def _render_parameters(params: list[inspect.Parameter]) -> str:
    parts = ["self"]
    star_done = False
    for p in params:
        annotation = "" if p.annotation is p.empty else f": {p.annotation}"
        default = "" if p.default is p.empty else f" = {p.default!r}"
        if p.kind is p.VAR_POSITIONAL:
            parts.append(f"*{p.name}{annotation}")
            star_done = True
        elif p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}{annotation}")
        else:
            if p.kind is p.KEYWORD_ONLY and not star_done:
                parts.append("*")
                star_done = True
            parts.append(f"{p.name}{annotation}{default}")
    return ", ".join(parts)


def _call_arguments(params: list[inspect.Parameter]) -> str:
    args = []
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            args.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            args.append(f"**{p.name}")
        elif p.kind is p.KEYWORD_ONLY:
            args.append(f"{p.name}={p.name}")
        else:
            args.append(p.name)
    return ", ".join(args)


def _render_method(cls: type, name: str, function: object) -> tuple[str, list[str]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    params = list(signature.parameters.values())[1:]
    annotations = [str(p.annotation) for p in params if p.annotation is not p.empty]
    returns = str(signature.return_annotation)
    annotations.append(returns)
    doc = (inspect.getdoc(function) or name).splitlines()[0].rstrip(".")
    args = _call_arguments(params)
    parameters = _render_parameters(params)
    if (cls.__name__, name) in PASS_THROUGH:
        head = f"    def {name}({parameters}) -> {returns}:"
        body = f"        return self._sync.{name}({args})"
    else:
        head = f"    async def {name}({parameters}) -> {returns}:"
        target = f"self._sync.{name}" + (f", {args}" if args else "")
        body = f"        return await self._run(functools.partial({target}))"
    see = f":meth:`{cls.__module__}.{cls.__name__}.{name}`"
    return "\n".join([head, f'        """{doc}; see {see}."""', body]), annotations


def render() -> str:
    """The full text of the generated module."""
    imports: dict[str, set[str]] = {}
    classes = []
    for cls in FACADES:
        module = sys.modules[cls.__module__]
        imports.setdefault(cls.__module__, set()).add(cls.__name__)
        methods = []
        for name, function in _public_methods(cls):
            text, annotations = _render_method(cls, name, function)
            _imports_for(annotations, module, imports)
            methods.append(text)
        doc = (inspect.getdoc(cls) or "").splitlines()[0].rstrip(".")
        classes.append(
            f"class Async{cls.__name__}:\n"
            f'    """{doc} (async twin of :class:`{cls.__name__}`)."""\n\n'
            f'    __slots__ = ("_run", "_sync")\n\n'
            f"    def __init__(self, sync: {cls.__name__}, run: Runner) -> None:\n"
            f"        self._sync = sync\n"
            f"        self._run = run\n\n" + "\n\n".join(methods) + "\n"
        )
    import_lines = ["import functools"]
    imports.setdefault("typing", set()).update({"Any", "Protocol", "TypeVar"})
    import_lines += sorted(f"import {m}" for m in imports.pop("", set()))
    import_lines.append("from collections.abc import Awaitable, Callable")
    for module_name in sorted(imports):
        names = ", ".join(sorted(imports[module_name]))
        import_lines.append(f"from {module_name} import {names}")
    names = ", ".join(sorted(f'"Async{cls.__name__}"' for cls in FACADES))
    header = (
        '"""Async twins of the domain facades.\n\n'
        "GENERATED by scripts/generate_async.py from the sync facades: do not edit.\n"
        "Each coroutine runs the sync method in the store's worker threads.\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        + "\n".join(import_lines)
        + "\n\n"
        + f'__all__ = [{names}, "Runner"]\n\n'
        + '_T = TypeVar("_T")\n\n\n'
        + "class Runner(Protocol):\n"
        + '    """Runs a blocking call in a worker thread and awaits its result."""\n\n'
        + "    def __call__(self, call: Callable[[], _T], /) -> Awaitable[_T]: ...\n"
    )
    return header + "\n\n" + "\n\n".join(classes)


def write(target: Path) -> None:
    """Render, then format with ruff exactly as the committed file is."""
    target.write_text(render())
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "-q", "--fix", "--select", "I", str(target)], check=True)
    subprocess.run([*ruff, "format", "-q", str(target)], check=True)


def main(argv: list[str]) -> int:
    """Write the module, or with ``--check`` exit 1 when the committed one is stale."""
    if argv == ["--check"]:
        with tempfile.TemporaryDirectory() as folder:
            fresh = Path(folder) / TARGET.name
            write(fresh)
            if fresh.read_text() != TARGET.read_text():
                print(f"{TARGET} is out of date: run python scripts/generate_async.py")
                return 1
        return 0
    write(TARGET)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
