"""Checks the packaged zips against the templates: for every architecture given, every function
of target/serverless/<arch>/cloudformation-template-update-stack.json declares that
architecture, was packaged from target/lambda-<arch>/<function>/bootstrap.zip
(serverless-state.json), and that zip holds exactly one executable `bootstrap`, an ELF binary for
that architecture. Exits non-zero on any mismatch.

Usage: check_artifacts.py ARCH... (arm64 | x86_64)
"""

import json
import stat
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ELF e_machine values.
MACHINES = {"arm64": 0xB7, "x86_64": 0x3E}
SUFFIX = "LambdaFunction"


def problems(arch: str) -> list[str]:
    found = []
    template = ROOT / "target" / "serverless" / arch / "cloudformation-template-update-stack.json"
    resources = json.loads(template.read_text())["Resources"]
    state = json.loads((template.parent / "serverless-state.json").read_text())["service"]["functions"]
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    if not functions:
        found.append(f"{template}: no functions")
    for logical_id, function in sorted(functions.items()):
        name = logical_id.removesuffix(SUFFIX).lower()
        declared = function["Properties"].get("Architectures")
        if declared != [arch]:
            found.append(f"{arch}/{name}: the template declares {declared}")
        archive = ROOT / "target" / f"lambda-{arch}" / name / "bootstrap.zip"
        packaged = (ROOT / state.get(name, {}).get("package", {}).get("artifact", "?")).resolve()
        if packaged != archive:
            found.append(f"{arch}/{name}: packaged from {packaged}, not {archive}")
        if not archive.is_file():
            found.append(f"{archive}: missing")
            continue
        with zipfile.ZipFile(archive) as zipped:
            entries = zipped.infolist()
            if [e.filename for e in entries] != ["bootstrap"]:
                found.append(f"{archive}: holds {[e.filename for e in entries]}, not just bootstrap")
                continue
            mode = entries[0].external_attr >> 16
            if not mode & stat.S_IXUSR:
                found.append(f"{archive}: bootstrap is not executable ({oct(mode)})")
            header = zipped.read("bootstrap")[:20]
        machine = int.from_bytes(header[18:20], "little")
        if header[:4] != b"\x7fELF" or machine != MACHINES[arch]:
            found.append(f"{archive}: not an ELF binary for {arch} (e_machine {machine:#x})")
        else:
            print(f"  {arch:7} {name:11} ok ({archive.stat().st_size // 1024} KiB zipped)")
    return found


def main() -> int:
    found = [problem for arch in sys.argv[1:] for problem in problems(arch)]
    for problem in found:
        print(f"  {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
