"""Barrier-mutation score (issue 7 part 2): disable each fsync / directory-fsync site in turn and
require the crash exploration to break an invariant without it.

A site is the first caller outside lamina/io of a data or directory fsync. The exploration runs
the one-op workloads and the store's creation on the kv reference engine, with compound crashes
(during recovery) for every distinct state, and stops at the first violation. Sites listed in
REDUNDANT survive by design; each entry says why, and the test fails if one of them starts being
caught (then it is load-bearing after all and leaves the list) or if any other site survives.
"""

from __future__ import annotations

import time

import pytest

from lamina.testing import figures
from lamina.testing.crash import OPS, Explorer, Profile, Subject, disabled_barrier
from lamina.testing.kv import KV, kv_batch

T0 = 1_700_000_000_000_000_000

#: Barriers whose removal no crash can observe, and why. Recorded, not hidden: the score counts
#: them as survivors.
REDUNDANT: dict[str, str] = {
    "dir@commit.py:prune_manifests": "an old manifest that reappears after a crash is pruned again by the "
    "next open; the newest manifest alone decides what is live",
    "dir@table.py:_free_part": "a retired part whose removal is lost is not in the manifest; the next "
    "open removes it as an uncommitted leftover",
    "dir@store.py:_discover": "a *.dropping segment whose removal is lost is removed again by the next open",
    "dir@store.py:__init__": "masked: creating the first table runs makedirs_durable, which fsyncs "
    "every level of its path including the store root, before any flush can be acknowledged",
    "dir@store.py:_init_dir": "masked the same way (the table's makedirs_durable fsyncs the store "
    "root, making lamina.json's name durable); a lamina.json lost before that is rewritten by the next open",
}


def _subject() -> Subject:
    batches = []
    for p in range(3):
        keys = [b"key-%03d" % i for i in range(p * 6, p * 6 + 12)]
        batches.append(kv_batch(keys, [T0 + p * 1000 + j for j in range(len(keys))]))
    return Subject(KV, batches, lambda h: sorted((r[0], r[1], r[2]) for r in h.query()))


#: CI: process, power, every omission and one random state per crash point, compound crashes for
#: every other distinct state (what caught every load-bearing barrier in the full runs); long mode:
#: torn and more random states, compound crashes everywhere.
PROFILE = (
    Profile(torn=True, random_states=4, omissions=True, compound_every=1, follow_up_every=10**9)
    if figures.LONG
    else Profile(torn=False, random_states=1, omissions=True, compound_every=2, follow_up_every=10**9)
)
WORKLOADS: list[tuple[tuple[str, ...], int]] = [((), -1)] + [((op,), 0) for op in OPS]


def _caught(subject: Subject, site: str) -> str | None:
    with disabled_barrier(site):
        for workload, skip in WORKLOADS:
            report = Explorer(subject, PROFILE).explore(workload, skip=skip, stop_first=True)
            if report.violations:
                return str(report.violations[0])
    return None


#: The sites the store's creation and first flushes (workload "-") catch within seconds: what CI
#: checks every run. The full score, over every site and workload, is the long mode's job (about
#: 13 minutes on 2 loaded cores).
CI_SITES = (
    "data@commit.py:publish",
    "data@commit.py:write_manifest",
    "data@commit.py:write_mem_part",
    "data@store.py:_init_dir",
    "dir@commit.py:publish",
    "dir@commit.py:write_manifest",
    "dir@commit.py:write_mem_part",
)


def test_the_fast_load_bearing_barriers_are_caught_when_removed() -> None:
    subject = _subject()
    missed = []
    for site in CI_SITES:
        with disabled_barrier(site):
            report = Explorer(subject, PROFILE).explore((), skip=-1, stop_first=True)
        if not report.violations:
            missed.append(site)
    assert not missed, f"removing these barriers no longer breaks an invariant: {missed}"


@pytest.mark.skipif(not figures.LONG, reason="the full mutation score takes ~13 min: LAMINA_TORTURE=long")
def test_every_barrier_is_load_bearing_or_documented_as_redundant(capsys: pytest.CaptureFixture[str]) -> None:
    subject = _subject()
    with disabled_barrier(None) as seen:  # baseline: all barriers in place, no violation
        for workload, skip in WORKLOADS:
            report = Explorer(subject, PROFILE).explore(workload, skip=skip)
            assert not report.violations, report.summary()
        sites = sorted(seen)
    assert len(sites) >= 12, sites
    lines, killed, unexpected = [], 0, []
    for site in sites:
        t0 = time.perf_counter()
        caught = _caught(subject, site)
        killed += caught is not None
        lines.append(f"{'KILLED  ' if caught else 'SURVIVED'} {site} ({time.perf_counter() - t0:.1f}s)")
        if caught:
            lines.append(f"    {caught.splitlines()[0]}")
        if (caught is None) != (site in REDUNDANT):
            unexpected.append(site)
    figures.add(mutation_sites=len(sites), mutation_killed=killed)
    with capsys.disabled():
        print(f"\nbarrier-mutation score: {killed}/{len(sites)}")
        print("\n".join(lines))
    assert not unexpected, (
        f"sites that survive without being documented (or documented but caught): {unexpected}"
    )
