"""Topics: an LLM-built tree or graph from a root prompt, JSONL save/load, and topics from a spreadsheet.

Tree JSONL: one line per root-to-leaf path, ``{"path": ["root", "child", "leaf"]}``, with the topic's ``id``,
``samples``, ``domain_type`` where it has them (a run's own topics.jsonl: what a resume reads).
Graph JSONL: one line per node, ``{"id": 3, "topic": "...", "parents": [0, 1]}``: a subtopic named twice is one
node with several parents, never a duplicate. Spreadsheet (``Id, Domain Topic, Samples Count, Domain Type``):
each row is a topic with its own number of samples, tagged with its domain type; :func:`shape_sheet` picks rows,
merges a topic repeated with the same domain type, and scales or caps the counts (``generate.topics.sheet_*``).
An LLM's subtopic answer is read as JSON (fenced or not) or as a list; fences, JSON syntax, prose and letterless
lines are refused and counted, and a step with fewer than half of its subtopics usable fails (issue 24).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sectune.config.generate import TopicsConfig
from sectune.data.jsonl import JsonlError, iter_jsonl, write_jsonl
from sectune.errors import IncompleteRunError, NothingUsableError, UserError

SPREADSHEET_COLUMNS = ("Id", "Domain Topic", "Samples Count", "Domain Type")
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm")


@dataclass
class Topic:
    """A topic to write samples about: its path from the root, and optionally its own sample count and type."""

    path: list[str]
    samples: int | None = None
    domain_type: str | None = None
    id: str | None = None
    sheet_samples: int | None = None  # what the sheet asked for, when sheet_scale / sheet_max_per_topic changed it
    merged_ids: list[str] = field(default_factory=list)  # ids of later sheet rows merged into this one

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
_FENCED = re.compile(r"```[\w-]*[ \t]*\n?(.*?)```", re.DOTALL)
# Lines that are markup, not a name: a code fence or JSON syntax ("{", "]", '"key": ...').
_MARKUP = re.compile(r'^\s*(```|~~~|[{}\[\]]|"[^"]*"\s*:)')
_NAME_KEYS = ("name", "topic", "subtopic", "title")  # the name of a subtopic written as an object
MAX_NAME_CHARS = 120
MAX_NAME_WORDS = 12  # longer is a sentence of prose, not a subtopic's name


def parse_subtopics(text: str | None, degree: int, exclude: Iterable[str] = ()) -> list[str]:
    """Subtopic names from a JSON array or a (numbered/bulleted) list; unique, at most ``degree``."""
    return parse_subtopic_answer(text, degree, exclude)[0]


def parse_subtopic_answer(text: str | None, degree: int, exclude: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(subtopic names, refused lines) of an answer: JSON (fenced or not), else its list or its lines.

    A line is refused when it is markup (a fence, JSON syntax), has no letter or fewer than two letters or
    digits ("A", "{", "---", "42"), is prose (over 12 words, or, outside a list, an intro ending in ":") or
    repeats the prompt. A JSON item, meant as a name, needs one letter only (``["A", "B"]`` are names).
    Names already seen or beyond ``degree`` are dropped, not refused.
    """
    if not text:
        return [], []
    items, free = _json_items(text), False
    from_json = items is not None
    if items is None:
        lines = [line for line in text.splitlines() if line.strip()]
        listed = [line for line in lines if _LIST_ITEM.match(line)]  # prose around a list is not a topic
        items, free = [_LIST_ITEM.sub("", line) for line in (listed or lines)], not listed
    seen = {_key(x) for x in exclude}
    names: list[str] = []
    refused: list[str] = []
    for item in items:
        name = None if free and item.rstrip().endswith(":") else _name_of(item, from_json)  # an intro, say
        if name is None:
            refused.append(item.strip())
        elif _key(name) not in seen:
            seen.add(_key(name))
            names.append(name)
    return names[:degree], refused


def _json_items(text: str) -> list[str] | None:
    """The items of the first JSON value in the answer naming a subtopic (fenced blocks first), or None."""
    candidates = [block.strip() for block in _FENCED.findall(text)]
    for opening, closing in ("[]", "{}"):
        start, end = text.find(opening), text.rfind(closing)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            items = _strings_in(json.loads(candidate))
        except json.JSONDecodeError:
            continue
        if any(_name_of(item, from_json=True) for item in items):  # not a stray "[1]" in prose
            return items
    return None


