"""Evaluation sweeps: every (video, split, method, seed) generated once, scored, kept across kills and reruns.

:func:`run_sweep` is what ``attnkit-lmp eval`` runs. In order:

1. **Checks before any long work** (every process does them, so all fail alike): the dataset layout,
   frames and annotations of every video used (:class:`~attnkit_lmp.eval.datasets.DatasetError`), the
   prompts file against the dataset (:class:`~attnkit_lmp.eval.datasets.PromptsFileError`), the methods,
   the metric model folders (:class:`~attnkit_lmp.eval.clip_metrics.MetricModelNotFoundError`), the
   pipeline, every prompt's subject tokens, the output folder, and that an existing output folder was
   written with the same settings (:class:`SweepSettingsMismatchError`).
2. **Items.** The plan lists the items video by video (so a video's reference tracks are computed once);
   process ``rank`` of ``world`` takes items ``rank, rank + world, ...`` of the plan. Items already in
   any results file with the same identity are skipped: an item's identity (:func:`item_identities`)
   covers its prompt, subject and reference texts, a digest of its reference video's files, the model's
   files, its method's LMPConfig and the loaded attnkit plugins with their versions, so an item whose
   inputs changed is computed again (the summary says how many and what changed). Each finished item
   writes its video (temporary file, fsynced, then rename) and then appends its record (see
   :mod:`~attnkit_lmp.eval.results`), so a record always has its video. Generation runs with attnkit's
   finiteness check: a NaN is an error naming the item and the plugin call, never a black video.
3. **Aggregate.** After a barrier, process 0 builds the table from every record of the plan
   (:mod:`~attnkit_lmp.eval.report`).

Methods (:mod:`~attnkit_lmp.methods`): ``baseline`` is the plain pipeline with the initial noise
LMP would start from (same seed, same first draw); the others are ``motion_transfer`` with config
changes. Timing: each record holds its generation seconds and its whole-item seconds; the summary
reports the harness overhead (everything but the generations) per item and over the process's wall time.

Modules, one concept each: :mod:`.settings` (what the sweep is asked to do, and its record in the output
folder), :mod:`.plan` (items and shards), :mod:`.checks` (everything checked before generating),
:mod:`.identity` (what decides an item's numbers), :mod:`.items` (one item generated, scored and written),
:mod:`.run` (the whole sweep). Their public names are importable from here.
"""

from .checks import check_targets, check_videos
from .identity import IDENTITY_PARTS, current_records, item_identities
from .items import ItemRunner, plain_generation, write_mp4
from .plan import SweepItem, plan_items, shard
from .run import ProcessGroup, SweepSummary, current_process_group, run_sweep
from .settings import (
    SETTINGS_FILE,
    ExtraMetrics,
    SweepError,
    SweepSettings,
    SweepSettingsMismatchError,
    base_lmp_config,
    check_output_settings,
)

__all__ = [
    "IDENTITY_PARTS",
    "SETTINGS_FILE",
    "ExtraMetrics",
    "ItemRunner",
    "ProcessGroup",
    "SweepError",
    "SweepItem",
    "SweepSettings",
    "SweepSettingsMismatchError",
    "SweepSummary",
    "base_lmp_config",
    "check_output_settings",
    "check_targets",
    "check_videos",
    "current_process_group",
    "current_records",
    "item_identities",
    "plain_generation",
    "plan_items",
    "run_sweep",
    "shard",
    "write_mp4",
]
