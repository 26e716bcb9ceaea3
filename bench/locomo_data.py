"""LoCoMo conversations as turns and questions, per the protocol in its README.

One memory per turn: ``"Speaker: text"``, plus ``" [shares a photo: caption]"``
when the turn has a ``blip_caption``; its event time is the session's
``session_N_date_time`` ("1:56 pm on 8 May, 2023"). Questions of categories
1-4 are cues; category 5 (adversarial, no answer in the conversation) and
questions without evidence are left out. Evidence such as ``"D8:6; D9:17"``
is split into its turn ids.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}


@dataclass(frozen=True)
class Turn:
    dia_id: str
    session: int
    speaker: str
    raw_text: str
    text: str  # the memory as captured
    said_at: datetime


@dataclass(frozen=True)
class Question:
    question: str
    category: int
    evidence: tuple[str, ...]  # dia ids
    sessions: tuple[int, ...]


@dataclass(frozen=True)
class Conversation:
    name: str
    turns: list[Turn]
    questions: list[Question]


def parse_session_time(text: str) -> datetime:
    """``"1:56 pm on 8 May, 2023"`` -> 2023-05-08T13:56:00+00:00."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=timezone.utc)


def session_of(dia_id: str) -> int:
    match = re.fullmatch(r"D(\d+):\d+", dia_id)
    if not match:
        raise ValueError(f"not a LoCoMo dialogue id: {dia_id!r}")
    return int(match.group(1))


def load_conversation(path: Path) -> Conversation:
    data = json.loads(path.read_text("utf-8"))
    turns: list[Turn] = []
    sessions = sorted(
        (int(k.split("_")[1]) for k in data if re.fullmatch(r"session_\d+", k)),
    )
    for n in sessions:
        said = parse_session_time(data[f"session_{n}_date_time"])
        for turn in data[f"session_{n}"]:
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shares a photo: {turn['blip_caption']}]"
            turns.append(Turn(turn["dia_id"], n, turn["speaker"], turn["text"], text, said))
    known = {t.dia_id for t in turns}
    questions: list[Question] = []
    for qa in data.get("qa", []):
        if qa.get("category") not in CATEGORIES:
            continue
        evidence = [e.strip() for raw in qa.get("evidence", []) for e in re.split(r"[;,]", raw)]
        evidence = list(dict.fromkeys(e for e in evidence if e in known))
        if not evidence:
            continue
        questions.append(Question(
            qa["question"], qa["category"], tuple(evidence),
            tuple(dict.fromkeys(session_of(e) for e in evidence)),
        ))
    return Conversation(path.stem, turns, questions)


def load_conversations(data_dir: Path) -> list[Conversation]:
    files = sorted(Path(data_dir).glob("*.json"))
    if not files:
        raise SystemExit(f"no LoCoMo conversation files (*.json) in {data_dir}")
    return [load_conversation(f) for f in files]
