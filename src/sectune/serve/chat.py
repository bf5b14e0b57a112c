"""``sectune chat``: talk to a model, a train run, an adapter or an OpenAI-compatible endpoint.

    from sectune.config import load_config
    from sectune.serve.chat import ChatSession, chat
    cfg = load_config()
    answer = chat(cfg, "runs/lora", [{"role": "user", "content": "What is phishing?"}], on_token=print)
    session = ChatSession(cfg, "runs/lora", system="You are a security assistant.")
    session.ask("What is a VPN?")

Targets are what ``sectune eval`` takes (:mod:`sectune.evaluate.targets`); a train run answers with its own
chat template. A local model streams its answer token by token (``on_token``), greedy unless a temperature
is given; an endpoint answers in one piece (``on_token`` is called once).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sectune.errors import UserError

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

Messages = list[dict[str, str]]
OnToken = Callable[[str], None]
ROLES = ("system", "user", "assistant")
HELP = "/reset clears the conversation, /save FILE writes it as JSONL, /exit (or Ctrl-D) ends"


class ChatSession:
    """One conversation with one target: the model is loaded once, each :meth:`ask` adds a user turn and
    the answer. ``system`` stays through :meth:`reset`."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        target: str | Path,
        *,
        system: str | None = None,
        model: str | None = None,
        temperature: float = 0.0,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
    ) -> None:
        from sectune.evaluate.targets import hosted_target, is_endpoint

        if temperature < 0:
            raise UserError("temperature must be >= 0", field="--temperature", fix="pass 0 (greedy) or more")
        if top_p is not None and not 0 < top_p <= 1:
            raise UserError("top-p must be in (0, 1]", field="--top-p", fix="pass e.g. --top-p 0.9")
        self.target = str(target)
        self.system = system
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens or cfg.eval.max_new_tokens
        self.seed = cfg.seed
        self.messages: Messages = []
        self.model_name: str | None = None
        self._backend: _Local | _Endpoint
        if is_endpoint(target):
            self.model_name = model or cfg.eval.endpoint_model
            if not self.model_name:
                raise UserError(
                    "an endpoint target needs a model name",
                    field="--model",
                    fix="pass --model NAME or --set eval.endpoint_model=NAME (the model the server serves)",
                )
            self._backend = _Endpoint(self.target, self.model_name)
        elif (hosted := hosted_target(target)) is not None:  # a hosted run: its provider serves the model
            self.model_name = hosted.model
            self._backend = _Endpoint(hosted.url, hosted.model, key_env=hosted.key_env)
        else:
            self._backend = _Local.load(self.target, cfg.eval.dtype, seed=self.seed if temperature > 0 else None)
        self.reset()

    def reset(self) -> None:
        """Forget the conversation, keeping the system prompt."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def reply(self, messages: Sequence[dict[str, str]], *, on_token: OnToken | None = None) -> str:
        """The answer to ``messages`` (its last turn is the user's), without adding it to the session."""
        conversation = _checked(messages)
        return self._backend.answer(
            conversation,
            on_token=on_token,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
        )

    def ask(self, text: str, *, on_token: OnToken | None = None) -> str:
        """Add ``text`` as the user's turn and return the answer (kept in the conversation)."""
        conversation = [*self.messages, {"role": "user", "content": text}]
        answer = self.reply(conversation, on_token=on_token)
        self.messages = [*conversation, {"role": "assistant", "content": answer}]
        return answer

    def row(self) -> dict[str, Any]:
        """The conversation as one canonical row: ``{"messages": [...], "meta": {...}}``."""
        meta: dict[str, Any] = {
            "source": "sectune chat",
            "target": self.target,
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if self.model_name:
            meta["model"] = self.model_name
        if self.top_p is not None:
            meta["top_p"] = self.top_p
        return {"messages": [dict(m) for m in self.messages], "meta": meta}

    def save(self, path: str | Path) -> Path:
        """Write the conversation to ``path`` as one JSONL row (replacing the file)."""
        from sectune.data.jsonl import write_jsonl

        return write_jsonl(Path(path).expanduser(), [self.row()])

    def close(self) -> None:
        self._backend.close()


def chat(
    cfg: ExperimentConfig,
    target: str | Path,
    messages: Sequence[dict[str, str]],
    *,
    on_token: OnToken | None = None,
    model: str | None = None,
    temperature: float = 0.0,
    top_p: float | None = None,
    max_new_tokens: int | None = None,
) -> str:
    """One answer from ``target`` to a conversation whose last turn is the user's; ``on_token`` receives the
    text as it is generated. Greedy unless ``temperature`` > 0; ``model`` names an endpoint's model."""
    _checked(messages)
    session = ChatSession(cfg, target, model=model, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    try:
        return session.reply(messages, on_token=on_token)
    finally:
        session.close()


def run_interactive(session: ChatSession, *, read: Callable[[str], str] = input, out: TextIO | None = None) -> None:
    """The ``you>`` loop: each line is a question, answered as it streams; /reset, /save FILE, /exit."""
    out = out or sys.stdout
    if read is input:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input() on a terminal)
    print(f"chatting with {session.target} ({HELP})", file=sys.stderr, flush=True)
    while True:
        try:
            line = read("you> ")
        except EOFError:
            print(file=out, flush=True)
            return
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command, _, argument = text.partition(" ")
            if command in ("/exit", "/quit"):
                return
            if command == "/reset":
                session.reset()
                print("(conversation cleared)", file=out, flush=True)
            elif command == "/save":
                _save(session, argument.strip(), out)
            else:
                print(f"unknown command {command}: {HELP}", file=out, flush=True)
            continue
        try:
            session.ask(text, on_token=_printer(out))
        except KeyboardInterrupt:
            print("\n(interrupted; the question was dropped)", file=out, flush=True)
            continue
        except UserError as exc:  # an endpoint that failed: say so, keep the conversation
            print(f"\nerror: {exc}", file=out, flush=True)
            continue
        print(file=out, flush=True)


def one_shot(session: ChatSession, prompt: str, *, out: TextIO | None = None) -> str:
    """Ask one question and print only the answer (streamed), ending with a newline."""
    out = out or sys.stdout
    if not prompt.strip():
        raise UserError("nothing to ask: the prompt is empty", field="--prompt", fix='pass --prompt "QUESTION"')
    answer = session.ask(prompt.strip(), on_token=_printer(out))
    print(file=out, flush=True)
    return answer


def _save(session: ChatSession, argument: str, out: TextIO) -> None:
    if not argument:
        print("usage: /save FILE", file=out, flush=True)
        return
    try:
        path = session.save(argument)
    except OSError as exc:
        print(f"error: cannot write {argument}: {exc.strerror or exc}", file=out, flush=True)
        return
    print(f"(saved {len(session.messages)} messages to {path})", file=out, flush=True)


def _printer(out: TextIO) -> OnToken:
    def show(text: str) -> None:
        out.write(text)
        out.flush()

    return show


def _checked(messages: Sequence[dict[str, str]]) -> Messages:
    conversation = [dict(m) for m in messages]
    for index, message in enumerate(conversation):
        if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise UserError(
                f"message {index} is not a chat message",
                field=f"messages.{index}",
                fix='each message is {"role": "system"|"user"|"assistant", "content": "..."}',
            )
    if not conversation or conversation[-1]["role"] != "user":
        raise UserError("the conversation must end with the user's turn", field="messages", fix="add a user message")
    return conversation


class _Local:
    """A transformers model answering with its chat template, streamed through ``TextIteratorStreamer``."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, target: str, dtype: str, *, seed: int | None) -> _Local:
        from sectune.evaluate.targets import check_target, load_target, resolve_dtype

        check_target(target)
        model, tokenizer = load_target(target, dtype=resolve_dtype(dtype))
        if seed is not None:
            import torch

            torch.manual_seed(seed)
        return cls(model, tokenizer)

    def answer(
        self,
        messages: Messages,
        *,
        on_token: OnToken | None,
        max_new_tokens: int,
        temperature: float,
        top_p: float | None,
    ) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        from sectune.models.generation import end_token_ids, render_prompt

        tokenizer, model = self.tokenizer, self.model
        batch = tokenizer(render_prompt(tokenizer, messages), return_tensors="pt", add_special_tokens=False)
        batch = batch.to(model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()

        class _StopOnRequest(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
            if top_p is not None:
                sampling["top_p"] = top_p
        failure: list[BaseException] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    model.generate(
                        **batch,
                        max_new_tokens=max_new_tokens,
                        pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=sorted(end_token_ids(tokenizer, model)),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_StopOnRequest()]),
                        **sampling,
                    )
            except BaseException as exc:  # re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, name="sectune-chat-generate", daemon=True)
        thread.start()
        pieces: list[str] = []
        try:
            for piece in streamer:
                if not pieces:  # the answer starts at its first visible character
                    piece = piece.lstrip()
                if not piece:
                    continue
                pieces.append(piece)
                if on_token is not None:
                    on_token(piece)
        except BaseException:
            stop.set()
            thread.join()
            raise
        thread.join()
        if failure:
            raise failure[0]
        return "".join(pieces).strip()

    def close(self) -> None:
        import gc

        self.model = None
        gc.collect()


class _Endpoint:
    """An OpenAI-compatible server: one streamed request per answer (``on_token`` gets each piece)."""

    def __init__(self, url: str, model_name: str, *, key_env: str | None = None) -> None:
        self.url = url
        self.model_name = model_name
        self.key_env = key_env  # None: OPENAI_API_KEY

    def answer(
        self,
        messages: Messages,
        *,
        on_token: OnToken | None,
        max_new_tokens: int,
        temperature: float,
        top_p: float | None,
    ) -> str:
        import asyncio

        from sectune.llm import ProviderError, get_provider

        async def ask() -> str:
            provider = get_provider("openai", model=self.model_name, base_url=self.url, api_key_env=self.key_env)
            try:
                params: dict[str, Any] = {"max_tokens": max_new_tokens, "temperature": temperature}
                if top_p is not None:
                    params["top_p"] = top_p
                if on_token is None:
                    return (await provider.complete(messages, **params)).text
                return (await provider.stream(messages, on_token, **params)).text  # type: ignore[attr-defined]
            finally:
                await provider.aclose()

        try:
            text = asyncio.run(ask())
        except ProviderError as exc:
            raise UserError(
                f"the endpoint did not answer ({exc})", file=self.url, fix="check the URL and --model"
            ) from None
        return text

    def close(self) -> None:
        return None
