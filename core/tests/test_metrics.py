from __future__ import annotations

import posixpath

from prometheus_client import CollectorRegistry

from lamina.io.sim import SimFS
from lamina.metrics import LaminaCollector
from lamina.testing.kv import kv_batch, open_kv_store


def test_collector_exports_corrupt_parts_flushes_and_fsyncs_without_global_registry() -> None:
    fs = SimFS()
    s = open_kv_store("/db", fs=fs)
    kv = s.engine("kv")
    for i in range(2):
        kv.write(kv_batch([b"k%d" % i], [i]))
        kv.flush()
    t = kv.tables()[0]
    victim = t.live_parts[0]
    s.close()
    fs.truncate(posixpath.join(t.path, victim.name, "values.bin"), 1)
    s = open_kv_store("/db", fs=fs)
    s.engine("kv")
    reg = CollectorRegistry()  # a private registry: nothing is registered globally
    reg.register(LaminaCollector(s))
    assert (
        reg.get_sample_value(
            "lamina_corrupt_parts_total", {"engine": "kv", "stage": "open", "reason": "size_mismatch"}
        )
        == 1
    )
    assert reg.get_sample_value("lamina_quarantined_parts", {"engine": "kv"}) == 1
    assert reg.get_sample_value("lamina_quarantined_bytes", {"engine": "kv"}) > 0
    assert reg.get_sample_value("lamina_parts", {"engine": "kv"}) == 1
    assert reg.get_sample_value("lamina_fsyncs_total", {"kind": "data"}) > 0
    # a second store in the same process registers fine (no duplicated timeseries)
    s2 = open_kv_store("/db2", fs=fs)
    CollectorRegistry().register(LaminaCollector(s2))
    s.close()
    s2.close()
