"""Provider wiring of the generate stage: the generator, its limits, the judge's own provider, the dedup index."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sectune.config.generate import GenerateConfig
from sectune.errors import UserError
from sectune.llm.requests import Caller, Limits

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.generate.engine import RunState
    from sectune.generate.quality import Deduplicator
    from sectune.llm.base import Provider
    from sectune.llm.cache import ResponseCache
    from sectune.llm.judge import Judge


def make_provider(cfg: ExperimentConfig) -> Provider:
    """The configured provider; ``local`` defaults to the experiment's model (the embedded one by default)."""
    from sectune.llm import get_provider

    gen = cfg.generate
    name = gen.provider
    return get_provider(
        name,
        model=gen.model or (cfg.model if name == "local" else None),
        base_url=gen.base_url,
        api_key_env=gen.api_key_env,
        timeout=gen.timeout_s,
        local_batch_size=gen.local_batch_size,
        seed=cfg.seed,
    )


def limits_of(gen: GenerateConfig) -> Limits:
    return Limits(
        max_tokens=gen.max_tokens,
        timeout_s=gen.timeout_s,
        max_retries=gen.max_retries,
        backoff_initial_s=gen.backoff_initial_s,
        backoff_max_s=gen.backoff_max_s,
        max_in_flight=gen.max_in_flight,
        rpm=gen.rpm,
        tpm=gen.tpm,
    )


def make_deduplicator(gen: GenerateConfig, state: RunState) -> Deduplicator | None:
    from sectune.generate.quality import Deduplicator, first_pair, load_existing

    if not gen.quality.dedup:
        return None
    dedup = Deduplicator(gen.quality.near_duplicate_threshold)
    for question, answer in load_existing(gen.quality.against):
        dedup.add_pair(question, answer)
    for row in state.samples:
        pair = first_pair(row)
        if pair:
            dedup.add_pair(*pair)
    return dedup


def make_judge(cfg: ExperimentConfig, prov: Provider, cache: ResponseCache) -> Judge | None:
    """The LLM judge of the quality filter (``generate.quality.judge``), under the generation limits and cache."""
    from sectune.llm.judge import Judge

    if not cfg.generate.quality.judge.enabled:
        return None
    return Judge(Caller(judge_provider(cfg, prov), limits_of(cfg.generate), cache))


def judge_provider(cfg: ExperimentConfig, prov: Provider) -> Provider:
    """The judge's own provider: its ``base_url`` and ``api_key_env`` never come from the generator's settings.

    A judge with no provider, model, base_url or api_key_env of its own judges with the generator (``prov``),
    and so does one whose settings all equal the generator's; otherwise unset ``base_url`` / ``api_key_env``
    mean the judge provider's own defaults (OPENAI_BASE_URL / OPENAI_API_KEY…), and an unset ``model`` with
    the generator's provider means the generator's model.
    """
    from sectune.llm import get_provider

    gen, judge = cfg.generate, cfg.generate.quality.judge
    if judge.provider is None and judge.model is None and judge.base_url is None and judge.api_key_env is None:
        return prov
    name = judge.provider or prov.name
    model = judge.model or (prov.model if name == prov.name else cfg.model if name == "local" else None)
    if model is None:
        raise UserError(
            f"the judge's provider '{name}' needs a model name",
            field="generate.quality.judge.model",
            fix="set e.g. generate.quality.judge.model=gpt-4o-mini",
        )
    same = (name, model, judge.base_url, judge.api_key_env) == (prov.name, prov.model, gen.base_url, gen.api_key_env)
    if same:
        return prov
    return get_provider(
        name,
        model=model,
        base_url=judge.base_url,
        api_key_env=judge.api_key_env,
        timeout=gen.timeout_s,
        local_batch_size=gen.local_batch_size,
        seed=cfg.seed,
    )
