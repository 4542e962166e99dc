"""`callersync demo` against a `callersync up` stack gives its calls a real recording and transcript in up's media
folder, which the gateway serves; against any other stack it reports s3:// addresses as a telephony engine does."""

import pathlib

from callersync.billing.v1 import billing_pb2 as bpb
from services.demo import recordings
from services.gateway.media.resolver import LocalFile, MediaConfig, MediaResolver
from services.runtime import stack_file
from services.runtime.config import Settings


def _up_stack(data_dir: pathlib.Path, billing_target: str, media_dir: pathlib.Path) -> None:
    stack_file.write(data_dir, targets={"billing": billing_target}, media_dir=str(media_dir))


async def test_the_demo_writes_media_the_gateway_serves_into_ups_folder(tmp_path, monkeypatch):
    settings = Settings()
    media = tmp_path / "media"
    _up_stack(tmp_path, settings.target_of("billing"), media)
    monkeypatch.setenv("CALLERSYNC_DATA_DIR", str(tmp_path))
    assert recordings.media_dir(settings) == media

    call = bpb.FinishedCall(call_id="call-demo-1", zip="30301", mode=bpb.CALL_MODE_HUMAN)
    recordings.attach(call, recordings.media_dir(settings), "run1", spam=False)
    resolver = MediaResolver(MediaConfig(media_dir=str(media)))
    recording = resolver.resolve(call.recording.uri)
    assert isinstance(recording, LocalFile) and recording.path.read_bytes()[:4] == b"RIFF"
    assert "my roof started leaking" in await resolver.text(call.transcript_uri)


def test_against_another_stack_the_demo_reports_s3_addresses(tmp_path, monkeypatch):
    _up_stack(tmp_path, "127.0.0.1:1", tmp_path / "media")
    monkeypatch.setenv("CALLERSYNC_DATA_DIR", str(tmp_path))
    assert recordings.media_dir(Settings()) is None
    call = bpb.FinishedCall(call_id="call-demo-2")
    recordings.attach(call, None, "run1", spam=True)
    assert call.recording.uri == "s3://callersync-demo/run1/call-demo-2.wav"
    assert call.transcript_uri == "s3://callersync-demo/run1/call-demo-2.txt"
