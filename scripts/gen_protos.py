"""Regenerates gen/python from protos/ (python, grpc and mypy stubs, and a descriptor set with the protos'
comments); --check fails if it is stale.

The generated _pb2 modules embed descriptors without comments (source_code_info), so server reflection and
the OpenAPI document built from them would show no documentation. callersync/descriptors.binpb is the same
files with their comments and imports (protoc --include_source_info --include_imports):
services/runtime/descriptors.py serves it to reflection (`grpcurl describe`) and to the gateway's OpenAPI."""

import argparse
import filecmp
import pathlib
import shutil
import sys
import tempfile

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "gen" / "python"
WELL_KNOWN = pathlib.Path(grpc_tools.__file__).parent / "_proto"
# mypy-protobuf's plugins sit beside the interpreter, which need not be on PATH.
BIN = pathlib.Path(sys.executable).parent
DESCRIPTOR_SET = "descriptors.binpb"


def generate(out: pathlib.Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "callersync").rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "callersync").mkdir(exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{WELL_KNOWN}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--descriptor_set_out={out / 'callersync' / DESCRIPTOR_SET}",
        "--include_source_info",
        "--include_imports",
        *sources,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    # Regular packages, so `from callersync.wallet.v1 import wallet_pb2` resolves without path tricks.
    for folder in [out / "callersync", *(p for p in (out / "callersync").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()


def same_tree(a: pathlib.Path, b: pathlib.Path) -> bool:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    if files_a != files_b:
        print("differing files:", sorted(map(str, files_a ^ files_b)))
        return False
    stale = [str(f) for f in files_a if not filecmp.cmp(a / f, b / f, shallow=False)]
    if stale:
        print("stale files:", sorted(stale))
    return not stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if gen/python differs from a fresh generation")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(pathlib.Path(tmp))
            if not same_tree(pathlib.Path(tmp), OUT):
                sys.exit("gen/python is stale: run `python scripts/gen_protos.py` and commit the result")
        print("gen/python is current")
        return
    shutil.rmtree(OUT / "callersync", ignore_errors=True)
    generate(OUT)
    print(f"generated into {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
