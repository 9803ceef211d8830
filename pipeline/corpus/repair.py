"""Repair a damaged corpus: delete exactly what verify reports as damaged, then generate again.

Units are the unit of repair. A unit whose shard is missing, changed or unreadable, or whose unit
file is missing or disagrees, loses both files and is rendered again (the same bytes: every pair
is seeded from the corpus seed, scene and pair index). Stray files (unlisted shards, foreign unit
files, temporaries of killed runs) are deleted. The manifest and corpus.json are deleted whenever
anything was wrong, so the merge writes them again from the units (which also fixes orphan and
duplicate manifest rows). Nothing else is touched: intact units are reused as they are.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.corpus.plan import WorkUnit
from pipeline.corpus.verify import VerifyReport
from rendering.layout import CorpusLayout


def repair_corpus(corpus_dir: Path, report: VerifyReport, units: list[WorkUnit]) -> list[str]:
    """Delete what ``report`` found damaged (see the module doc); returns the corpus-relative paths
    removed. Call with the run lock held, then generate the corpus again."""
    if report.ok:
        return []
    layout = CorpusLayout(corpus_dir)
    doomed = set(report.stray_files)
    for unit in units:
        if unit.unit_id in report.damaged_units:
            doomed |= {unit.shard_relpath, unit.unit_relpath}
    doomed |= {layout.manifest.name, layout.info.name}  # merged again from the units
    removed = []
    for rel in sorted(doomed):
        path = layout.root / rel
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(rel)
        elif path.is_dir():  # a temporary folder
            import shutil

            shutil.rmtree(path)
            removed.append(rel)
    return removed
