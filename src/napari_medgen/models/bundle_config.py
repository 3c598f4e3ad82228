"""Read a MONAI bundle's config files as data: references resolved, nothing evaluated.

MONAI's ``ConfigParser`` evaluates ``$`` strings with ``eval`` and imports any ``_target_``; a bundle
config is code. This reader resolves what the project needs and refuses everything else:

* ``@id`` references (paths ``a::b::0``, or ``a#b#0``) and ``%file#id`` macros (a file inside the
  bundle folder) become the values they point to; cycles are refused.
* A mapping with ``_target_`` becomes a :class:`Component` only when the target is on the caller's
  allow-list (MONAI networks, schedulers, inferers); its arguments resolve to plain JSON values.
  ``_requires_`` may name only wiring lines this reader recognises (weight loading, timesteps);
  ``_disabled_`` true and ``_mode_`` other than ``default`` are refused.
* ``$`` strings are matched against the few wiring patterns the model zoo uses
  (:mod:`.bundle_wiring`); any other expression is refused with its text and key.
* Files: JSON, or YAML with the safe loader and no anchors/aliases (alias bombs); YAML tags beyond
  the standard scalars are refused by the safe loader; files larger than MAX_FILE_BYTES are refused.

Entries the project does not ask for (savers, transforms, output folders, ``imports``) are never
read, so nothing in them runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ModelError
from .bundle_wiring import Component, ConfigRefused, Wiring, recognise

MAX_FILE_BYTES = 4 * 2**20
CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
COMMON_NAMES = ("common.json", "common.yaml", "common.yml")
_SPLIT = re.compile(r"::|#")
# old MONAI-Generative argument names -> MONAI's, applied only where the class lacks the old name
RENAMED = {"num_channels": "channels", "use_checkpointing": "use_checkpoint"}


@dataclass(frozen=True)
class ConditionField:
    """One named conditioning value a bundle defines: ``key`` (config id), ``label`` (metadata name),
    ``default``, and either a numeric range [low, high] or ``choices``; ``special``: words a numeric
    field takes besides its range (MAISI's anatomy sizes: "auto", "absent")."""

    key: str
    label: str
    default: float | str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    special: tuple[str, ...] = ()


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases (no alias bombs, no shared nodes)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.YAMLError("YAML anchors and aliases (&name, *name) are not read")
        return super().compose_node(parent, index)


def read_file(path: Path) -> Any:
    """A JSON or YAML file's data; ConfigRefused (naming the file and the construct) otherwise."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigRefused(f"Bundle config '{path}' is larger than {MAX_FILE_BYTES // 2**20} MiB; it is not read.")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.constructor.ConstructorError as exc:
        raise ConfigRefused(f"Bundle config '{path}' holds a YAML tag napari-medgen does not read "
                            f"({str(exc.problem)[:120]}); tags can make objects, so the file is refused.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise ConfigRefused(f"Bundle config '{path}' cannot be read: {str(exc).splitlines()[0][:200]}") from None


class BundleConfig:
    """The merged config (``common.*`` then ``inference.*``) of a bundle folder, resolved on demand.

    allowed: {class name: class} of ``_target_`` classes that may be built; a target may be the bare
    name or a dotted path ending in it under one of ``prefixes``. overrides: {id: plain value} set over
    the files' values, as ``monai.bundle run --id value`` does.
    """

    def __init__(self, folder: Path, allowed: dict[str, type], prefixes: tuple[str, ...],
                 overrides: dict[str, Any] | None = None) -> None:
        self.folder = folder
        configs = folder / "configs"
        main = next((configs / n for n in CONFIG_NAMES if (configs / n).is_file()), None)
        if main is None:
            raise ModelError(f"'{folder}' is not a MONAI bundle: configs/inference.json (or .yaml) is missing.")
        self.path = main
        self.data: dict[str, Any] = {}
        self.where: dict[str, Path] = {}
        for p in [*(configs / n for n in COMMON_NAMES if (configs / n).is_file()), main]:
            data = read_file(p)
            if not isinstance(data, dict):
                raise ConfigRefused(f"Bundle config '{p}' must hold a mapping of keys, not {type(data).__name__}.")
            self.data.update(data)
            self.where.update({str(k): p for k in data})
        for id_, value in (overrides or {}).items():
            self._override(id_, value)
        self.allowed, self.prefixes = allowed, prefixes
        self._resolving: list[str] = []
        self._cache: dict[str, Any] = {}

    def __contains__(self, id_: str) -> bool:
        try:
            self.raw(id_)
        except ModelError:
            return False
        return True

    def file_of(self, id_: str) -> Path:
        return self.where.get(_SPLIT.split(id_)[0], self.path)

    def raw(self, id_: str, data: Any = None) -> Any:
        """The unresolved value at ``id_`` (``a::b::0``) in ``data`` (default: the config)."""
        node = self.data if data is None else data
        for part in _SPLIT.split(id_):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
                node = node[int(part)]
            else:
                raise ModelError(f"Bundle config '{self.file_of(id_)}' has no entry '{id_}'.")
        return node

    def _override(self, id_: str, value: Any) -> None:
        *parents, last = _SPLIT.split(id_)
        node = self.raw("::".join(parents)) if parents else self.data
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ModelError(f"Bundle override '{id_}' does not name an entry of '{self.path}'.")

    def entries(self) -> Iterator[tuple[str, Any]]:
        """(id, raw value) of the top-level entries."""
        return iter(self.data.items())

    def get(self, id_: str) -> Any:
        """The resolved value of ``id_``: plain values, Components and wiring objects; refusals raise."""
        if id_ in self._cache:
            return self._cache[id_]
        if id_ in self._resolving:
            raise ConfigRefused(f"Bundle config '{self.file_of(id_)}': '{id_}' refers to itself "
                                f"({' -> '.join([*self._resolving, id_])}).")
        self._resolving.append(id_)
        try:
            value = self.resolve(self.raw(id_), id_)
        finally:
            self._resolving.pop()
        self._cache[id_] = value
        return value

    def resolve(self, value: Any, id_: str) -> Any:
        """Resolve a raw value found at ``id_``."""
        if isinstance(value, str):
            if value.startswith("@"):
                return self.get(value[1:])
            if value.startswith("%"):
                return self.resolve(self._macro(value, id_), id_)
            if value.startswith("$"):
                return recognise(self, value[1:], id_)
            return value
        if isinstance(value, list):
            return [self.resolve(v, f"{id_}::{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if "_target_" in value:
                return self._component(value, id_)
            return {k: self.resolve(v, f"{id_}::{k}") for k, v in value.items()}
        if value is None or isinstance(value, (bool, int, float)):
            return value
        raise ConfigRefused(f"Bundle config '{self.file_of(id_)}': '{id_}' is a {type(value).__name__}, "
                            "not a plain value.")

    def _macro(self, value: str, id_: str) -> Any:
        """The raw value a ``%file#id`` macro copies in (the file must lie inside the bundle folder)."""
        file, _, inner = value[1:].partition("#")
        path = (self.folder / file).resolve() if file else self.file_of(id_)
        root = self.folder.resolve()
        if root not in path.parents or not path.is_file():
            raise ConfigRefused(f"Bundle config '{self.file_of(id_)}': '{id_}' copies '{value[:80]}' from a file that "
                                f"is not inside the bundle folder '{self.folder}'.")
        data = read_file(path)
        return self.raw(inner, data) if inner else data

    def _component(self, entry: dict[str, Any], id_: str) -> Component:
        where = self.file_of(id_)
        target = entry["_target_"]
        name = target.rsplit(".", 1)[-1] if isinstance(target, str) else ""
        ok = isinstance(target, str) and name in self.allowed and (
            target == name or any(target == p + name for p in self.prefixes))
        if not ok:
            raise ConfigRefused(f"Bundle config '{where}': '{id_}._target_' is '{str(target)[:80]}', which is not "
                                f"allowed; napari-medgen builds only MONAI's {', '.join(sorted(self.allowed))}.")
        if entry.get("_disabled_") not in (None, False, "false", "False"):
            raise ConfigRefused(f"Bundle config '{where}': '{id_}' is marked '_disabled_'; napari-medgen needs it.")
        if entry.get("_mode_", "default") != "default":
            raise ConfigRefused(f"Bundle config '{where}': '{id_}._mode_' is '{entry['_mode_']}'; napari-medgen "
                                "builds objects only (mode 'default'), never callables.")
        requires = entry.get("_requires_", [])
        for i, req in enumerate(requires if isinstance(requires, list) else [requires]):
            self._check_required(req, f"{id_}::_requires_::{i}")
        return Component(id_, name, self.allowed[name], entry)

    def _check_required(self, req: Any, id_: str) -> None:
        """A ``_requires_`` item must be a wiring line the project does itself (loading weights, timesteps)."""
        try:
            value = self.resolve(req, id_)
        except ConfigRefused as exc:
            raise ConfigRefused(f"Bundle config '{self.file_of(id_)}': '{id_}' would run '{str(req)[:80]}': "
                                f"{str(exc).split(': ', 1)[-1]}") from None
        if not isinstance(value, Wiring):
            raise ConfigRefused(f"Bundle config '{self.file_of(id_)}': '{id_}' is '{str(req)[:80]}', which "
                                "'_requires_' would run; napari-medgen runs only the wiring it recognises "
                                "(weight loading, timesteps).")

    def arguments(self, comp: Component) -> dict[str, Any]:
        """A component's constructor arguments as plain JSON values (old MONAI-Generative names renamed
        where the class lacks them). ConfigRefused when an argument is not a plain value."""
        import inspect

        params = inspect.signature(comp.cls).parameters
        out: dict[str, Any] = {}
        for k, v in comp.raw.items():
            if k.startswith("_") and k.endswith("_"):
                continue  # _target_, _requires_ (checked), _desc_
            value = self.resolve(v, f"{comp.id}::{k}")
            if not _is_plain(value):
                raise ConfigRefused(f"Bundle config '{self.file_of(comp.id)}': '{comp.id}::{k}' is not a plain value "
                                    f"({str(v)[:80]}); napari-medgen reads only numbers, strings and lists here.")
            out[RENAMED[k] if k in RENAMED and k not in params else k] = value
        return out


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False
