"""Recognise the few ``$`` wiring expressions of the MONAI model zoo's generative bundles, by pattern.

An expression is parsed (Python's ``ast``, which runs nothing) with each ``@id`` replaced by a name,
and its tree is matched against these shapes; nothing is ever evaluated:

* ``@net.to(@device)`` (also ``.half()``, ``.float()``, ``.eval()``): the component itself;
* ``torch.load(PATH, ...)``: a :class:`WeightFile` (the project loads it with ``weights_only=True``);
  ``@checkpoint['key']``: that entry of the file's dict;
* ``@net.load_state_dict(W)`` / ``@net.load_old_state_dict(W)`` / ``@f(W)`` where ``f`` is
  ``@net.load_old_state_dict if ... else @net.load_state_dict``: a :class:`LoadWeights`;
* ``monai.networks.utils.copy_model_state(@controlnet, @unet.state_dict())``: :class:`CopyState`;
* ``@scheduler.set_timesteps(num_inference_steps=N)``: :class:`SetTimesteps`;
* ``lambda x: @inferer.sample(..., diffusion_model=@net, scheduler=@s)``: :class:`SampleCall`;
* ``torch.tensor([[@a, @b, ...]])`` (any of the chained calls above): a :class:`ConditionVector`;
* arithmetic on numbers and references (``+ - * / //``, unary minus, ``[i]``) and string ``+``
  (paths such as ``@bundle_root + '/models'``): the value.

Everything else raises ConfigRefused with the expression and its key.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ModelError


class ConfigRefused(ModelError):
    """A config construct the reader does not evaluate (the message names it and its file)."""


@dataclass(eq=False)
class Component:
    """An allow-listed ``_target_`` entry: ``name`` (class name), ``cls`` (the class), ``id`` (config
    id), its raw arguments (resolved on demand by ``BundleConfig.arguments``)."""

    id: str
    name: str
    cls: type
    raw: dict[str, Any] = field(repr=False)


class _Config(Protocol):
    """What the matcher needs of a ``bundle_config.BundleConfig``."""

    def get(self, id_: str) -> Any: ...

    def file_of(self, id_: str) -> Any: ...

MAX_EXPRESSION = 2000
_REF = re.compile(r"@([\w]+(?:(?:::|#)\w+)*)")
_PASS_THROUGH = {"to", "half", "float", "eval", "unsqueeze", "squeeze", "cpu", "cuda"}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv}


class Wiring:
    """Base of the recognised wiring lines (the project does their work itself)."""


@dataclass(frozen=True)
class WeightFile(Wiring):
    """``torch.load(path)`` (path relative to the bundle folder as written), optionally its ``key`` entry."""

    path: str
    key: str | None = None


@dataclass(frozen=True)
class LoadFunc(Wiring):
    """``@net.load_state_dict`` or ``load_old_state_dict`` (not yet called)."""

    target: Component


@dataclass(frozen=True)
class LoadWeights(Wiring):
    """Load ``source`` into ``target``."""

    target: Component
    source: WeightFile


@dataclass(frozen=True)
class CopyState(Wiring):
    """Copy ``source``'s weights into ``target`` (MAISI's ControlNet starts from the UNet's)."""

    target: Component
    source: Component


@dataclass(frozen=True)
class SetTimesteps(Wiring):
    scheduler: Component
    steps: int


@dataclass(frozen=True)
class SampleCall(Wiring):
    """A sampling lambda: which network and scheduler the bundle samples with."""

    network: Component | None
    scheduler: Component | None


@dataclass(frozen=True)
class ConditionVector(Wiring):
    """``torch.tensor([[@a, @b, ...]])``: the config ids of the conditioning values, in order."""

    ids: tuple[str, ...]


def recognise(config: _Config, expr: str, id_: str) -> Any:
    """The wiring object or value of ``$expr`` found at ``id_``; ConfigRefused otherwise."""
    refs: dict[str, str] = {}

    def name(m: re.Match[str]) -> str:
        key = f"__ref{len(refs)}"
        refs[key] = m.group(1)
        return key

    text = _REF.sub(name, expr.strip())
    try:
        if len(expr) > MAX_EXPRESSION:
            raise SyntaxError("too long")
        tree = ast.parse(text, mode="eval").body
        return _Matcher(config, refs, id_).match(tree)
    except (_NoMatch, SyntaxError, RecursionError, ValueError):
        raise ConfigRefused(f"Bundle config '{config.file_of(id_)}': '{id_}' is '${expr[:100]}', an expression "
                            "napari-medgen does not evaluate (bundle configs are code); only the model zoo's wiring "
                            "patterns and plain values are read.") from None


