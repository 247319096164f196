"""Deterministic reply text, token counting and embeddings for the fake upstream.

Token rule (used for prompts, replies and embedding inputs alike): a token is one match of
``\\w+|[^\\w\\s]`` -- a run of word characters or a single punctuation character. A reply is
produced as a list of such pieces (each carrying its leading space), so a streamed reply sends
exactly one piece per chunk and ``completion_tokens`` is simply the number of pieces.

Prompt tokens for chat: ``sum(tokens(message text) + 4 for each message) + 2``, where the
Anthropic ``system`` prompt, when present, counts as one more message. Only text parts of
list-of-blocks contents are counted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
DEFAULT_TOKENS = 16
MAX_REPLY_TOKENS = 8192
MESSAGE_OVERHEAD = 4
PROMPT_OVERHEAD = 2
ECHO_PIECES = 8
DEFAULT_DIMENSIONS = 8
MAX_DIMENSIONS = 8192

_PREFIX = ("Fake", " reply", " to", ":")
_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu amber bronze "
    "copper silver golden cobalt crimson indigo jade lemon maroon navy olive pearl quartz ruby "
    "sapphire teal umber violet wheat azure beige coral denim ember fern garnet hazel ivory "
    "khaki lilac mint ochre plum rose sand slate"
)
# 64 words so one hash byte picks one word (byte & 63) without modulo bias.
_FILLER = tuple(" " + word for word in _WORDS.split())
assert len(_FILLER) == 64


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` under the module's token rule."""
    return len(TOKEN_RE.findall(text))


def content_text(content: object) -> str:
    """Plain text of a message content: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_tokens(texts: Iterable[str]) -> int:
    """Prompt token count for a conversation given the text of each message."""
    return sum(count_tokens(text) + MESSAGE_OVERHEAD for text in texts) + PROMPT_OVERHEAD


@dataclass(frozen=True, slots=True)
class Reply:
    """A generated reply: its pieces (one token each) and whether ``max_tokens`` cut it."""

    pieces: tuple[str, ...]
    cut: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return len(self.pieces)


def make_reply(seed_material: object, last_user: str, natural: int, limit: int | None) -> Reply:
    """Build the reply for a request.

    ``seed_material`` is any JSON-able value identifying the request's (model, messages); it
    picks the filler words. ``natural`` is the length the reply would have on its own and
    ``limit`` the client's max_tokens. A cut reply is always a prefix of the natural one.
    """
    length = natural if limit is None else min(natural, limit)
    head = [*_PREFIX, *_echo_pieces(last_user)]
    filler_count = max(0, length - len(head))
    fillers = _filler_pieces(_seed(seed_material), filler_count)
    if filler_count and length == natural:
        fillers[-1] = "."  # an uncut reply ends like a sentence
    pieces = (head + fillers)[:length]
    return Reply(tuple(pieces), cut=limit is not None and limit < natural)


def _echo_pieces(text: str) -> list[str]:
    """First few tokens of ``text``, each with a leading space where the source had one."""
    pieces: list[str] = []
    for match in TOKEN_RE.finditer(text):
        if len(pieces) == ECHO_PIECES:
            break
        start = match.start()
        spaced = not pieces or text[start - 1].isspace()
        pieces.append((" " if spaced else "") + match.group())
    return pieces


def seed_hex(material: object) -> str:
    """A stable hex digest of any JSON-able material (ids that repeat for the same input)."""
    return _seed(material).hex()


def _seed(material: object) -> bytes:
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def _filler_pieces(seed: bytes, count: int) -> list[str]:
    """``count`` filler words, each picked by one byte of a hash chain started at ``seed``."""
    out: list[str] = []
    block = seed
    while len(out) < count:
        out.extend(_FILLER[byte & 63] for byte in block[: count - len(out)])
        block = hashlib.sha256(block).digest()
    return out


def embedding(text: str, dimensions: int) -> list[float]:
    """Deterministic unit-length vector for ``text`` (a function of the text only)."""
    raw = bytearray()
    counter = 0
    data = text.encode()
    while len(raw) < dimensions * 4:
        raw += hashlib.sha256(counter.to_bytes(4, "little") + data).digest()
        counter += 1
    ints = struct.unpack(f"<{dimensions}I", bytes(raw[: dimensions * 4]))
    vector = [value / 2**31 - 1.0 for value in ints]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    # Round through float32 so the JSON and base64 encodings carry identical values.
    return list(_as_float32([v / norm for v in vector]))


def _as_float32(values: Sequence[float]) -> tuple[float, ...]:
    return struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values))


def encode_base64(vector: Sequence[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32 array, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
