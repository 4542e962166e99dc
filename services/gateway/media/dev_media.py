"""Development recordings and transcripts: `callersync up` keeps a media folder the gateway serves file:// URIs
from, and the demo (and tests) write each call's audio and text there, so a call page plays and shows them."""

from __future__ import annotations

import io
import math
import pathlib
import struct
import wave

SAMPLE_RATE = 8000  # telephone audio


def tone_wav(seconds: float = 1.0, hertz: float = 440.0) -> bytes:
    """A short sine tone as 16-bit mono PCM WAV, which every browser plays."""
    frames = int(SAMPLE_RATE * seconds)
    samples = (int(8000 * math.sin(2 * math.pi * hertz * i / SAMPLE_RATE)) for i in range(frames))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return out.getvalue()


def write_call_media(media_dir: pathlib.Path, call_id: str, transcript: str,
                     seconds: float = 1.0) -> tuple[str, str]:
    """Writes the call's recording and transcript into the media folder; their file:// URIs, as the routing
    engine would report s3:// ones."""
    media_dir.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in call_id)
    recording, text = media_dir / f"{safe}.wav", media_dir / f"{safe}.txt"
    recording.write_bytes(tone_wav(seconds))
    text.write_text(transcript, encoding="utf-8")
    return recording.resolve().as_uri(), text.resolve().as_uri()
