"""A fine-tuning dataset from folded sessions: pure parts of ``sessions export-dataset``.

One session's fold becomes one conversation in the chat format providers and Hugging Face
``datasets`` read (``{"messages": [{"role": "user", "content": ...}, ...]}``); ``Exporter``
takes conversations one at a time (never all at once) and decides, for each, whether it is
kept (filters, deduplication), which split it goes to (by a hash of the session name and the
seed, so a conversation never straddles splits and a re-export puts it in the same one), and
keeps the counts the dataset card reports.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sessions_app.domain.fold import COMPLETE, SessionState
from sessions_app.domain.runs import RunStatus

SPLITS = ("train", "dev", "test")
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}

# --- redaction ---------------------------------------------------------------------------

Redactor = Callable[[str], tuple[str, Mapping[str, int]]]

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13 to 19 digits, optionally grouped by spaces or dashes (not after a +: that is a phone
# number): a card number if it passes Luhn.
CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?![\d-])")
# An international or national phone number: optional +country, 7 to 15 digits in groups.
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d){6,14}(?!\w)"
)

SEVEN_DIGITS = re.compile(r"\d(?:[ ().+-]{0,3}\d){6}")  # what a card or phone needs at least
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _phone(candidate: str) -> bool:
    """A phone number, not any run of digits: 7 to 15 digits, written with a ``+`` or ``(``
    or in at least two groups, and not an ISO date."""
    digits = re.sub(r"\D", "", candidate)
    if not 7 <= len(digits) <= 15 or ISO_DATE.fullmatch(candidate):
        return False
    return candidate[0] in "+(" or len(re.findall(r"[ .-]", candidate)) >= 2


def redact(text: str) -> tuple[str, dict[str, int]]:
    """The default redaction: e-mail addresses, card numbers (Luhn-valid) and phone numbers
    are replaced by ``[EMAIL]``, ``[CARD]`` and ``[PHONE]``; returns the text and counts."""
    counts: dict[str, int] = {}
    if "@" in text:  # (the cheap tests first: most text has neither)
        text, found = EMAIL.subn("[EMAIL]", text)  # no check: no Python call per address
        if found:
            counts["email"] = found
    if SEVEN_DIGITS.search(text):
        text = _checked_sub("card", CARD, text, lambda m: luhn(re.sub(r"\D", "", m)), counts)
        text = _checked_sub("phone", PHONE, text, _phone, counts)
    return text, counts


def _checked_sub(
    kind: str,
    pattern: re.Pattern[str],
    text: str,
    check: Callable[[str], bool],
    counts: dict[str, int],
) -> str:
    """Replace each match that passes ``check`` by ``[KIND]``, counting them in ``counts``."""

    def one(match: re.Match[str]) -> str:
        if not check(match.group()):
            return match.group()
        counts[kind] = counts.get(kind, 0) + 1
        return f"[{kind.upper()}]"

    return pattern.sub(one, text)


# --- conversations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    finished_only: bool = False  # only answers of runs that finished successfully
    min_rating: str | None = None  # "up": rated up, none down; "none": none rated down
    corrections: bool = False  # a correction replaces the answer it corrects
    agent: str | None = None  # only answers by this agent


def message_rating(feedback: Mapping[str, Mapping[str, Any]]) -> str | None:
    """One message's rating over its users: down if anyone's latest is down, else up if
    anyone's is, else None."""
    ratings = {entry.get("rating") for entry in feedback.values()}
    return "down" if "down" in ratings else ("up" if "up" in ratings else None)


def latest_correction(feedback: Mapping[str, Mapping[str, Any]]) -> str | None:
    corrected = [
        (entry.get("time") or 0, entry["correction"])
        for entry in feedback.values()
        if entry.get("rating") == "down" and isinstance(entry.get("correction"), str)
    ]
    return max(corrected)[1] if corrected else None


@dataclass
class Conversation:
    messages: list[dict[str, str]]
    rating: str  # "up", "down", "corrected" or "unrated"


def conversation(state: SessionState, filters: Filters = Filters()) -> Conversation | None:
    """The conversation of a fold, or None when nothing of it is kept: complete user, system
    and assistant messages in log order, ending with an assistant answer."""
    messages: list[dict[str, str]] = []
    ratings: set[str] = set()
    for message in state.messages.values():
        role = ROLES.get(message.role)
        if role is None or message.status != COMPLETE or not message.text.strip():
            continue
        text = message.text
        if role == "assistant":
            run = state.runs.get(message.run or "")
            if filters.finished_only and (run is None or run.status is not RunStatus.FINISHED):
                continue
            if (
                filters.agent is not None
                and (message.agent or (run and run.agent)) != filters.agent
            ):
                continue
            rating = message_rating(message.feedback)
            correction = latest_correction(message.feedback) if rating == "down" else None
            if filters.corrections and correction is not None:
                text, rating = correction, "corrected"
            if rating:
                ratings.add(rating)
        messages.append({"role": role, "content": text})
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()
    if not any(m["role"] == "user" for m in messages):
        return None
    overall = (
        "down" if "down" in ratings
        else "corrected" if "corrected" in ratings
        else "up" if "up" in ratings
        else "unrated"
    )  # fmt: skip
    if filters.min_rating == "up" and overall not in ("up", "corrected"):
        return None
    if filters.min_rating == "none" and overall == "down":
        return None
    return Conversation(messages, overall)


# --- splits ------------------------------------------------------------------------------


def parse_split(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> the train, dev and test fractions (non-negative, summing to 1)."""
    try:
        parts = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--split wants three numbers like 0.8,0.1,0.1, not {text!r}") from None
    if len(parts) != 3 or any(not 0 <= p <= 1 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise ValueError(f"--split wants three fractions summing to 1, not {text!r}")
    return parts[0], parts[1], parts[2]


def split_of(name: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """The split of the conversation of session ``name``: fixed by the name and the seed."""
    digest = hashlib.blake2b(f"{seed}\x00{name}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2**64
    if point < fractions[0]:
        return "train"
    if point < fractions[0] + fractions[1]:
        return "dev"
    return "test" if fractions[2] > 0 else ("dev" if fractions[1] > 0 else "train")


# --- the export ----------------------------------------------------------------------------


def _json_line(obj: dict[str, Any]) -> bytes:
    """Compact JSON, non-ASCII kept as is (``export`` passes orjson's equivalent)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Exporter:
    """Takes conversations one by one; keeps what the dataset card says, and the 8-byte
    fingerprints of the conversations kept (deduplication: memory grows by those only)."""

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    redactor: Redactor = redact
    encode: Callable[[dict[str, Any]], bytes] = _json_line
    seen: set[bytes] = field(default_factory=set)
    splits: Counter[str] = field(default_factory=Counter)
    ratings: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    skipped: int = 0
    messages: int = 0
    first: str | None = None
    last: str | None = None

    def take(self, name: str, created: str, found: Conversation | None) -> tuple[str, bytes] | None:
        """The conversation's split and JSONL line (UTF-8, no newline), or None if it is
        left out."""
        if found is None:
            self.skipped += 1
            return None
        messages = []
        redactor, redactions = self.redactor, self.redactions
        for message in found.messages:
            text, counts = redactor(message["content"])
            if counts:
                redactions.update(counts)
            messages.append({"role": message["role"], "content": text})
        line = self.encode({"messages": messages})
        fingerprint = hashlib.blake2b(line, digest_size=8).digest()
        if fingerprint in self.seen:
            self.duplicates += 1
            return None
        self.seen.add(fingerprint)
        split = split_of(name, self.seed, self.fractions)
        self.splits[split] += 1
        self.ratings[found.rating] += 1
        self.messages += len(messages)
        self.first = created if self.first is None or created < self.first else self.first
        self.last = created if self.last is None or created > self.last else self.last
        return split, line

    def card(self, **extra: Any) -> dict[str, Any]:
        """The dataset card: counts per split, date range, ratings and redactions."""
        return {
            "format": 'chat messages JSONL ({"messages": [{"role", "content"}]})',
            "conversations": sum(self.splits.values()),
            "messages": self.messages,
            "splits": {name: self.splits.get(name, 0) for name in SPLITS},
            "fractions": dict(zip(SPLITS, self.fractions, strict=True)),
            "seed": self.seed,
            "date_range": {"first": self.first, "last": self.last},
            "ratings": dict(sorted(self.ratings.items())),
            "redactions": dict(sorted(self.redactions.items())),
            "duplicates_dropped": self.duplicates,
            "sessions_left_out": self.skipped,
            **extra,
        }
