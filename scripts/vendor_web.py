"""Copy the browser runtime of kerakp's web export (LiteRT.js, pinned in web/package-lock.json) from
web/node_modules into kerakp/assets/web/vendor/, with its licence, so `pip install kerakp` needs no Node.

    cd web && npm ci && cd .. && python scripts/vendor_web.py

Only the files the page loads are copied: the ES module of @litertjs/core and of @litertjs/wasm-utils, and two
of LiteRT.js's WebAssembly builds (relaxed SIMD, and the compatible one for browsers without it; the threaded
build is left out: it would add 9.4 MB to every exported page). It also builds the page's own WebAssembly,
kerakp/assets/web/app/area.wasm, from area.wat with wabt (a development dependency in web/package.json).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "web" / "node_modules" / "@litertjs"
VENDOR = ROOT / "kerakp" / "assets" / "web" / "vendor"
FILES = {   # package -> files copied, relative to the package's folder
    "core": ["dist/index.js", "wasm/litert_wasm_internal.js", "wasm/litert_wasm_internal.wasm",
             "wasm/litert_wasm_compat_internal.js", "wasm/litert_wasm_compat_internal.wasm"],
    "wasm-utils": ["dist/index.js"],
}
AREA = ROOT / "kerakp" / "assets" / "web" / "app" / "area.wat"
LICENCE = Path("/usr/share/common-licenses/Apache-2.0")   # the packages name Apache-2.0 but ship no licence text


def build_wasm(source: Path, target: Path) -> None:
    """`source` (WebAssembly text, SIMD) assembled into `target` by wabt's wat2wasm."""
    script = ("const fs = require('fs'); require('wabt')().then((wabt) => { const m = wabt.parseWat(process.argv[1], "
              "fs.readFileSync(process.argv[1], 'utf8'), {simd: true, bulk_memory: true}); m.validate(); "
              "fs.writeFileSync(process.argv[2], Buffer.from(m.toBinary({}).buffer)); });")
    subprocess.run(["node", "-e", script, str(source), str(target)], cwd=ROOT / "web", check=True)


def main() -> None:
    if not MODULES.is_dir():
        raise SystemExit(f"{MODULES}: not found; run `npm ci` in web/ first")
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    lines = ["# Vendored browser runtime", "", "Copied by scripts/vendor_web.py from the npm registry's packages "
             "(versions pinned in web/package-lock.json); Apache License 2.0, text in LICENSE.", ""]
    for package, files in FILES.items():
        meta = json.loads((MODULES / package / "package.json").read_text())
        lines.append(f"- `{meta['name']}` {meta['version']} ({meta['license']}), {meta['repository']['url']}")
        for file in files:
            target = VENDOR / package / Path(file).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(MODULES / package / file, target)
    # the core module imports its helper by package name; the page's import map would do, but a relative
    # import keeps the folder working from any server without one
    for module in VENDOR.glob("*/index.js"):   # and without the source-map comment (the maps are not copied)
        text = module.read_text().replace('from "@litertjs/wasm-utils"', 'from "../wasm-utils/index.js"')
        module.write_text(re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", text))
    shutil.copyfile(LICENCE, VENDOR / "LICENSE")
    (VENDOR / "NOTICE.md").write_text("\n".join(lines) + "\n")
    build_wasm(AREA, AREA.with_suffix(".wasm"))
    size = sum(f.stat().st_size for f in VENDOR.rglob("*") if f.is_file())
    print(f"vendored {VENDOR.relative_to(ROOT)} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
