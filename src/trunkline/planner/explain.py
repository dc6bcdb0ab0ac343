"""explain: a plan as text for people (``trunkline plan``); ``Plan.to_dict`` is the JSON."""

from __future__ import annotations

from trunkline.planner.plan import Plan


def _size(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} GB"


def explain(plan: Plan) -> str:
    """Every step with its engine, why, what it was sent and what crosses its boundary.

    With actual figures when the plan has run (``--analyze``).
    """
    chosen = next((c for c in plan.candidates if c.chosen), None)
    estimate = f" (estimated {chosen.seconds:.3f} s)" if chosen else ""
    lines = [f"plan {plan.hash}{estimate}"]
    for step in plan.steps:
        feeds = f" -> {step.boundary.split(' -> ')[1]}" if step.boundary else ""
        inputs = f" <- {', '.join(sorted(step.inputs))}" if step.inputs else ""
        lines.append(f"  {step.id}  {step.role} on {step.engine}{feeds}{inputs}")
        lines.append(f"      why: {step.reason}")
        sent = step.text if len(step.text) <= 2000 else step.text[:2000] + " ..."
        lines.append(f"      sent: {sent}")
        if step.role != "final":
            lines.append(
                f"      estimated: ~{step.est_rows:,.0f} rows, ~{_size(step.est_bytes)}, "
                f"~{step.est_seconds:.3f} s"
            )
        else:
            lines.append(f"      estimated: ~{step.est_rows:,.0f} rows, ~{step.est_seconds:.3f} s")
        if step.actual is not None:
            lines.append(
                f"      actual: {step.actual.rows:,} rows, {_size(step.actual.bytes)}, "
                f"{step.actual.seconds:.3f} s"
            )
    lines.append("candidates:")
    for candidate in plan.candidates[:8]:
        mark = "*" if candidate.chosen else " "
        lines.append(f"  {mark} ~{candidate.seconds:.3f} s  {candidate.name}")
    if len(plan.candidates) > 8:
        lines.append(f"    ... {len(plan.candidates) - 8} more")
    lines.append("not pushed down:" if plan.not_pushed else "not pushed down: nothing")
    lines += [f"  - {item}" for item in plan.not_pushed]
    lines.append("statistics:")
    for item in plan.statistics:
        if "dataset" in item:
            lines.append(
                f"  - {item['dataset']}: {item['rows']:,} rows from {item['rows_from']}; "
                f"column statistics from {item['columns_from']}"
            )
        else:
            lines.append(f"  - engine {item['engine']}: speed factors {item['speed_factors_from']}")
    return "\n".join(lines)
