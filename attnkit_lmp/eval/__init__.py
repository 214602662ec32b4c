"""Evaluation of motion transfer as the paper reports it: MF, Align, Cons., Pick. over DAVIS-style datasets.

Modules, one concept each (import them directly; nothing heavy is imported here):

* `motion_fidelity` — the MF score (DMT) from point tracks.
* `trackers` — point trackers behind one interface: Lucas-Kanade grid, CoTracker, mask centroid.
* `clip_metrics` — Align (CLIP score), Cons. (frame-to-frame CLIP cosine), Pick. (PickScore).
* `datasets` — the DAVIS folder layout and the prompts file of the three splits (Ori, Sub, Back).
* `annotate` — a local vision-language model writes the prompts file (``attnkit-lmp annotate``), with
  `vision_language_model` (loading it by path, asking it) and `annotation_answers` (the question, the
  reading of its answer).
* `sweep` — a package: the resumable, data-parallel sweep behind ``attnkit-lmp eval``; `results` (its
  per-item records) and `report` (Table 1).
* `synthetic` — videos with exactly known motion, to check trackers and MF.

See docs/evaluation.md for the definitions and the choices they fix.
"""
