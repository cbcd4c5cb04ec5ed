"""Start-up benchmark: the whole-process commands a user runs, this tree against an earlier revision.

    .venv/bin/python benchmarks/startup.py --before REV [--rounds 5] [--subscribers 1000]

Rows: `feedsvc --help`; `feedsvc build` on a copy of the bundled example (`examples/`); `feedsvc digest send`
to a fresh SQLite store with one queued edition for `--subscribers` confirmed subscribers into Postfix's
`smtp-sink` (the store filled as in `send.py`, not timed), with `smtp-source -s 8` sending as many messages of the
same size into the same sink in the same rounds. REV's `feedsvc` package is exported (`git archive`) to a
temporary folder and put first on PYTHONPATH; both run on this venv's Python and libraries, and both are
byte-compiled first, as an installed package is (this tree by `_paths`, REV's on export). Rounds are
interleaved (each round runs every row for both trees and the anchor), figures are medians, the load average is
printed beside them. Needs Postfix's tools as `send.py` does.
"""

from __future__ import annotations

import argparse
import compileall
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import _paths
import measure  # benchmarks/measure.py, beside this script
import send  # benchmarks/send.py: the sink, the store and the counts checked

TREES = ("before", "after")


def export(rev: str, folder: Path) -> Path:
    """REV's feedsvc package, unpacked into folder; returns the folder to put on PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(_paths.ROOT), "archive", rev, "feedsvc"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    compileall.compile_dir(folder / "feedsvc", quiet=1)
    return folder


def feedsvc(tree_path: Path, *args: str, cwd: Path) -> measure.Measured:
    """`python -m feedsvc` from tree_path; cwd must not hold a feedsvc package (`-m` puts it first on sys.path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")}
    env["PYTHONPATH"] = str(tree_path)
    return measure.run([sys.executable, "-m", "feedsvc", *args], env=env, cwd=cwd, sample_memory=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision to compare with (e.g. main)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--subscribers", type=int, default=1000)
    args = parser.parse_args()
    if not (send.find_tool("smtp-sink") and send.find_tool("smtp-source")):
        print("needs smtp-sink and smtp-source: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix", file=sys.stderr)
        return 2
    load_before = measure.load()
    rows = ("--help", "build", "digest send")
    timings: dict[tuple[str, str], list[measure.Measured]] = {}
    source: list[measure.Measured] = []
    with tempfile.TemporaryDirectory(prefix="feedsvc-startup-") as temp:
        folder = Path(temp)
        paths = {"before": export(args.before, folder / "before"), "after": _paths.ROOT}
        sink = send.Sink(folder)
        runs = 0

        def prepared() -> tuple[Path, int]:
            nonlocal runs
            runs += 1
            run_dir = folder / f"send{runs}"
            run_dir.mkdir()
            config = send.write_config(run_dir, sink.port)
            parts = send.fill_store(config, args.subscribers)
            return config, len(send._sample_message(config, *parts))

        try:
            for _ in range(args.rounds):
                for tree in TREES:
                    path = paths[tree]
                    timings.setdefault((tree, "--help"), []).append(feedsvc(path, "--help", cwd=folder))
                    site = folder / f"site-{tree}"
                    shutil.rmtree(site, ignore_errors=True)
                    shutil.copytree(_paths.ROOT / "examples", site)
                    timings.setdefault((tree, "build"), []).append(
                        feedsvc(path, "build", "--config", "feedsvc.toml", cwd=site)
                    )
                    config, size = prepared()
                    before = sink.messages()
                    result = feedsvc(path, "digest", "send", "--config", str(config), cwd=folder)
                    received = sink.messages() - before
                    states = send.delivery_states(config)
                    if received != args.subscribers or states != {"sent": args.subscribers}:
                        raise SystemExit(f"{tree}: sink got {received}, store {states}, for {args.subscribers}")
                    timings.setdefault((tree, "digest send"), []).append(result)
                source.append(send.smtp_source(sink.port, args.subscribers, size, sink))
        finally:
            sink.stop()

    print(f"{args.rounds} interleaved rounds (medians), whole processes; before = {args.before}, after = this tree; "
          f"load average before {load_before}, after {measure.load()}")
    print(f"{'command':<32} {'before: s, CPU s':>18} {'after: s, CPU s':>18}")
    for row in rows:
        label = f"digest send ({args.subscribers:,} subscribers)" if row == "digest send" else row
        cells = []
        for tree in TREES:
            seconds = statistics.median(m.seconds for m in timings[(tree, row)])
            cpu = statistics.median(m.cpu_seconds for m in timings[(tree, row)])
            cells.append(f"{seconds:.3f}, {cpu:.3f}")
        print(f"{label:<32} {cells[0]:>18} {cells[1]:>18}")
    anchor = statistics.median(m.seconds for m in source)
    ratios = [anchor / statistics.median(m.seconds for m in timings[(tree, "digest send")]) for tree in TREES]
    print(f"smtp-source -s 8 -d, same count and size: {anchor:.3f} s; digest send vs smtp-source: "
          f"before {ratios[0]:.2f}, after {ratios[1]:.2f} (target >= 0.6)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