def _strings_in(data: object, depth: int = 0) -> list[str]:
    """Names in a JSON value: a list (of strings, or of objects with a name), or an object holding one."""
    if isinstance(data, list):
        return [name for item in data if (name := _item_name(item)) is not None]
    if not isinstance(data, dict) or depth > 1:
        return []
    for value in data.values():  # {"subtopics": [...]}, also one level down
        found = _strings_in(value, depth + 1) if isinstance(value, list | dict) else []
        if found:
            return found
    # {"subtopic_1": "...", "subtopic_2": "..."}: numbered keys only (a schema's own keys are no topics)
    if data and all(isinstance(v, str) and re.search(r"\d$", str(k)) for k, v in data.items()):
        return list(data.values())
    return []


def _item_name(item: object) -> str | None:
    if isinstance(item, str | int | float) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, dict):
        named = [item[k] for k in _NAME_KEYS if isinstance(item.get(k), str)]
        return named[0] if named else next((v for v in item.values() if isinstance(v, str)), None)
    return None


def _name_of(item: str, from_json: bool) -> str | None:
    """The subtopic named by one answer line or JSON item, or None when it names none."""
    line = item.strip()
    if _MARKUP.search(line) or _ECHO.search(line.strip("*")):
        return None
    name = re.split(r":\s|\s[-–]\s", line)[0]  # "Name: a description" → "Name"
    name = name.strip().strip("\"'*#`").rstrip(".:,").strip()
    alnum = sum(c.isalnum() for c in name)
    if not any(c.isalpha() for c in name) or (alnum < 2 and not from_json):  # a line "A" is a stray letter
        return None
    if len(name) > MAX_NAME_CHARS or len(name.split()) > MAX_NAME_WORDS:
        return None
    return name


# --- is the topic step good enough? ---------------------------------------------------------------------------
MIN_USABLE_SHARE = 0.5  # below half of the subtopics asked for, the model is not answering the question
REFUSED_EXAMPLES = 3


@dataclass
class SubtopicStats:
    """Counts of a topic step: subtopics asked for and usable, answer lines refused, requests unanswered."""

    asked: int = 0
    usable: int = 0
    refused: int = 0
    unanswered: int = 0  # requests that failed or were cut off
    examples: list[str] = field(default_factory=list)  # the first refused lines

    def add(self, degree: int, answer: str | None, names: list[str], refused: list[str]) -> None:
        self.asked += degree
        self.usable += len(names)
        self.refused += len(refused)
        self.unanswered += answer is None
        self.examples.extend(refused[: REFUSED_EXAMPLES - len(self.examples)])

    def check(self) -> None:
        """Fail the topic step (one line) when fewer than half of the subtopics asked for are usable."""
        if self.asked == 0 or self.usable >= MIN_USABLE_SHARE * self.asked:
            return
        cls = NothingUsableError if self.usable == 0 else IncompleteRunError
        why = [f"{self.refused} answer lines refused"] if self.refused else []
        if self.examples:
            why[-1] += ", e.g. " + ", ".join(json.dumps(e[:40], ensure_ascii=False) for e in self.examples)
        if self.unanswered:
            why.append(f"{self.unanswered} requests got no answer")
        detail = f" ({'; '.join(why)})" if why else ""
        raise cls(
            f"only {self.usable} of {self.asked} subtopics asked for are usable{detail}",
            field="generate.topics",
            fix="use a model that follows the subtopic prompt (generate.model), or write the topics yourself and "
            "pass them with --topics FILE",
        )


def _parse_level(
    level_paths: list[list[str]], answers: list[str | None], degree: int, stats: SubtopicStats
) -> list[list[str]]:
    """Each path's subtopics (its own names excluded), counted into ``stats``; fails when too few are usable."""
    children = []
    for path, answer in zip(level_paths, answers, strict=True):
        names, refused = parse_subtopic_answer(answer, degree, exclude=set(path))
        stats.add(degree, answer, names, refused)
        children.append(names)
    stats.check()  # after each level: never ask for the subtopics of garbage
    return children


async def build_tree(
    root: str,
    degree: int,
    depth: int,
    ask: Ask,
    system_prompt: str,
    *,
    json_output: bool,
    stats: SubtopicStats | None = None,
) -> list[Topic]:
    """Root-to-leaf paths of a tree: each node gets up to ``degree`` children, ``depth`` levels deep.

    ``stats`` receives the counts of the step; too few usable subtopics raise (see :meth:`SubtopicStats.check`).
    """
    stats = stats if stats is not None else SubtopicStats()
    level = [[root]]
    for _ in range(depth):
        # One level at a time, its requests concurrently (a batch for the local model).
        prompts = [subtopic_prompt(path, degree, system_prompt, json_output=json_output) for path in level]
        answers = await asyncio.gather(*(ask(p) for p in prompts))
        next_level: list[list[str]] = []
        for path, children in zip(level, _parse_level(level, answers, degree, stats), strict=True):
            next_level.extend([*path, child] for child in children) if children else next_level.append(path)
        level = next_level
    return [Topic(path) for path in level]


