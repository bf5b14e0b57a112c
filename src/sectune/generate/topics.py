"""Topics: an LLM-built tree or graph from a root prompt, JSONL save/load, and topics from a spreadsheet.

Tree JSONL: one line per root-to-leaf path, ``{"path": ["root", "child", "leaf"]}``.
Graph JSONL: one line per node, ``{"id": 3, "topic": "...", "parents": [0, 1]}``: a subtopic named twice is one
node with several parents, never a duplicate. Spreadsheet (``Id, Domain Topic, Samples Count, Domain Type``):
each row is a topic with its own number of samples, tagged with its domain type.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sectune.data.jsonl import JsonlError, iter_jsonl, write_jsonl
from sectune.errors import UserError

SPREADSHEET_COLUMNS = ("Id", "Domain Topic", "Samples Count", "Domain Type")


@dataclass
class Topic:
    """A topic to write samples about: its path from the root, and optionally its own sample count and type."""

    path: list[str]
    samples: int | None = None
    domain_type: str | None = None
    id: str | None = None

    @property
    def name(self) -> str:
        return self.path[-1]


@dataclass
class TopicGraph:
    """Nodes with one or more parents; node 0 is the root."""

    topics: list[str] = field(default_factory=list)
    parents: list[list[int]] = field(default_factory=list)

    def add(self, topic: str, parent: int | None) -> int:
        self.topics.append(topic)
        self.parents.append([] if parent is None else [parent])
        return len(self.topics) - 1

    def find(self, topic: str) -> int | None:
        key = _key(topic)
        return next((i for i, name in enumerate(self.topics) if _key(name) == key), None)

    def ancestors(self, node: int) -> set[int]:
        seen: set[int] = set()
        stack = list(self.parents[node])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.parents[current])
        return seen

    def path_to(self, node: int) -> list[str]:
        """The path from the root through each node's first parent."""
        path = [self.topics[node]]
        while self.parents[node]:
            node = self.parents[node][0]
            path.append(self.topics[node])
        return path[::-1]

    def leaves(self) -> list[int]:
        with_children = {p for ps in self.parents for p in ps}
        return [i for i in range(len(self.topics)) if i not in with_children]


