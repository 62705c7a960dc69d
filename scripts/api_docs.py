"""Build kerakp's API reference from its docstrings (pdoc) into a folder; any warning fails the build.

    python scripts/api_docs.py docs/api      # then open docs/api/index.html
"""
from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path


def main(out: str) -> int:
    import kerakp

    # every module but the entry point; the root's public names load lazily, which pdoc cannot follow
    modules = [f"kerakp.{m.name}" for m in pkgutil.iter_modules(kerakp.__path__) if m.name != "__main__"]
    env = {**os.environ, "PDOC_ALLOW_EXEC": "1"}   # TensorFlow asks the platform for its processor on import
    return subprocess.run([sys.executable, "-W", "error", "-m", "pdoc", *modules, "-o", str(Path(out))], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/api"))
