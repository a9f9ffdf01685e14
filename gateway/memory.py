"""Conversation memory: the last few exchanges per conversation id, forgotten after a time-to-live.

Why bounded both ways: follow-ups ("and tomorrow?") need the previous turn and
its tool slots, but a gateway serving many devices must not grow without end,
so each conversation keeps `max_turns` exchanges, idle ones expire after
`ttl_s`, and at most `max_conversations` are kept (least recently used first out).
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from voxlens.timing import Clock, monotonic


@dataclass
class Conversation:
    turns: deque = field(default_factory=deque)     # (user_text, assistant_text, private, turn_id)
    slots: dict[str, dict[str, str]] = field(default_factory=dict)  # last slots per intent/tool name
    last_used_s: float = 0.0


class ConversationMemory:
    def __init__(self, max_turns: int = 8, ttl_s: float = 600.0, max_conversations: int = 10000,
                 clock: Clock = monotonic) -> None:
        self.max_turns = max_turns
        self.ttl_s = ttl_s
        self.max_conversations = max_conversations
        self._clock = clock
        self._items: OrderedDict[str, Conversation] = OrderedDict()

    def _get(self, conversation_id: str) -> Conversation | None:
        conv = self._items.get(conversation_id)
        if conv is None:
            return None
        if self._clock() - conv.last_used_s > self.ttl_s:
            del self._items[conversation_id]
            return None
        return conv

    def history(self, conversation_id: str, include_private: bool = True) -> list[dict[str, Any]]:
        """Chat messages of the remembered exchanges, oldest first; a remote tier is never shown private ones."""
        conv = self._get(conversation_id) if conversation_id else None
        if conv is None:
            return []
        out: list[dict[str, Any]] = []
        for user, assistant, private, _turn_id in conv.turns:
            if private and not include_private:
                continue
            out += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        return out

    def slots(self, conversation_id: str, name: str) -> dict[str, str]:
        conv = self._get(conversation_id) if conversation_id else None
        return dict(conv.slots.get(name, {})) if conv else {}

    def remember(self, conversation_id: str, user: str, assistant: str,
                 tool: str = "", slots: dict[str, str] | None = None, private: bool = False, turn_id: str = "") -> None:
        if not conversation_id:
            return
        conv = self._get(conversation_id) or Conversation(turns=deque(maxlen=self.max_turns))
        conv.turns.append((user, assistant, private, turn_id))
        if tool and slots is not None:
            conv.slots[tool] = dict(slots)
        conv.last_used_s = self._clock()
        self._items[conversation_id] = conv
        self._items.move_to_end(conversation_id)
        while len(self._items) > self.max_conversations:
            self._items.popitem(last=False)

    def forget(self, conversation_id: str, turn_id: str) -> bool:
        """Drop one exchange: the device cancelled a turn after it had ended (a preemptive question the user's
        final words did not confirm), so it must not be the history of the next one. Its tool slots stay."""
        conv = self._get(conversation_id) if conversation_id and turn_id else None
        if conv is None:
            return False
        kept = [t for t in conv.turns if t[3] != turn_id]
        if len(kept) == len(conv.turns):
            return False
        conv.turns = deque(kept, maxlen=conv.turns.maxlen)
        return True

    def __len__(self) -> int:
        return len(self._items)
