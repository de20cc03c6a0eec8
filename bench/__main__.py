"""Run every benchmark (or the ones named) and print one JSON object per line.

    python -m bench                 # all
    python -m bench placement e2e   # some

Each benchmark compares side by side in one run (ours against a baseline or the
raw runtime) and reports ratios, because these machines are shared and noisy.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time

import bench


def available() -> list[str]:
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules(bench.__path__)
                  if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}",
              file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        started = time.monotonic()
        try:
            result = module.run()
        except Exception as error:  # one broken benchmark must not hide the others
            failed += 1
            result = {"error": f"{type(error).__name__}: {error}"}
        result = {"benchmark": name, "seconds": round(time.monotonic() - started, 2), **result}
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
