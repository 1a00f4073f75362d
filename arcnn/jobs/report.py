"""What ``arcnn restore`` and ``arcnn run`` tell the user: one line per key and one summary.

Both commands print the same things from the same :class:`~arcnn.jobs.pipeline.Result` stream:

- per key, ``SOURCE -> OUTPUT: LABEL (WHY)`` (``in/a.jpg -> out/a.png: jpeg-q20+colour
  (estimated q18, 4:2:0)``), with ``passthrough`` or ``skipped`` as the label when no model ran,
  or ``SOURCE: failed (REASON: ERROR)``;
- at the end, a table of counts per model with their megapixels, then passed through, skipped
  and failed, and one totals line with the elapsed time and megapixels per second;
- with ``--json``, the same figures as one JSON object.

"done" counts keys a model restored; "passed through" those written as they came in (no model
helped). They are reported apart, so a run that changed nothing does not look like one that did.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the pipeline imports torch; the commands import this module before they need it
    from arcnn.jobs.pipeline import Result


def fate_line(source: object, target: object, label: str, why: str) -> str:
    """``SOURCE -> TARGET: LABEL (WHY)``, the line printed for each key that was not failed."""
    return f"{source} -> {target}: {label} ({why})"


def fate(result: Result, source: object, target: object) -> str:
    """One key's line; ``source`` and ``target`` are the names shown for the key and its output."""
    if result.outcome == "failed":
        return f"{source}: failed ({result.reason}: {result.error})"
    label = "skipped" if result.outcome == "skipped" else result.model
    return fate_line(source, target, label, result.why)


@dataclass
class Tally:
    """The counts of a finished (or dry) run, built one result at a time."""

    outcomes: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    """Restored keys per model label (``jpeg-q20+colour``)."""
    megapixels: Counter[str] = field(default_factory=Counter)
    """Megapixels per model label, ``passthrough`` included."""
    failures: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)
    reads: Counter[str] = field(default_factory=Counter)
    """Restored and passed-through keys by where their history was read from (``pixels``:
    re-saves and files without tables whose pixels showed a JPEG grid)."""

    def add(self, result: Result, name: str) -> None:
        """Count ``result``; ``name`` is how the key is listed among failures and warnings."""
        outcome = result.outcome or "skipped"  # settled elsewhere: nothing done here
        self.outcomes[outcome] += 1
        if outcome in ("restored", "passed_through"):
            self.megapixels[result.model] += result.pixels / 1e6
            if result.read:
                self.reads[result.read] += 1
        if outcome == "restored":
            self.models[result.model] += 1
        if outcome == "failed":
            self.failures[name] = {"reason": result.reason, "error": result.error}
        if result.warning:
            self.warnings[name] = result.warning

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def summary(self, seconds: float) -> dict:
        """The ``--json`` summary."""
        megapixels = sum(self.megapixels.values())
        return {"total": self.total, "done": self.outcomes["restored"],
                "passed_through": self.outcomes["passed_through"], "skipped": self.outcomes["skipped"],
                "failed": self.outcomes["failed"], "models": dict(sorted(self.models.items())),
                "megapixels": round(megapixels, 3), "seconds": round(seconds, 3),
                "mp_per_s": round(megapixels / seconds, 3) if seconds > 0 else 0.0,
                "failed_keys": self.failures, "warned": len(self.warnings), "warnings": self.warnings,
                "read_from": dict(sorted(self.reads.items()))}

    def totals_line(self, seconds: float) -> str:
        """``total 4  done 2  passed through 1  skipped 0  failed 1  in 3.2s  0.41 MP/s``."""
        s = self.summary(seconds)
        return (f"total {s['total']}  done {s['done']}  passed through {s['passed_through']}  "
                f"skipped {s['skipped']}  failed {s['failed']}" + (f"  warned {s['warned']}" if s["warned"] else "")
                + f"  in {seconds:.1f}s  {s['mp_per_s']:.2f} MP/s")

    def table(self) -> list[str]:
        """The rows above the totals line: each model's images and megapixels, then the rest."""
        rows = [(f"restored by {model}", count, self.megapixels[model]) for model, count in sorted(self.models.items())]
        rows.append(("passed through", self.outcomes["passed_through"], self.megapixels["passthrough"]))
        rows += [("skipped", self.outcomes["skipped"], None), ("failed", self.outcomes["failed"], None)]
        rows += [(f"history read from {source}", count, None) for source, count in sorted(self.reads.items())]
        width = max(len(row[0]) for row in rows)
        return [f"  {label:<{width}}  {count:>7} image{'s' if count != 1 else ' '}"
                + (f"  {mp:9.2f} MP" if mp is not None else "") for label, count, mp in rows]
