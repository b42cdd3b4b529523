"""``imagetagger tag`` against the bare pipeline, and its memory at 1,000 vs 5,000 photos.

One run measures, on the benchmark photo set (``photos.py``: 12 photos from a
thumbnail to 12 megapixels, cycled; the files are hard links, so the disk holds 12):

1. **Bare pipeline**: ``predict_files`` (what ``imagetagger predict`` runs: read,
   decode + crop, model in batches of 16) in this process, on the same runtime and
   runtime options as the job's model actor, model loaded and warm before the clock.
2. **``imagetagger tag``** on the same 1,000 photos, as a subprocess on its own
   embedded Ray: the job's own figure (pipeline time, from its summary line) and the
   whole command's wall time (Ray's start and the actor's model load included).
3. **Memory**: the same command on 5,000 photos; PSS summed over every process of the
   job (driver, raylet, GCS, workers, actors), sampled every 0.2 s; the peak of each
   run is reported. Streaming means the peak does not grow with the collection.

Usage::

    python -m benchmarks.bulk_tag                          # lite0, 1,000 and 5,000 photos
    python -m benchmarks.bulk_tag --model efficientnet_lite2 --photos 500 --memory-photos 2000
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.model_throughput import format_machine, machine_info
from benchmarks.photos import build_photo_set
from benchmarks.procs import MARKER, kill_marked, marked_pids, process_name, process_pss

MIB = 2**20
_RATE = re.compile(r"; (\d+\.\d) s, (\d+\.\d) images/s")


@dataclass(frozen=True)
class TagRun:
    photos: int
    wall_s: float
    pipeline_s: float
    images_per_s: float  # the job's own figure (pipeline time)
    peak_pss_bytes: int
    peak_by_role: dict[str, int]
    summary: str

    @property
    def end_to_end_images_per_s(self) -> float:
        return self.photos / self.wall_s


def make_collection(root: Path, count: int) -> Path:
    """``count`` photos in ``root/<count>/``, hard links to one copy of each photo."""
    originals = root / "originals"
    originals.mkdir(exist_ok=True)
    photos = build_photo_set()
    for photo in photos:
        path = originals / photo.name
        if not path.exists():
            path.write_bytes(photo.data)
    folder = root / str(count)
    folder.mkdir()
    for index in range(count):
        photo = photos[index % len(photos)]
        os.link(originals / photo.name, folder / f"{index:05d}-{photo.name}")
    return folder


def bare_pipeline(folder: Path, model: str, runtime: str, interpreters: int) -> float:
    """images/s of ``predict_files`` over ``folder``, model warm, in this process."""
    from imagetagger.cli.predict import predict_files
    from imagetagger.models.runtimes import RuntimeOptions, load_model

    options = RuntimeOptions(
        runtime=runtime,  # type: ignore[arg-type]
        intra_op_threads=1 if runtime == "litert" else 0,
        interpreters=interpreters,
    )
    classifier = load_model(model, options)
    paths = sorted(str(p) for p in folder.iterdir())
    predict_files(classifier, paths[:16], top=5, minconf=None, out=io.StringIO())  # warm
    started = time.perf_counter()
    failures = predict_files(classifier, paths, top=5, minconf=None, out=io.StringIO())
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"the bare pipeline failed on {failures} photos")
    return len(paths) / elapsed


def _role(pid: int) -> str:
    """What a process of the job is: the driver, a Ray daemon, a worker or actor."""
    name = process_name(pid)
    if "imagetagger.cli" in name:
        return "driver (imagetagger tag)"
    for daemon in ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py"):
        if daemon in name:
            return daemon
    return "workers and actors" if name.startswith("ray::") else "other Ray processes"


def _sample_peak(token: str, stop: threading.Event, peak: list[Any]) -> None:
    """Keep in ``peak`` the largest PSS total seen, and its split by role."""
    while not stop.is_set():
        roles: dict[str, int] = {}
        for pid in marked_pids(token):
            try:
                pss = process_pss(pid)
            except OSError:
                continue
            role = _role(pid)
            roles[role] = roles.get(role, 0) + pss
        total = sum(roles.values())
        if total > peak[0]:
            peak[0], peak[1] = total, roles
        stop.wait(0.2)


def tag_command(
    folder: Path, out: Path, model: str, runtime: str, interpreters: int, *extra: str
) -> TagRun:
    """Run ``imagetagger tag`` on ``folder`` as a subprocess; time it and sample its PSS."""
    token = uuid.uuid4().hex
    env = {**os.environ, MARKER: token}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "imagetagger.cli", "tag", str(folder), "--out", str(out)]
    command += ["--model", model, "--runtime", runtime, "--top", "5"]
    command += ["--interpreters", str(interpreters), *extra]
    stop, peak = threading.Event(), [0, {}]
    sampler = threading.Thread(target=_sample_peak, args=(token, stop, peak), daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    finally:
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        kill_marked(token)
    if done.returncode != 0:
        log = out.with_suffix(".stderr.log")
        log.write_text(done.stderr)
        tail = "\n".join(done.stderr.splitlines()[-60:])
        raise RuntimeError(f"imagetagger tag failed ({done.returncode}); stderr tail:\n{tail}")
    summary = done.stdout.strip().splitlines()[-1]
    match = _RATE.search(summary)
    if not match:
        raise RuntimeError(f"no summary line in the output: {done.stdout[-1000:]}")
    return TagRun(
        photos=sum(1 for _ in folder.iterdir()),
        wall_s=wall,
        pipeline_s=float(match.group(1)),
        images_per_s=float(match.group(2)),
        peak_pss_bytes=peak[0],
        peak_by_role=peak[1],
        summary=summary,
    )


def report(model: str, runtime: str, bare: float, small: TagRun, large: TagRun) -> str:
    startup = small.wall_s - small.pipeline_s
    runs = (small, large)
    lines = [
        f"## imagetagger tag vs the bare pipeline ({model}, {runtime})",
        "",
        format_machine(machine_info()),
        "",
        "| run | photos | images/s | vs bare |",
        "|---|---:|---:|---:|",
        f"| bare pipeline (`predict_files`, model warm) | {small.photos} | {bare:.1f} | 1.00 |",
        f"| `imagetagger tag`, the job (its summary) | {small.photos} | "
        f"{small.images_per_s:.1f} | {small.images_per_s / bare:.2f} |",
        f"| `imagetagger tag`, whole command (Ray start, model load) | {small.photos} | "
        f"{small.end_to_end_images_per_s:.1f} | {small.end_to_end_images_per_s / bare:.2f} |",
        f"| `imagetagger tag`, the job | {large.photos} | {large.images_per_s:.1f} | "
        f"{large.images_per_s / bare:.2f} |",
        "",
        f"Command wall time {small.wall_s:.1f} s for {small.photos} photos, of which "
        f"{startup:.1f} s before and after the pipeline (Python and Ray start, shutdown).",
        "",
        "| peak PSS (at the peak sample) | "
        + " | ".join(f"{r.photos} photos" for r in runs)
        + " |",
        "|---|---:|---:|",
        *(
            f"| {role} | "
            + " | ".join(f"{r.peak_by_role.get(role, 0) / MIB:,.0f} MiB" for r in runs)
            + " |"
            for role in sorted({role for r in runs for role in r.peak_by_role})
        ),
        "| **whole job** | "
        + " | ".join(f"**{r.peak_pss_bytes / MIB:,.0f} MiB**" for r in runs)
        + " |",
        "",
        f"Peak memory ratio {large.photos // small.photos}x the photos: "
        f"{large.peak_pss_bytes / max(small.peak_pss_bytes, 1):.2f}x the memory.",
        "",
        f"Summary lines: `{small.summary}` / `{large.summary}`",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--runtime", default="litert", choices=("litert", "tensorflow"))
    parser.add_argument("--interpreters", type=int, default=2)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--memory-photos", type=int, default=5000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imagetagger-bulk-bench-") as tmp:
        root = Path(tmp)
        small_dir = make_collection(root, args.photos)
        large_dir = make_collection(root, args.memory_photos)
        print(f"bare pipeline on {args.photos} photos...", flush=True)
        bare = bare_pipeline(small_dir, args.model, args.runtime, args.interpreters)
        print(f"imagetagger tag on {args.photos} photos...", flush=True)
        small = tag_command(
            small_dir, root / "small.parquet", args.model, args.runtime, args.interpreters
        )
        print(f"imagetagger tag on {args.memory_photos} photos...", flush=True)
        large = tag_command(
            large_dir, root / "large.parquet", args.model, args.runtime, args.interpreters
        )
    print()
    print(report(args.model, args.runtime, bare, small, large))


if __name__ == "__main__":
    main()