class _NoMatch(Exception):
    pass


class _Matcher:
    def __init__(self, config: _Config, refs: dict[str, str], id_: str) -> None:
        self.config, self.refs, self.id = config, refs, id_

    def ref(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name) and node.id in self.refs:
            return self.config.get(self.refs[node.id])
        raise _NoMatch

    def component(self, node: ast.AST) -> Component:
        value = self.match(node)
        if not isinstance(value, Component):
            raise _NoMatch
        return value

    def match(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return self.ref(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.match(e) for e in node.elts]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -_number(self.match(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            return _arith(type(node.op), self.match(node.left), self.match(node.right))
        if isinstance(node, ast.Subscript):
            return self.subscript(self.match(node.value), node.slice)
        if isinstance(node, ast.Attribute) and node.attr in ("load_state_dict", "load_old_state_dict"):
            return LoadFunc(self.component(node.value))
        if isinstance(node, ast.IfExp):
            body, other = self.match(node.body), self.match(node.orelse)  # the test is never looked at
            if isinstance(body, LoadFunc) and body == other:
                return body
            raise _NoMatch
        if isinstance(node, ast.Lambda):
            return self.sample_call(node.body)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise _NoMatch

    def subscript(self, value: Any, index: ast.AST) -> Any:
        if not isinstance(index, ast.Constant):
            raise _NoMatch
        key = index.value
        if isinstance(value, WeightFile) and value.key is None and isinstance(key, str):
            return WeightFile(value.path, key)
        if isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
            return value[key]
        if isinstance(value, dict) and isinstance(key, str) and key in value:
            return value[key]
        raise _NoMatch

    def call(self, node: ast.Call) -> Any:
        func, args = node.func, node.args
        dotted = _dotted(func)
        if dotted == "torch.load" and args:
            path = self.match(args[0])
            if isinstance(path, str):
                return WeightFile(path)
        elif dotted == "torch.tensor" and len(args) == 1:
            return ConditionVector(tuple(self.refs[n.id] for n in _flat_names(args[0], self.refs)))
        elif dotted == "monai.networks.utils.copy_model_state" and len(args) == 2:
            src = args[1]
            if isinstance(src, ast.Call) and isinstance(src.func, ast.Attribute) and src.func.attr == "state_dict":
                return CopyState(self.component(args[0]), self.component(src.func.value))
        elif isinstance(func, ast.Attribute) and func.attr in _PASS_THROUGH:
            return self.match(func.value)  # device moves, casts and reshapes: the project places things itself
        elif isinstance(func, ast.Attribute) and func.attr == "set_timesteps":
            steps = _keyword(node, "num_inference_steps") or (args[0] if args else None)
            value = self.match(steps) if steps is not None else None
            if isinstance(value, int) and not isinstance(value, bool):
                return SetTimesteps(self.component(func.value), value)
        else:
            load = self.match(func)
            if isinstance(load, LoadFunc) and args:
                source = self.match(args[0])
                if isinstance(source, WeightFile):
                    return LoadWeights(load.target, source)
        raise _NoMatch

    def sample_call(self, body: ast.AST) -> SampleCall:
        if not (isinstance(body, ast.Call) and isinstance(body.func, ast.Attribute) and body.func.attr == "sample"):
            raise _NoMatch
        self.ref(body.func.value)  # the inferer must itself be an allowed component
        net, sched = _keyword(body, "diffusion_model"), _keyword(body, "scheduler")
        return SampleCall(self.component(net) if net is not None else None,
                          self.component(sched) if sched is not None else None)


def _keyword(node: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and not node.id.startswith("__ref"):
        return ".".join([node.id, *reversed(parts)])
    return None


def _flat_names(node: ast.AST, refs: dict[str, str]) -> list[ast.Name]:
    """The reference names of a (nested) list of references; _NoMatch for anything else."""
    if isinstance(node, ast.Name) and node.id in refs:
        return [node]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [n for e in node.elts for n in _flat_names(e, refs)]
    raise _NoMatch


def _number(v: Any) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _NoMatch
    return v


def _arith(op: type, a: Any, b: Any) -> Any:
    if op is ast.Add and isinstance(a, str) and isinstance(b, str):
        return a + b
    a, b = _number(a), _number(b)
    if op in (ast.Div, ast.FloorDiv) and b == 0:
        raise _NoMatch
    result = _ARITH[op](a, b)
    return _number(result)