async def build_graph(
    root: str,
    degree: int,
    depth: int,
    ask: Ask,
    system_prompt: str,
    *,
    json_output: bool,
    stats: SubtopicStats | None = None,
) -> TopicGraph:
    """A topic graph: a subtopic already present becomes an extra parent link, never a duplicate node."""
    stats = stats if stats is not None else SubtopicStats()
    graph = TopicGraph()
    frontier = [graph.add(root, None)]
    for _ in range(depth):
        paths = [graph.path_to(node) for node in frontier]
        prompts = [subtopic_prompt(path, degree, system_prompt, json_output=json_output) for path in paths]
        answers = await asyncio.gather(*(ask(p) for p in prompts))
        next_frontier: list[int] = []
        levels = _parse_level(paths, answers, degree, stats)
        for node, children in zip(frontier, levels, strict=True):  # merged in order: deterministic
            for child in children:
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
    write_jsonl(path, (topic_row(t) for t in topics))


def topic_row(topic: Topic) -> dict[str, object]:
    """A topic's tree line: its path, and what else it carries (read back by :func:`load_topics`).

    A run's topics.jsonl is what a resume reads its topics from, so it keeps the id a sample is tagged with
    (``meta.topic_id``: a sheet's Id, a graph leaf's node number), not only the path.
    """
    row: dict[str, object] = {"path": topic.path}
    for key, value in (("samples", topic.samples), ("domain_type", topic.domain_type), ("id", topic.id)):
        if value is not None:
            row[key] = value
    if topic.sheet_samples is not None:
        row["sheet_samples"] = topic.sheet_samples
    if topic.merged_ids:
        row["merged_ids"] = topic.merged_ids
    return row


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
    if path.suffix.lower() in SPREADSHEET_SUFFIXES:
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
    return Topic(
        path,
        samples=row.get("samples"),
        domain_type=row.get("domain_type"),
        id=None if row.get("id") is None else str(row["id"]),
        sheet_samples=row.get("sheet_samples"),
        merged_ids=[str(i) for i in row.get("merged_ids") or []],
    )


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
    if isinstance(ident, float) and ident.is_integer():
        ident = int(ident)  # a numeric Id cell: 8, not "8.0"
    return Topic([name], samples=count, domain_type=str(domain).strip() if domain else None, id=str(ident))


# --- a sheet's rows and counts (generate.topics.sheet_rows / sheet_scale / sheet_max_per_topic) --------------
SHEET_OPTIONS = ("sheet_rows", "sheet_scale", "sheet_max_per_topic")


def topics_for_run(source: str | Path | None, spec: TopicsConfig) -> list[Topic] | None:
    """The topics of a run from ``source`` (a spreadsheet shaped by ``spec.sheet_*``), or None without a file.

    The sheet options on anything but a spreadsheet are refused, never silently ignored.
    """
    is_sheet = source is not None and Path(source).suffix.lower() in SPREADSHEET_SUFFIXES
    used = [name for name in SHEET_OPTIONS if getattr(spec, name) is not None]
    if used and not is_sheet:
        what = f"the topics file {source}" if source else "topics built from generate.topics.root"
        raise UserError(
            f"applies to a topics spreadsheet (.xlsx) only, not to {what}",
            field=f"generate.topics.{used[0]}",
            fix="give a spreadsheet with --topics or generate.topics.file, or unset it",
        )
    if source is None:
        return None
    topics = load_topics(source)
    if not is_sheet:
        return topics
    return shape_sheet(
        topics, rows=spec.sheet_rows, scale=spec.sheet_scale, max_per_topic=spec.sheet_max_per_topic, file=source
    )


