"""The report of benchmarks/bench_user.py: its tables per domain with the issue's targets, the rank
correlation of the held-out estimate with true Dice, the figure and the docs section `user-like`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_user import DOMAINS, FIGURE, RESULTS, n_slices  # noqa: E402
from common import SHARED, markdown_table, pyplot, save_figure, update_section  # noqa: E402

ADABN_TOL = 0.001  # "at least AdaBN": a UDA run that keeps the AdaBN model scores it up to float noise


def _budget(r: dict) -> str:
    if r["kind"] != "adapt":
        return "-"
    return f"{r['minutes']:g} min" + (f", cap {r['max_iters']} it" if r.get("max_iters") else "")


def _latest(results: list[dict]) -> list[dict]:
    """The newest result of each row (domain, crop, kind, clicks, budget, seed, CPU kind), on each domain's
    largest scored test set; variants (--set) aside. The CPU kind (native bf16 or not) keeps the rows of the
    two kinds of machine apart: a budget buys a different number of steps on each."""
    full = {}
    for r in results:
        full[r["domain"]] = max(full.get(r["domain"], 0), r["test_slices"])
    rows = {}
    for r in results:
        if r["test_slices"] == full[r["domain"]] and not r.get("overrides"):
            rows[(r["domain"], r["crop"], r["kind"], r["n_clicks"], _budget(r), r["seed"], machine_kind(r),
                  views(r))] = r
    return list(rows.values())


def views(r: dict) -> str:
    """The planes the pseudo-labels came from: xy, or xy + xz + yz (AdaptSettings.cross_views)."""
    return "xy, xz, yz" if r["kind"] == "adapt" and (r.get("settings") or {}).get("cross_views") else "xy"


def machine_kind(r: dict) -> str:
    return "native bf16" if r.get("native_bf16") else "fp32 only"


def targets(r: dict, source: dict | None, ab: dict | None) -> str:
    """✓/✗ against the issue's targets that apply to this row."""
    if r["kind"] != "adapt":
        return "-"
    checks = []
    if ab is not None:
        checks.append(("≥ AdaBN", r["dice"] >= ab["dice"] - ADABN_TOL))
    if source is not None and r["n_clicks"] >= 10:
        checks.append(("≥ source + 0.05", r["dice"] >= source["dice"] + 0.05))
    if (r["domain"] == "lucchi" and r["n_clicks"] == 25 and r["n_clicked_slices"] == 3 and r["crop"] == 32
            and r["minutes"] == 3):
        checks.append(("≥ 0.83", r["dice"] >= 0.83))
    if r["domain"] == "sbem" and r["n_clicks"] == 25 and source is not None:
        checks.append(("≥ source + 0.10", r["dice"] >= source["dice"] + 0.10))
    return ", ".join(f"{'✓' if ok else '✗'} {name}" for name, ok in checks) or "-"


def domain_table(rows: list[dict]) -> str:
    def f3(v):
        return "-" if v is None else f"{v:.3f}"

    def signed(v):
        return "-" if v is None else f"{v:+.3f}"

    seeds = len({r["seed"] for r in rows}) > 1
    order = {"source": 0, "adabn": 1, "adapt": 2}
    rows = sorted(rows, key=lambda r: (r["crop"], r["seed"], order[r["kind"]], views(r), r["n_clicks"],
                                       r["minutes"] or 0))
    body = []
    for r in rows:
        base = {k: next((b for b in rows if b["kind"] == k and b["crop"] == r["crop"] and b["seed"] == r["seed"]),
                        None) for k in ("source", "adabn")}
        d_src = None if base["source"] is None or r["kind"] == "source" else r["dice"] - base["source"]["dice"]
        d_ab = None if base["adabn"] is None or r["kind"] != "adapt" else r["dice"] - base["adabn"]["dice"]
        asked = [c for c in r.get("crops_asked", [r["crop"]]) if c != r["crop"]]
        crop = f"{r['crop']}" + (f" (asked {', '.join(map(str, asked))})" if asked else "")
        what = {"source": "source", "adabn": "AdaBN"}.get(r["kind"], f"{r['n_clicks']} ({r['n_clicked_slices']})")
        kept = {None: "start, before AdaBN", 0: "0: AdaBN"}.get(r["kept_step"], r["kept_step"])
        iters = "-" if r["kind"] != "adapt" else f"{r['steps']} ({kept})"
        body.append(([r["seed"]] if seeds else []) + [
            crop, what, _budget(r), "-" if r["kind"] != "adapt" else views(r), iters,
            f3(r["dice"]), f3(r["aji"]), f3(r["pq"]),
            "-" if r["estimate"] is None else f"{r['estimate']:.2f} ({r['quality']['n_heldout']})",
            "-" if r.get("flip_agreement") is None else f"{r['flip_agreement']:.3f}",
            signed(d_src), signed(d_ab), targets(r, base["source"], base["adabn"])])
    head = (["seed"] if seeds else []) + [
        "crop (slices)", "clicks (slices)", "budget", "views", "iterations (kept step)", "Dice", "AJI", "PQ",
        "held-out estimate (clicks)", "flip agreement", "Δ Dice vs source", "Δ Dice vs AdaBN", "targets"]
    return markdown_table(head, body)