def _key(topic: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", topic.lower()).split())


# Lines that repeat the prompt instead of naming a subtopic (small models do this).
_ECHO = re.compile(r"^(topic|subtopic|topic path|list|here are)\b.*:|>", re.IGNORECASE)

# --- LLM-built topics ---------------------------------------------------------------------------------------
Ask = Callable[[list[dict[str, str]]], Awaitable[str | None]]


def subtopic_prompt(path: list[str], degree: int, system_prompt: str, *, json_output: bool) -> list[dict[str, str]]:
    if not json_output:  # small local models follow a short plain request far better (measured on SmolLM2-135M)
        within = f" (within {' > '.join(path[:-1])})" if len(path) > 1 else ""
        user = f"Name {degree} subtopics of {path[-1]}{within}. Answer with a numbered list."
        return [{"role": "user", "content": user}]
    fmt = f"Reply with only a JSON array of {degree} short strings."
    user = f"Topic path: {' > '.join(path)}\nList {degree} distinct, specific subtopics of the last topic. {fmt}"
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def parse_subtopics(text: str | None, degree: int, exclude: Iterable[str] = ()) -> list[str]:
    """Subtopic names from a JSON array or a (numbered/bulleted) list; unique, at most ``degree``."""
    if not text:
        return []
    items: list[str] = []
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        try:
            data = json.loads(text[start : end + 1])
            items = [str(x) for x in data if isinstance(x, str | int | float)] if isinstance(data, list) else []
        except json.JSONDecodeError:
            items = []
    if not items:
        lines = text.splitlines()
        listed = [line for line in lines if _LIST_ITEM.match(line)]  # prose around a list is not a topic
        items = [_LIST_ITEM.sub("", line) for line in (listed or lines)]
    seen = {_key(x) for x in exclude}
    result: list[str] = []
    for item in items:
        name = re.split(r":\s|\s[-–]\s", item.strip())[0]  # "Name: a description" → "Name"
        name = name.strip().strip("\"'*").rstrip(".:").strip()
        if not name or len(name) > 120 or _key(name) in seen or _ECHO.search(item.strip().strip("*")):
            continue
        seen.add(_key(name))
        result.append(name)
    return result[:degree]


async def build_tree(root: str, degree: int, depth: int, ask: Ask, system_prompt: str, *, json_output: bool):
    """Root-to-leaf paths of a tree: each node gets up to ``degree`` children, ``depth`` levels deep."""
    level = [[root]]
    for _ in range(depth):
        # One level at a time, its requests concurrently (a batch for the local model).
        prompts = [subtopic_prompt(path, degree, system_prompt, json_output=json_output) for path in level]
        answers = await asyncio.gather(*(ask(p) for p in prompts))
        next_level: list[list[str]] = []
        for path, answer in zip(level, answers, strict=True):
            children = parse_subtopics(answer, degree, exclude=set(path))
            next_level.extend([*path, child] for child in children) if children else next_level.append(path)
        level = next_level
    return [Topic(path) for path in level]


async def build_graph(root: str, degree: int, depth: int, ask: Ask, system_prompt: str, *, json_output: bool):
    """A topic graph: a subtopic already present becomes an extra parent link, never a duplicate node."""
    graph = TopicGraph()
    frontier = [graph.add(root, None)]
    for _ in range(depth):
        paths = [graph.path_to(node) for node in frontier]
        prompts = [subtopic_prompt(path, degree, system_prompt, json_output=json_output) for path in paths]
        answers = await asyncio.gather(*(ask(p) for p in prompts))
        next_frontier: list[int] = []
        for node, path, answer in zip(frontier, paths, answers, strict=True):  # merged in order: deterministic
            for child in parse_subtopics(answer, degree, exclude=set(path)):
                existing = graph.find(child)
                if existing is None:
                    next_frontier.append(graph.add(child, node))
                elif existing != node and existing not in graph.ancestors(node) and node not in graph.parents[existing]:
                    graph.parents[existing].append(node)  # a second parent; a link to an ancestor would be a cycle
        frontier = next_frontier
    return graph


# --- files ---------------------------------------------------------------------------------------------------
def save_tree(topics: list[Topic], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, ({"path": t.path} for t in topics))


def save_graph(graph: TopicGraph, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, ({"id": i, "topic": t, "parents": graph.parents[i]} for i, t in enumerate(graph.topics)))


def load_topics(path: str | Path) -> list[Topic]:
    """Topics from a tree JSONL, a graph JSONL (its leaves) or a spreadsheet (.xlsx)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            "topics file not found",
            file=path,
            field="generate.topics.file",
            fix="run `sectune topics --out topics.jsonl` or give an existing file",
        )
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return load_spreadsheet(path)
    rows = []
    try:
        numbered = list(iter_jsonl(path))
    except JsonlError as exc:
        raise UserError(f"line {exc.line} is not JSON", file=path, fix="one JSON object per line") from None
    for number, row in numbered:
        if not isinstance(row, dict) or not ({"path"} <= row.keys() or {"id", "topic", "parents"} <= row.keys()):
            raise UserError(
                f"line {number} has neither 'path' nor 'id/topic/parents'",
                file=path,
                fix='write {"path": [...]} (tree) or {"id", "topic", "parents"} (graph)',
            )
        rows.append(row)
    if not rows:
        raise UserError("topics file is empty", file=path, fix="generate topics first")
    if "path" in rows[0]:
        return [_tree_topic(row, path, n) for n, row in enumerate(rows, start=1)]
    graph = TopicGraph([str(r["topic"]) for r in rows], [list(r["parents"]) for r in rows])
    return [Topic(graph.path_to(leaf), id=str(leaf)) for leaf in graph.leaves()]


def _tree_topic(row: dict, file: Path, number: int) -> Topic:
    path = row["path"]
    if not isinstance(path, list) or not path or not all(isinstance(p, str) and p.strip() for p in path):
        raise UserError(
            f"line {number}: 'path' must be a non-empty list of strings",
            file=file,
            field="path",
            fix='write e.g. {"path": ["Cybersecurity", "Phishing"]}',
        )
    return Topic(path, samples=row.get("samples"), domain_type=row.get("domain_type"))


def load_spreadsheet(path: Path) -> list[Topic]:
    """Topics from a sheet with columns Id, Domain Topic, Samples Count, Domain Type (first sheet)."""
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise UserError(f"cannot read the spreadsheet: {exc}", file=path, fix="save it as .xlsx") from None
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    workbook.close()
    if not rows:
        raise UserError("spreadsheet is empty", file=path, fix=f"columns: {', '.join(SPREADSHEET_COLUMNS)}")
    header = [str(c).strip() if c is not None else "" for c in rows[0]]
    missing = [c for c in SPREADSHEET_COLUMNS[1:3] if c not in header]
    if missing:
        raise UserError(
            f"missing column(s) {', '.join(missing)}",
            file=path,
            field="header",
            fix=f"name the columns {', '.join(SPREADSHEET_COLUMNS)}",
        )
    col = {name: header.index(name) for name in SPREADSHEET_COLUMNS if name in header}
    topics = []
    for number, row in enumerate(rows[1:], start=2):
        if all(cell is None or str(cell).strip() == "" for cell in row):
            continue
        topics.append(_sheet_topic(row, col, path, number))
    if not topics:
        raise UserError("spreadsheet has no topic rows", file=path, fix="add rows below the header")
    return topics


def _sheet_topic(row: tuple, col: dict[str, int], path: Path, number: int) -> Topic:
    name = str(row[col["Domain Topic"]] or "").strip()
    if not name:
        raise UserError(
            "empty Domain Topic", file=path, field=f"row {number}", fix="fill in the topic or delete the row"
        )
    raw = row[col["Samples Count"]]
    try:
        count = int(raw)
        if count < 0 or float(raw) != count:
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(
            f"Samples Count {raw!r} is not a whole number ≥ 0",
            file=path,
            field=f"row {number}, Samples Count",
            fix="write a count like 100",
        ) from None
    domain = row[col["Domain Type"]] if "Domain Type" in col else None
    ident = row[col["Id"]] if "Id" in col else number - 1
    return Topic([name], samples=count, domain_type=str(domain).strip() if domain else None, id=str(ident))


def spread_samples(topics: list[Topic], total: int) -> list[int]:
    """Samples per topic: each topic's own count when it has one, else ``total`` spread as evenly as possible."""
    if all(t.samples is not None for t in topics):
        return [int(t.samples or 0) for t in topics]
    base, extra = divmod(total, len(topics))
    return [base + (1 if i < extra else 0) for i in range(len(topics))]
