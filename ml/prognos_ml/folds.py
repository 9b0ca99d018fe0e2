"""Machine-grouped, time-respecting validation folds.

One holdout (`labels.time_split`) scores the last fifth of the history: with the few
failures a plant has, that is a handful of events, and its figures swing with which ones
happen to fall there. The folds validate every machine once, over a longer window, by a
model that never saw that machine's future:

- The machines are dealt into k groups (k = min(folds, machines)), seeded and
  deterministic; with failure counts given, the machines with failures are balanced by
  failures (a group without failures validates nothing), the others by machine count.
- All folds share one validation window `[validation_start, validation_end)`, the later
  `validation_fraction` of the time range (validation_end exclusive = last ts + 1 ms).
- Fold i validates on group i's rows in that window. It trains on
  - every row of the other groups, of any time: their features and labels come from
    their own signals only (the feature dataflow is per machine), so nothing of group i's
    future reaches the model through them, and the fold keeps as much training history as
    the deployed model has;
  - group i's rows before `validation_start - gap_ms` (gap = horizon + longest feature
    window, as `time_split`'s), so no training label looks into the validation window and
    no validation row's features reach back into a training label's horizon.

So for every fold and machine, no training row of the machine lies at or after its first
validation row minus the gap. What this does not rule out: a cause common to several
machines at the same time (a bad batch of oil in every furnace) is seen in the other
groups' rows while group i is validated on it. The holdout, strictly time-ordered over
all machines, is the check against that; train.py reports both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import TrainError

DEFAULT_FOLDS = 3
# The later half of the history is validated, each machine by the fold of its group.
DEFAULT_VALIDATION_FRACTION = 0.5


@dataclass(frozen=True)
class FoldSettings:
    """How to cut the folds."""
    folds: int                  # configured number of folds (k = min(folds, machines))
    gap_ms: int                 # horizon + longest feature window
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    seed: int = 42


@dataclass
class Fold:
    index: int
    machines: list[str]      # the validation group
    validation_start: int    # validation: validation_start <= ts < validation_end, group rows only
    validation_end: int      # exclusive
    train: np.ndarray        # row indices, ascending
    validation: np.ndarray   # row indices, ascending (every row of the window, excluded ones too)


def machine_groups(machines, k: int, seed: int, failures: dict | None = None) -> list[list[str]]:
    """`machines` dealt into `k` groups: a seeded shuffle, then each machine (most failures
    first, ties in shuffled order) to the group with the fewest failures, then the fewest
    machines, then the lowest index; a machine without failures to the group with the
    fewest machines, then failures, then index. Each group's machines are returned sorted."""
    names = sorted({str(m) for m in machines})
    if k < 1:
        raise TrainError(f"folds: need at least one group, got {k}")
    failures = failures or {}
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    order.sort(key=lambda m: -int(failures.get(m, 0)))  # stable: shuffled order among ties
    groups: list[list[str]] = [[] for _ in range(k)]
    load = [0] * k
    for m in order:
        if failures.get(m, 0):
            g = min(range(k), key=lambda j: (load[j], len(groups[j]), j))
        else:  # adds no failures: even out the machines (machine-days, training rows)
            g = min(range(k), key=lambda j: (len(groups[j]), load[j], j))
        groups[g].append(m)
        load[g] += int(failures.get(m, 0))
    return [sorted(g) for g in groups]


def grouped_folds(machine: np.ndarray, ts: np.ndarray, settings: FoldSettings,
                  failures: dict | None = None) -> list[Fold]:
    """The folds of rows (`machine`, `ts` in ms; any order) as index arrays; none when
    fewer than two folds are configured or there are fewer than two machines.
    `failures`: observed failure starts per machine in the validation window, used only
    to balance the groups."""
    machine = np.asarray(machine).astype(str)
    ts = np.asarray(ts, dtype=np.int64)
    if settings.gap_ms < 0:
        raise TrainError(f"folds: gap must be >= 0 ms, got {settings.gap_ms}")
    names = np.unique(machine)
    k = min(int(settings.folds), len(names))
    if k < 2 or len(ts) == 0:
        return []
    vstart, vend = validation_window(ts, settings)
    train_before = vstart - settings.gap_ms
    in_window = ts >= vstart  # ts < vend always
    out = []
    for i, group in enumerate(machine_groups(names, k, settings.seed, failures)):
        mine = np.isin(machine, group)
        out.append(Fold(
            index=i, machines=group, validation_start=vstart, validation_end=vend,
            train=np.flatnonzero(~mine | (ts < train_before)),
            validation=np.flatnonzero(mine & in_window)))
    return out


def validation_window(ts: np.ndarray, settings: FoldSettings) -> tuple[int, int]:
    """`[validation_start, validation_end)` of the folds: the later `validation_fraction` of
    the time range, end exclusive; refused when no training time is left before it."""
    if not 0.0 < settings.validation_fraction < 1.0:
        raise TrainError(f"folds: validation fraction must be in (0, 1), got {settings.validation_fraction}")
    start, end = int(np.min(ts)), int(np.max(ts))
    vstart = start + int(round((1.0 - settings.validation_fraction) * (end - start)))
    if vstart - settings.gap_ms <= start:
        raise TrainError(f"folds: data range {end - start} ms leaves no training time before the validation "
                         f"window after a gap of {settings.gap_ms} ms")
    return vstart, end + 1


def failures_per_machine(failures, start: int, end: int) -> dict[str, int]:
    """Observed failure starts per machine in `[start, end)` (a `labels` failure frame)."""
    obs = failures[failures["observedStart"] & (failures["start"] >= start) & (failures["start"] < end)]
    return {str(m): int(n) for m, n in obs.groupby("machine").size().items()}
