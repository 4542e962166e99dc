"""A request's facts: the message as stored and hashed, so a re-send is told from the same id with other facts."""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message


def facts_of(message: Message) -> bytes:
    """The facts as stored and hashed: one serialization serves both."""
    return message.SerializeToString(deterministic=True)


def facts_hash(message: Message, facts: bytes | None = None) -> bytes:
    return hashlib.sha256(facts if facts is not None else facts_of(message)).digest()
