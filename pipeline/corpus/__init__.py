"""Corpus generation as plain functions (no Prefect): plan, run units, merge, verify, regenerate.

The Prefect flow in pipeline/flows/generate.py only wires these together; everything here can be
called and tested on its own.
"""

from pipeline.corpus.build import CORPUS_FILE, MANIFEST_FILE, CorpusStateError, merge_corpus, prepare_corpus_dir
from pipeline.run_lock import RunLock, RunLockedError
from pipeline.corpus.plan import CorpusPlanError, WorkUnit, plan_units
from pipeline.corpus.unit import completed_unit, run_unit
from pipeline.corpus.verify import VerifyReport, verify_corpus

__all__ = [
    "CORPUS_FILE",
    "MANIFEST_FILE",
    "CorpusPlanError",
    "CorpusStateError",
    "RunLock",
    "RunLockedError",
    "VerifyReport",
    "WorkUnit",
    "completed_unit",
    "merge_corpus",
    "plan_units",
    "prepare_corpus_dir",
    "run_unit",
    "verify_corpus",
]