def shape_sheet(
    topics: list[Topic],
    *,
    rows: str | int | list[int | str] | None = None,
    scale: float | None = None,
    max_per_topic: int | None = None,
    file: str | Path | None = None,
) -> list[Topic]:
    """The sheet's topics for a run: the chosen rows, repeated topics merged, counts scaled then capped.

    ``rows`` picks rows by their Id: ``"1-20,25"`` (ranges of numeric ids and single ids) or a list of ids.
    A topic listed twice with the same domain type is merged into one topic with the sum of the counts (its
    prompts would be the very same, so the second row's answers would all be duplicates); with different
    domain types both are kept (the domain type is in the prompt). ``scale`` multiplies each count (rounded;
    a topic asking for any sample keeps at least one), ``max_per_topic`` caps it.
    """
    chosen = select_rows(topics, rows, file) if rows is not None else list(topics)
    merged: list[Topic] = []
    by_key: dict[tuple[str, str], Topic] = {}
    for topic in chosen:
        key = (_topic_key(topic), (topic.domain_type or "").strip().lower())
        first = by_key.get(key)
        if first is None:
            copy = Topic(list(topic.path), topic.samples, topic.domain_type, topic.id)
            by_key[key] = copy
            merged.append(copy)
            continue
        first.samples = (first.samples or 0) + (topic.samples or 0)
        first.merged_ids.append(str(topic.id))
    for topic in merged:
        asked = topic.samples
        if asked is None:
            continue
        count = asked
        if scale is not None and count > 0:
            count = max(1, round(count * scale))
        if max_per_topic is not None:
            count = min(count, max_per_topic)
        if count != asked:
            topic.samples, topic.sheet_samples = count, asked
    return merged


def select_rows(topics: list[Topic], rows: str | int | list[int | str], file: str | Path | None = None) -> list[Topic]:
    """The topics whose Id is named in ``rows`` (``"1-20,25"`` or a list of ids), in sheet order."""
    field_name = "generate.topics.sheet_rows"
    items = str(rows).split(",") if isinstance(rows, str | int) else [str(item) for item in rows]
    ranges: list[tuple[float, float]] = []
    ids: set[str] = set()
    for item in (i.strip() for i in items):
        span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item)
        if span:
            low, high = int(span.group(1)), int(span.group(2))
            if low > high:
                raise UserError(f"row range '{item}' runs backwards", file=file, field=field_name, fix="write low-high")
            ranges.append((low, high))
        elif item:
            ids.add(_id_key(item))
    if not ranges and not ids:
        raise UserError("no rows named", field=field_name, fix='write ids and ranges like "1-20,25", or leave it unset')
    missing = sorted(ids - {_id_key(str(t.id)) for t in topics})
    if missing:
        raise UserError(
            f"no sheet row has Id {', '.join(missing)}",
            file=file,
            field=field_name,
            fix="name ids of the sheet's Id column (ranges like 1-20 for numeric ids)",
        )
    chosen = [t for t in topics if _id_key(str(t.id)) in ids or _in_ranges(t.id, ranges)]
    for span_ in ranges:
        if not any(_in_ranges(t.id, [span_]) for t in topics):
            raise UserError(
                f"no sheet row has an Id in {span_[0]:g}-{span_[1]:g}",
                file=file,
                field=field_name,
                fix="check the Id column",
            )
    return chosen


def _id_key(ident: str) -> str:
    try:
        number = float(ident)
    except ValueError:
        return ident.strip().lower()
    return f"{number:g}" if math.isfinite(number) else ident.strip().lower()


def _in_ranges(ident: str | None, ranges: list[tuple[float, float]]) -> bool:
    try:
        number = float(str(ident))
    except ValueError:
        return False
    return any(low <= number <= high for low, high in ranges)


def _topic_key(topic: Topic) -> str:
    return " > ".join(_key(part) for part in topic.path)


def duplicate_topics(topics: list[Topic]) -> dict[str, dict[str, object]]:
    """Topics listed more than once (by name, any case): their ids and how many topics they became."""
    groups: dict[str, list[Topic]] = {}
    for topic in topics:
        groups.setdefault(_topic_key(topic), []).append(topic)
    found: dict[str, dict[str, object]] = {}
    for group in groups.values():
        ids = [ident for t in group for ident in (t.id, *t.merged_ids) if ident is not None]
        if len(ids) > 1:
            types = [t.domain_type for t in group if t.domain_type]
            found[" > ".join(group[0].path)] = {"ids": ids, "topics": len(group), "domain_types": types}
    return found


def spread_samples(topics: list[Topic], total: int) -> list[int]:
    """Samples per topic: each topic's own count when it has one, else ``total`` spread as evenly as possible."""
    if all(t.samples is not None for t in topics):
        return [int(t.samples or 0) for t in topics]
    base, extra = divmod(total, len(topics))
    return [base + (1 if i < extra else 0) for i in range(len(topics))]
