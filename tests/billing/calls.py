"""Builds finished calls the way the call-routing engine reports them, in seconds after a fixed start."""

from __future__ import annotations

import datetime as dt
import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as pb

START = dt.datetime(2024, 3, 5, 14, 0, 0, tzinfo=dt.UTC)


def after(seconds: float, start: dt.datetime = START) -> Timestamp:
    """start + seconds, exact to the nanosecond for values given in milliseconds."""
    ts = Timestamp()
    ts.FromDatetime(start)
    total_ns = ts.seconds * 1_000_000_000 + round(seconds * 1_000_000_000)
    return Timestamp(seconds=total_ns // 1_000_000_000, nanos=total_ns % 1_000_000_000)


def leg(contractor_id: str, rang: float, ended: float, answered: float | None = None,
        by: int = pb.ANSWERED_BY_PERSON, hangup: int = pb.HANGUP_SIDE_CALLER, reservation_id: str = "",
        mode: int = pb.CALL_MODE_UNSPECIFIED, start: dt.datetime = START) -> pb.Leg:
    out = pb.Leg(contractor_id=contractor_id, rang_at=after(rang, start), ended_at=after(ended, start),
                 answered_by=by if answered is not None else pb.ANSWERED_BY_NONE, hangup_side=hangup,
                 reservation_id=reservation_id, mode=mode)
    if answered is not None:
        out.answered_at.CopyFrom(after(answered, start))
    return out


def missed(contractor_id: str, rang: float = 0.5, ended: float = 20.5, **kw) -> pb.Leg:
    return leg(contractor_id, rang, ended, None, hangup=pb.HANGUP_SIDE_ENGINE, **kw)


def connected(contractor_id: str, seconds: float, answered: float = 3.0, **kw) -> pb.Leg:
    """A person answered at `answered` and both sides stayed on for `seconds`."""
    return leg(contractor_id, answered - 2.0, answered + seconds, answered, **kw)


def call(*legs: pb.Leg, zip_code: str = "94103", call_id: str | None = None, mode: int = pb.CALL_MODE_HUMAN,
         start: dt.datetime = START, recording: bool = True, transcript: bool = True,
         caller: str = "+14155550123") -> pb.FinishedCall:
    call_id = call_id or f"call-{uuid.uuid4().hex[:12]}"
    started = Timestamp()
    started.FromDatetime(start)
    out = pb.FinishedCall(call_id=call_id, zip=zip_code, caller_number=caller, started_at=started, mode=mode,
                          legs=list(legs))
    if recording:
        out.recording.CopyFrom(pb.Recording(uri=f"s3://recordings/{call_id}.wav", disclosure_played=True))
    if transcript:
        out.transcript_uri = f"s3://transcripts/{call_id}.txt"
    return out
