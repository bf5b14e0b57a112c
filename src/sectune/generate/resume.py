"""Resume of a generate run: is ``out`` a run this config may continue, and what did it already do?

The run folder is its own resume state: requests.jsonl holds one outcome per finished slot (and the errors met
since the line before, so a killed session's errors are counted too), samples.jsonl the accepted samples (a
sample saved just before a kill, without its outcome line, still counts).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sectune.data.jsonl import read_jsonl
from sectune.errors import UserError
from sectune.generate.store import REQUESTS_FILE, SAMPLES_FILE, SlotOutcome

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.generate.engine import RunState

# Settings that may change between a run and its resume: they bound requests or outputs, not answers.
RESUMABLE_FIELDS = {
    "num_samples", "max_tokens", "timeout_s", "max_retries", "backoff_initial_s", "backoff_max_s", "max_in_flight",
    "ramp_up_s", "rpm", "tpm", "max_requests_factor", "budget_usd", "prices", "local_batch_size", "cache_dir",
    "formats", "base_url", "api_key_env",
}  # fmt: skip
RESUMABLE_JUDGE_FIELDS = {"base_url", "api_key_env"}  # of generate.quality.judge: where requests go, not what
# generate.topics keys newer than some run folders: unset, they equal their absence in an older config.yaml
NEWER_TOPICS_FIELDS = ("sheet_rows", "sheet_scale", "sheet_max_per_topic")


def check_run_folder(cfg: ExperimentConfig, out: Path, *, resume: bool, retry_failed: bool) -> None:
    started = out.is_dir() and (out / "config.yaml").is_file()
    if retry_failed and not started:
        raise UserError("no earlier run to retry", file=out, fix="point --out at an existing generate run folder")
    if not started:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError("output exists and is not a generate run", file=out, fix="choose another --out")
        return
    if not (resume or retry_failed):
        raise UserError(
            "output folder already holds a generate run",
            file=out,
            fix="pass --resume to continue it, --retry-failed to redo its failures, or another --out",
        )
    earlier = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {}
    changed = content_changes(earlier, cfg)
    if changed:
        raise UserError(
            f"the run was started with different settings ({', '.join(changed)})",
            file=out / "config.yaml",
            fix="resume with the same config (only limits such as max_tokens may change) or use a new --out",
        )


def content_changes(earlier: dict[str, Any], cfg: ExperimentConfig) -> list[str]:
    now = cfg.model_dump(mode="json")
    changed = [key for key in ("seed", "model") if earlier.get(key) != now.get(key)]
    before = without_unset_topics_fields(without_judge_endpoint(earlier.get("generate") or {}))
    before.setdefault("response_format", now["generate"].get("response_format"))  # runs from before it existed
    after = without_unset_topics_fields(without_judge_endpoint(now["generate"]))
    changed += [f"generate.{k}" for k in after if k not in RESUMABLE_FIELDS and before.get(k) != after[k]]
    return changed


def without_judge_endpoint(gen: dict[str, Any]) -> dict[str, Any]:
    """``gen`` without the judge's base_url / api_key_env (absent from runs started before they existed)."""
    judge = (gen.get("quality") or {}).get("judge")
    if not isinstance(judge, dict):
        return gen
    judge = {k: v for k, v in judge.items() if k not in RESUMABLE_JUDGE_FIELDS}
    return {**gen, "quality": {**gen["quality"], "judge": judge}}


def without_unset_topics_fields(gen: dict[str, Any]) -> dict[str, Any]:
    """``gen`` without the unset (None) topics keys that runs started before them do not have."""
    spec = gen.get("topics")
    if not isinstance(spec, dict):
        return gen
    spec = {k: v for k, v in spec.items() if not (k in NEWER_TOPICS_FIELDS and v is None)}
    return {**gen, "topics": spec}


def load_state(out: Path) -> RunState:
    from sectune.generate.engine import RunState

    state = RunState()
    for line in read_jsonl(out / REQUESTS_FILE, tolerant=True):
        outcome = SlotOutcome.from_dict(line)
        state.set_outcome(outcome)
        state.add_usage(outcome)
    state.samples = read_jsonl(out / SAMPLES_FILE, tolerant=True)
    for row in state.samples:  # a sample saved just before a kill, without its outcome line
        slot = row["meta"]["slot"]
        known = state.outcomes.get(slot)
        if known is None or known.status != "accepted":
            t, k = map(int, slot.split(":"))
            state.set_outcome(SlotOutcome(slot, t, k, status="accepted", reason=None))
    return state


def retry_slots(state: RunState) -> list[str]:
    return [sid for sid, outcome in state.outcomes.items() if outcome.status in ("rejected", "failed")]
