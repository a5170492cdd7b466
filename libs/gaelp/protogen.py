"""Generates the protobuf/gRPC Python code (and mypy stubs) of protos/ into libs/gaelp/v1.

Run `python -m gaelp.protogen` after editing protos/; a test regenerates into a temporary directory
and fails when the committed code differs.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
OUTPUT_ROOT = REPO_ROOT / "libs"
PACKAGE_INIT = '"""Generated protobuf and gRPC code of protos/gaelp/v1; do not edit."""\n'


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    return sorted((proto_root / "gaelp" / "v1").glob("*.proto"))


def generate(output_root: Path = OUTPUT_ROOT, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Generate into output_root/gaelp/v1 and return the generated files."""
    target = output_root / "gaelp" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    scripts = Path(sys.executable).parent  # the mypy plugins live beside the interpreter
    files = [str(path.relative_to(proto_root)) for path in proto_files(proto_root)]
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={output_root}",
        f"--grpc_python_out={output_root}",
        f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={output_root}",
        f"--mypy_grpc_out={output_root}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {files}")
    (target / "__init__.py").write_text(PACKAGE_INIT)
    return sorted(p for p in target.iterdir() if p.suffix in {".py", ".pyi"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUTPUT_ROOT, help="root to generate under")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
