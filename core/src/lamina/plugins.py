"""Finding engines: Lamina's own loop over the `lamina.engines` entry points.

Not pluggy's `load_setuptools_entrypoints`, which silently drops a second distribution claiming the
same name and aborts everything on one ImportError. Here one broken plugin is reported and skipped,
a duplicate engine name is an error naming both distributions, `LAMINA_DISABLE_PLUGINS` blocks by
name, and `check_pending()` catches misspelled hooks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import attrs
import pluggy

from lamina import hookspecs
from lamina.engine import API_VERSION, Engine
from lamina.errors import DuplicateEngineError, PluginError, UnknownEngineError
from lamina.log import get_logger

GROUP = "lamina.engines"
log = get_logger(component="plugins")


@attrs.frozen
class LoadProblem:
    plugin: str
    distribution: str
    error: str


class _Defaults:
    """The engines' own answers to the override hooks, registered last-resort (`trylast`)."""

    @hookspecs.hookimpl(trylast=True)
    def lamina_block_schema(self, engine: Engine, dataset: str) -> Any:
        return engine.schema

    @hookspecs.hookimpl(trylast=True)
    def lamina_file_layout(self, engine: Engine) -> Any:
        return engine.layout


class Registry:
    """The plugin manager plus the engines it registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(_Defaults(), name="lamina.defaults")
        self.engines: dict[str, Engine] = {}
        self.sources: dict[str, str] = {}
        self.problems: list[LoadProblem] = []
        self.plugin_dists: dict[str, str] = {}

    def register_plugin(self, plugin: ModuleType | object, name: str, distribution: str = "<local>") -> None:
        """Register one plugin object and collect the engines it provides."""
        self.pm.register(plugin, name=name)
        self.plugin_dists[name] = distribution
        collected: list[Engine] = []
        impls = [i for i in self.pm.hook.lamina_register_engines.get_hookimpls() if i.plugin is plugin]
        for impl in impls:
            impl.function(register=collected.append)
        for engine in collected:
            self._add_engine(engine, distribution)

    def _add_engine(self, engine: Engine, distribution: str) -> None:
        if not isinstance(engine, Engine):
            raise PluginError(f"{distribution} registered {engine!r}, which is not a lamina.Engine")
        if engine.api_version != API_VERSION:
            raise PluginError(
                f"engine {engine.name!r} from {distribution} targets engine API {engine.api_version}, "
                f"this Lamina provides API {API_VERSION}; upgrade one of them"
            )
        if engine.name in self.engines:
            raise DuplicateEngineError(engine.name, self.sources[engine.name], distribution)
        self.engines[engine.name] = engine
        self.sources[engine.name] = distribution

    def load_entry_points(self, eps: Iterable[EntryPoint] | None = None) -> None:
        blocked = {b.strip() for b in os.environ.get("LAMINA_DISABLE_PLUGINS", "").split(",") if b.strip()}
        for ep in sorted(eps if eps is not None else entry_points(group=GROUP), key=lambda e: e.name):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
            if ep.name in blocked:
                self.pm.set_blocked(ep.name)
                log.info("plugin {} blocked by LAMINA_DISABLE_PLUGINS", ep.name)
                continue
            if ep.name in self.plugin_dists:
                raise DuplicateEngineError(ep.name, self.plugin_dists[ep.name], dist)
            try:
                module = ep.load()
                self.register_plugin(module, ep.name, dist)
            except DuplicateEngineError:
                raise
            except Exception as e:  # one broken plugin must not take the others down
                if self.pm.has_plugin(ep.name):
                    self.pm.unregister(name=ep.name)
                self.problems.append(LoadProblem(ep.name, dist, f"{type(e).__name__}: {e}"))
                log.opt(exception=e).error("plugin {} from {} failed to load and was skipped", ep.name, dist)
        self.pm.check_pending()

    def engine(self, name: str) -> Engine:
        try:
            return self.engines[name]
        except KeyError:
            raise UnknownEngineError(name, list(self.engines)) from None


def load_registry() -> Registry:
    reg = Registry()
    reg.load_entry_points()
    return reg