def spearman(rows: list[dict], key: str = "estimate", clicks_only: bool = True) -> tuple[float | None, int]:
    """Rank correlation of rows' key with their Dice over the adapting runs (with clicks only, by default:
    the held-out estimate needs them; the flip agreement does not)."""
    from scipy.stats import spearmanr

    pts = [(r[key], r["dice"]) for r in rows if r["kind"] == "adapt" and (r["n_clicks"] > 0 or not clicks_only)
           and r.get(key) is not None]
    if len(pts) < 3 or len({p[0] for p in pts}) < 2:
        return None, len(pts)
    return float(spearmanr([p[0] for p in pts], [p[1] for p in pts]).statistic), len(pts)


def figure(rows: list[dict]) -> None:
    """Left: the held-out estimate of the runs with clicks; right: the flip agreement of every run (UDA
    too) and of the source and AdaBN rows, against true Dice."""
    fig, (ax_h, ax_f) = pyplot().subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for domain, marker in zip(DOMAINS, ("o", "s", "^")):
        mine = [r for r in rows if r["domain"] == domain]
        held = [r for r in mine if r["kind"] == "adapt" and r["estimate"] is not None]
        if held:
            ax_h.scatter([r["estimate"] for r in held], [r["dice"] for r in held], marker=marker, alpha=0.75,
                         label=f"{domain} ({len(held)} runs)")
        for kinds, face, what in ((("adapt",), None, "adapted"), (("source", "adabn"), "none", "source, AdaBN")):
            pts = [r for r in mine if r["kind"] in kinds and r.get("flip_agreement") is not None]
            if pts:
                ax_f.scatter([r["flip_agreement"] for r in pts], [r["dice"] for r in pts], marker=marker,
                             alpha=0.75, facecolors=face, edgecolors="C0" if domain == "lucchi" else "C1",
                             color=None if face else ("C0" if domain == "lucchi" else "C1"),
                             label=f"{domain}, {what} ({len(pts)})")
    ax_h.set_xlabel("held-out estimate (share of held-out clicks found)")
    ax_h.set_xlim(-0.03, 1.03)
    ax_h.set_ylabel("true Dice on the test block")
    ax_f.set_xlabel("flip agreement (Dice of the prediction and its mirrored twin)")
    for ax, title in ((ax_h, "Held-out clicks"), (ax_f, "Flip agreement (no clicks needed)")):
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.collections:
            ax.legend(fontsize=8)
    fig.suptitle("Label-free quality estimates against true Dice", fontsize=11)
    fig.tight_layout()
    save_figure(fig, FIGURE)


def _joined(vals) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in sorted(set(vals)))


def _commands(rows: list[dict]) -> list[str]:
    """The commands that measured the rows shown: one per domain and run setting."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["domain"], r["seed"], r["threads"], r["concurrent"], r["test_slices"],
               r.get("run_iters") or r.get("max_iters") or 0, views(r) != "xy")
        groups.setdefault(key, []).append(r)
    out = []
    for (domain, seed, threads, concurrent, n_test, iters, cross), rs in sorted(groups.items()):
        ad = [r for r in rs if r["kind"] == "adapt"]
        crops = {c for r in rs for c in r.get("crops_asked", [r["crop"]])}
        cmd = f".venv/bin/python benchmarks/bench_user.py --domains {domain} --crops {_joined(crops)}"
        if ad:
            cmd += f" --clicks {_joined(r['clicks_asked'] for r in ad)} --minutes {_joined(r['minutes'] for r in ad)}"
        if len(ad) == len(rs):
            cmd += " --no-baselines"
        cmd += f" --seed {seed} --threads {threads} --concurrent {concurrent}" + (" --cross-views on" if cross else "")
        if n_test < n_slices(SHARED / DOMAINS[domain][2]):
            cmd += f" --test-slices {n_test}"
        out.append(f"- `{cmd}" + (f" --iters {iters}`" if iters else "`"))
    return out


def _rank_line(rows: list[dict]) -> str:
    """The rank correlations of the two estimates with true Dice, pooled and per domain."""
    def said(key: str, clicks_only: bool, what: str) -> str:
        rho, n = spearman(rows, key, clicks_only)
        if rho is None:
            return f"{what}: - ({n} runs)"
        per = [f"{d} {v:.2f} ({k})" for d in DOMAINS
               for v, k in [spearman([r for r in rows if r["domain"] == d], key, clicks_only)] if v is not None]
        return (f"{what} over {n} runs: **{rho:.2f}** {'✓' if rho >= 0.7 else '✗'} (target ≥ 0.7)"
                + (f"; per domain {', '.join(per)}" if per else ""))

    rho_c, _ = spearman(rows, "centring")
    return ("Rank correlation (Spearman) with true Dice. "
            + said("estimate", True, "Held-out estimate (runs with clicks)")
            + (f" (the held-out centring instead: {rho_c:.2f})" if rho_c is not None else "") + ". "
            + said("flip_agreement", False, "Flip agreement (every adapting run, UDA too)") + ".")


def machine_part(rows: list[dict]) -> str:
    """The tables, rank correlations, provenance and commands of the rows measured on one kind of CPU."""
    parts = []
    for domain, (*_, desc) in DOMAINS.items():
        mine = [r for r in rows if r["domain"] == domain]
        if mine:
            parts.append(f"**{desc}**; scored on {mine[0]['test_slices']} test slices.\n\n{domain_table(mine)}")
    secs = [r["row_s"] for r in rows if r["kind"] == "adapt" and r.get("row_s")]
    dates = ", ".join(sorted({r["date"] for r in rows}))
    commits = ", ".join(sorted({r["commit"] for r in rows}))
    machine = {f"{r['machine']} ({r['device']}, native bf16: {'yes' if r['native_bf16'] else 'no'})" for r in rows}
    return f"""{chr(10).join(p + chr(10) for p in parts)}
{_rank_line(rows)}

