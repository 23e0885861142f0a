"""The "before" numbers some sections compare with (bench/baseline-<name>.json): what a run keeps
(`--save-<name>-baseline NOTE`), and reading them back."""

import json
import os


def path(root, name):
    return os.path.join(root, "bench", f"baseline-{name}.json")


def load(root, name):
    """The kept baseline `name`, or None."""
    if not os.path.exists(path(root, name)):
        return None
    with open(path(root, name)) as text:
        return json.load(text)


def keep(root, name, results, note, section):
    """Writes baseline `name`: where the run came from, with `note`, and `section` (the step's own
    numbers). Answers the file's path."""
    kept = {
        "note": note,
        "generated_at": results.get("generated_at"),
        "commit": results.get("commit"),
        "built_from": results.get("built_from"),
        **section,
    }
    with open(path(root, name), "w") as out:
        json.dump(kept, out, indent=1, default=str)
        out.write("\n")
    return path(root, name)
