"""The demo's call recordings and transcripts: real files in the media folder of the `callersync up` it talks
to (the gateway serves them on the call pages), else s3:// addresses as a real telephony engine reports."""

from __future__ import annotations

import pathlib

from callersync.billing.v1 import billing_pb2 as bpb
from services.gateway.media.dev_media import write_call_media
from services.runtime import stack_file
from services.runtime.config import Settings

SPAM = ("Caller: Hello, this is an important message about your vehicle's extended warranty.\n"
        "Caller: Press one to speak to an agent before your coverage expires.\n")
HOMEOWNER = ("Caller: Hi, my roof started leaking in last night's storm, in ZIP {zip}.\n"
             "{answerer}: I'm sorry to hear that. Is water coming in now, and which room is it over?\n"
             "Caller: The back bedroom. Can someone come out this week?\n"
             "{answerer}: Yes, I can look at it tomorrow morning. What's the address?\n")


def media_dir(settings: Settings) -> pathlib.Path | None:
    """The media folder of the running `callersync up`, when this demo talks to its services; None otherwise."""
    data_dir = stack_file.find_data_dir()
    state = stack_file.read(data_dir) if data_dir is not None else None
    if not state or (state.get("targets") or {}).get("billing") != settings.target_of("billing"):
        return None
    folder = str(state.get("media_dir") or "")
    return pathlib.Path(folder) if folder else None


def transcript(zip_code: str, spam: bool, ai: bool) -> str:
    if spam:
        return SPAM
    return HOMEOWNER.format(zip=zip_code, answerer="AI agent" if ai else "Contractor")


def attach(call: bpb.FinishedCall, folder: pathlib.Path | None, run_id: str, spam: bool) -> None:
    """Sets the call's recording and transcript addresses, writing the files when there is a media folder."""
    if folder is None:
        recording = f"s3://callersync-demo/{run_id}/{call.call_id}.wav"
        text = f"s3://callersync-demo/{run_id}/{call.call_id}.txt"
    else:
        recording, text = write_call_media(
            folder, call.call_id, transcript(call.zip, spam, call.mode == bpb.CALL_MODE_AI_AGENT), seconds=2.0)
    call.recording.CopyFrom(bpb.Recording(uri=recording, disclosure_played=True))
    call.transcript_uri = text
