"""The summary of a toy measurement: metrics per variant over the cases, the goals, and the text table."""

from __future__ import annotations

import math

import numpy as np

# What LMP should reach on the test split (the paper's Table 1: MF 0.90 against a baseline's 0.33).
GOALS = {
    "lmp_motion_fidelity_min": 0.90,
    "baseline_motion_fidelity_max": 0.40,
    "lmp_appearance_kept_min": 0.90,
    "lmp_motion_extent_range": (0.8, 1.25),
    "lmp_path_error_vs_parked_max": 0.5,
    "lmp_reference_colour_share_max": 0.02,
    "lmp_present_every_frame_min": 0.98,
    "lmp_fbdm_iou_min": 0.5,
}

SUMMARY_KEYS = (
    "motion_fidelity_centroid",
    "motion_fidelity_grid",
    "path_error",
    "path_error_reversed",
    "path_error_mean_position",
    "path_error_vs_parked",
    "path_error_parked_control",
    "present_fraction",
    "present_every_frame",
    "motion_extent",
    "background_kept",
    "colour_kept",
    "shape_kept",
    "appearance_kept",
    "reference_colour_read",
    "reference_colour_share",
    "follows_distractor",
    "path_error_to_distractor",
    "fbdm_iou",
    "fbdm_iou_mean_over_steps",
    "fbdm_foreground_fraction",
    "seconds",
)
# Summarised by the median over cases, not the mean: a ratio, which one empty clip would swing.
MEDIAN_KEYS = frozenset({"motion_extent", "path_error_vs_parked"})
# Metrics whose spread over the initial-noise repeats the summary reports (``<key>_seed_std``).
SPREAD_KEYS = ("motion_fidelity_centroid", "motion_fidelity_grid", "appearance_kept", "reference_colour_share")


def summarise(records: list[dict]) -> dict[str, dict[str, float]]:
    """Per variant, the mean of each metric over cases (booleans become rates; ratios the median; missing
    metrics are skipped), and for :data:`SPREAD_KEYS` the standard deviation over the noise repeats of
    the per-repeat means (0 with one repeat)."""
    summary: dict[str, dict[str, float]] = {}
    for variant in dict.fromkeys(record["variant"] for record in records):
        chosen = [record for record in records if record["variant"] == variant]
        values = _aggregate(chosen)
        values["cases"] = len(chosen)
        repeats = sorted({record.get("noise_repeat", 0) for record in chosen})
        values["noise_repeats"] = len(repeats)
        per_repeat = [_aggregate([r for r in chosen if r.get("noise_repeat", 0) == repeat]) for repeat in repeats]
        for key in SPREAD_KEYS:
            means = [entry[key] for entry in per_repeat if key in entry]
            if means:
                values[f"{key}_seed_std"] = float(np.std(means))
        # Per target shape, because a model may draw one shape the classifier cannot read: its targets
        # then cap "look kept" whatever the method does.
        for shape in sorted({record["target_shape"] for record in chosen if "target_shape" in record}):
            of_shape = _aggregate([record for record in chosen if record.get("target_shape") == shape])
            if "appearance_kept" in of_shape:
                values[f"appearance_kept_{shape}_targets"] = of_shape["appearance_kept"]
        summary[variant] = values
    return summary


def _aggregate(records: list[dict]) -> dict[str, float]:
    values = {}
    for key in SUMMARY_KEYS:
        numbers = [float(record[key]) for record in records if key in record and record[key] is not None]
        numbers = [number for number in numbers if math.isfinite(number)]
        if numbers:
            values[key] = float(np.median(numbers) if key in MEDIAN_KEYS else np.mean(numbers))
    return values


def check_goals(
    summary: dict[str, dict[str, float]], tracker_key: str = "motion_fidelity_centroid"
) -> dict[str, bool]:
    """Which of the :data:`GOALS` the summary meets on one MF tracker; a goal whose variant was not run is absent."""
    goals = {}
    lmp, baseline = summary.get("lmp"), summary.get("baseline")
    if lmp:
        goals["lmp_mf_at_least_0.90"] = lmp[tracker_key] >= GOALS["lmp_motion_fidelity_min"]
        goals["lmp_appearance_kept_at_least_90%"] = lmp["appearance_kept"] >= GOALS["lmp_appearance_kept_min"]
        low, high = GOALS["lmp_motion_extent_range"]
        if "motion_extent" in lmp:
            goals["lmp_motion_extent_in_0.8_1.25"] = low <= lmp["motion_extent"] <= high
        if "path_error_vs_parked" in lmp:
            goals["lmp_path_error_at_most_half_parked"] = (
                lmp["path_error_vs_parked"] <= GOALS["lmp_path_error_vs_parked_max"]
            )
        if "reference_colour_share" in lmp:
            goals["lmp_reference_colour_at_most_2%"] = (
                lmp["reference_colour_share"] <= GOALS["lmp_reference_colour_share_max"]
            )
        if "present_every_frame" in lmp:
            goals["lmp_present_in_98%"] = lmp["present_every_frame"] >= GOALS["lmp_present_every_frame_min"]
        if "fbdm_iou" in lmp:
            goals["lmp_fbdm_iou_at_least_0.5"] = lmp["fbdm_iou"] >= GOALS["lmp_fbdm_iou_min"]
    if baseline:
        goals["baseline_mf_at_most_0.40"] = baseline[tracker_key] <= GOALS["baseline_motion_fidelity_max"]
    if lmp and "lmp_no_asm" in summary and "lmp_no_fbdm" in summary:
        goals["ablation_order_lmp>no_asm>no_fbdm"] = (
            lmp[tracker_key] > summary["lmp_no_asm"][tracker_key] > summary["lmp_no_fbdm"][tracker_key]
        )
    return goals


TABLE_COLUMNS = (
    ("MF centroid", "motion_fidelity_centroid", "{:.3f}"),
    ("MF grid", "motion_fidelity_grid", "{:.3f}"),
    ("path err px", "path_error", "{:.2f}"),
    ("reversed px", "path_error_reversed", "{:.2f}"),
    ("mean-pos px", "path_error_mean_position", "{:.2f}"),
    ("extent", "motion_extent", "{:.2f}"),
    ("present", "present_every_frame", "{:.0%}"),
    ("look kept", "appearance_kept", "{:.0%}"),
    ("colour kept", "colour_kept", "{:.0%}"),
    ("shape kept", "shape_kept", "{:.0%}"),
    ("ref colour", "reference_colour_share", "{:.1%}"),
    ("follows distr.", "follows_distractor", "{:.0%}"),
    ("FBDM IoU", "fbdm_iou", "{:.2f}"),
    ("MF seed sd", "motion_fidelity_centroid_seed_std", "{:.3f}"),
)


def format_table(summary: dict[str, dict[str, float]], columns=TABLE_COLUMNS) -> str:
    """A fixed-width text table: one row per variant, one column per metric ('-' where not measured)."""
    header = ["variant", *[title for title, _, _ in columns]]
    rows = [header]
    for variant, values in summary.items():
        rows.append(
            [variant, *[(form.format(values[key]) if key in values else "-") for _, key, form in columns]]
        )
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(width) if index else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
