"""Issue titles and markers the groomer compares: normalised titles, likeness, issues the loops filed."""

from __future__ import annotations

import difflib
import re

from agentos.forge.base import Issue

__all__ = ["DUPLICATE_LABEL", "PROPOSED_LABEL", "STALE_LABEL", "is_loop_issue", "normalise_title", "similar_titles"]

STALE_LABEL = "agentos:stale"
DUPLICATE_LABEL = "agentos:duplicate"
PROPOSED_LABEL = "agentos:proposed"
_WORD = re.compile(r"[a-z0-9]+")
_PREFIX = re.compile(r"^\s*(?:\[[^\]]*\]\s*|(?:feat|fix|bug|chore|docs|refactor)(?:\([^)]*\))?:\s*)+", re.IGNORECASE)
_LOOP_MARKER = "<!-- agentos:key="
_LOOP_KEYS = ("incident:", "finding:", "weekly-report:", "sprint:")


def normalise_title(title: str) -> str:
    """Lower case words only, without ``[tags]`` or ``fix:``-style prefixes."""
    return " ".join(_WORD.findall(_PREFIX.sub("", title).lower()))


def similar_titles(a: str, b: str, ratio: float = 0.9) -> bool:
    """Equal normalised titles, or titles at least ``ratio`` alike that carry the same numbers."""
    na, nb = normalise_title(a), normalise_title(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    if re.findall(r"\d+", na) != re.findall(r"\d+", nb) or min(len(na), len(nb)) < 12:
        return False
    matcher = difflib.SequenceMatcher(None, na, nb, autojunk=False)
    return matcher.real_quick_ratio() >= ratio and matcher.quick_ratio() >= ratio and matcher.ratio() >= ratio


def is_loop_issue(issue: Issue) -> bool:
    """Filed by agentos itself (incidents, findings, reports, sprint notes): groomed by their own loop."""
    return any(_LOOP_MARKER + key in issue.body for key in _LOOP_KEYS)