Measured {dates} at commit {commits} on {'; '.join(sorted(machine))}, \
{_joined(r['threads'] for r in rows)} torch thread(s) per row, {_joined(r['concurrent'] for r in rows)} \
row(s) side by side; an adapting row took \
{f'{min(secs) / 60:.1f}-{max(secs) / 60:.1f}' if secs else '-'} min end to end. Reproduce (one command per domain
and run setting):

{chr(10).join(_commands(rows))}
"""


def render() -> None:
    results = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    if not results:
        print(f"no results in {RESULTS}")
        return
    rows = _latest(results)
    # The kind of CPU measured last first; the figure shows its rows (those with the flip agreement).
    kinds = sorted({machine_kind(r) for r in rows},
                   key=lambda k: max(r["date"] for r in rows if machine_kind(r) == k), reverse=True)
    figure([r for r in rows if machine_kind(r) == kinds[0]])
    machines = "\n".join(f"### On a CPU with {k}\n\n" + machine_part([r for r in rows if machine_kind(r) == k])
                         for k in kinds)
    body = f"""## User-like adaptation: small crops, few clicks, the one-button defaults

Each domain's adaptation volume cropped to a contiguous block of whole slices from its middle; n clicks on
min(5, ceil(n / 10)) slices spread evenly over the crop (10 on 1, 25 on 3, 50 on 5), each at the innermost
pixel of a random true object; 0 clicks is UDA. Every row adapts as `mito-wda adapt` does (`auto_settings`
for the crop, its clicks and the budget; no pixel size given, the files carry none) and runs in its own
process; source and AdaBN (the adaptation's own first step) once per crop. The held-out estimate is the
share of held-out clicks (20% of the clicks, none below 5 clicks) inside the kept model's prediction, with
the number of held-out clicks; the flip agreement is the Dice between the model's foreground on the
labelled slices and its foreground on the same slices flipped in y and x (flipped back), the label-free
estimate the user is shown first (it needs no clicks). "iterations (kept step)": the training steps
the budget bought and the step whose model was kept (0: the AdaBN model; "start": the model before AdaBN,
the source's own). "views": the planes the pseudo-labels came from: the xy slices, or with
`--cross-views on` (as a user who knows the stack is near-isotropic FIB-SEM says; `auto` cannot tell, the
files carry no voxel size) the xy slices and the xz and yz views predicted once after AdaBN
(`core/adapt/cross_views.py`; stacks of 32 slices or more, so not the 16-slice crops, and not SBEM's thick
sections). Targets (issue 20): every
run ≥ its AdaBN row (within {ADABN_TOL}), ≥ source + 0.05 Dice with 10 clicks or more; Lucchi, 25 clicks
on 3 slices of a 32-slice crop in 3 minutes ≥ 0.83; SBEM, 25 clicks ≥ source + 0.10; the estimate ranks
the runs by true Dice with Spearman ≥ 0.7. SBEM's image.tif
holds 20 slices: larger crops are capped at 20 ("asked"), and its ~40 nm sections mean a click reaches
fewer slices of its object (the adaptation's click reach is 8 slices either way). A time budget buys a
different number of steps on a CPU with native bf16 and on one without, so each kind has its own table
(the newest first).

![label-free estimates against true Dice](images/estimate_vs_dice.png)

{machines}
(raw results: `benchmarks/results/user_results.jsonl`; `--render` rebuilds this section from them).
"""
    update_section("user-like", body)
    print(body)
