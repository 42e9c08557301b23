"""Entry-point discovery against the installed workspace (the path third parties use)."""

from __future__ import annotations

from importlib.metadata import entry_points

import lamina
from lamina.plugins import load_registry


def test_trace_engine_is_discovered_by_entry_point() -> None:
    eps = {ep.name: ep for ep in entry_points(group="lamina.engines")}
    assert eps["trace"].value == "lamina_trace.plugin"
    reg = load_registry()
    assert "trace" in reg.engines and reg.problems == []
    assert reg.sources["trace"].startswith("lamina-trace ")
    assert reg.engines["trace"].api_version == lamina.API_VERSION


def test_lamina_open_finds_engines_without_configuration(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with lamina.open(str(tmp_path), background=False) as store:
        assert "trace" in store.engines
        tr = store.engine("trace")
        tr.write_rows(
            [
                {
                    "trace_id": b"t",
                    "span_id": b"s",
                    "timestamp": 1,
                    "duration": 2,
                    "payload": b"p",
                    "tags": {"a": 1},
                }
            ]
        )
        tr.flush()
        assert [s.span_id for s in tr.query(trace_ids=[b"t"])] == [b"s"]
