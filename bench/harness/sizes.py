"""Step 4b: what gets deployed — the release binary per function and its Lambda zip per
architecture (built by scripts/bench.sh with `cargo lambda build --output-format zip`)."""

import io
import os
import zipfile

import functions


def zipped(path):
    """Bytes of a zip holding `path` as `bootstrap`, deflated as cargo lambda does."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, "bootstrap")
    return len(buffer.getvalue())


def _zip_of(directory, name):
    """cargo lambda writes <lambda-dir>/<binary>/bootstrap.zip."""
    for candidate in (os.path.join(directory, name, "bootstrap.zip"), os.path.join(directory, f"{name}.zip")):
        if os.path.exists(candidate):
            return os.path.getsize(candidate)
    return None


def measure(ctx, zip_dirs):
    """zip_dirs: "x86_64=DIR,arm64=DIR" (either may be missing: that column stays empty)."""
    dirs = dict(part.split("=", 1) for part in zip_dirs.split(",") if "=" in part)
    names = list(functions.ORDER)
    # Functions without a Python counterpart: sized when their release binary was built.
    names += [name for name in functions.RUST_ONLY if os.path.exists(os.path.join(ctx.rust_dir, name))]
    rows = {}
    for name in names:
        binary = os.path.join(ctx.rust_dir, name)
        present = os.path.exists(binary)
        rows[name] = {
            "binary": os.path.getsize(binary) if present else None,
            "binary_zipped": zipped(binary) if present else None,
            **{f"zip_{arch}": _zip_of(directory, name) for arch, directory in dirs.items()},
        }
    return {"functions": rows, "zip_dirs": dirs, "rust_dir": ctx.rust_dir}
