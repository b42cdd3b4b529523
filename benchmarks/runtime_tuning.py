"""Which runtime settings to serve with: LiteRT threads x interpreters, and batch size.

Every setting runs the same warm model on the same real photos, in this process, one
after the other, so the figures compare within one run (absolute numbers swing up to
2x between days on a shared machine). TensorFlow at its served settings is the
reference. ``workers`` threads call ``predict_proba`` back to back, as the
ModelDeployment's inference threads do. The memory column is this process's peak RSS
after loading and running the setting (LiteRT first: TensorFlow's is far larger).

Usage::

    python -m benchmarks.runtime_tuning                      # efficientnet_lite2
    python -m benchmarks.runtime_tuning --models efficientnet_lite0 --seconds 2
"""

from __future__ import annotations

import argparse
import gc
import resource
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.model_throughput import concurrent_images_per_s, format_machine, machine_info
from imagetagger.models.runtimes import RuntimeOptions, load_model


@dataclass(frozen=True)
class Setting:
    label: str
    options: RuntimeOptions
    batch_size: int
    workers: int


def settings_to_try() -> list[Setting]:
    litert = [
        Setting(
            f"litert {t} thread(s) x {p} interpreter(s), batch 1",
            RuntimeOptions(runtime="litert", intra_op_threads=t, interpreters=p),
            1,
            p,
        )
        for t, p in ((1, 1), (2, 1), (1, 2), (2, 2))
    ]
    tensorflow = [
        Setting(
            "tensorflow 1 intra-op thread x 2 batches, batch 16",
            RuntimeOptions(runtime="tensorflow", intra_op_threads=1, inter_op_threads=1),
            16,
            2,
        )
    ]
    return litert + tensorflow


def litert_batch_images_per_s(model: str, batch_size: int, seconds: float) -> float:
    """One 1-thread interpreter resized to ``batch_size`` (the runtime itself runs batch 1)."""
    import time

    from ai_edge_litert.interpreter import Interpreter

    from benchmarks.model_throughput import sample_batch
    from imagetagger.models.litert import ensure_flatbuffer
    from imagetagger.models.specs import get_spec

    spec = get_spec(model)
    interpreter = Interpreter(model_path=str(ensure_flatbuffer(model)), num_threads=1)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [batch_size, spec.input_size, spec.input_size, 3])
    interpreter.allocate_tensors()
    batch = sample_batch(spec.input_size, batch_size, spec.crop_padding)
    interpreter.set_tensor(index, batch)
    interpreter.invoke()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        interpreter.set_tensor(index, batch)
        interpreter.invoke()
        done += batch_size
    return done / (time.perf_counter() - started)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(models: Sequence[str], seconds: float) -> str:
    lines = [
        "| model | setting | img/s | vs tensorflow | peak RSS MiB |",
        "|---|---|---:|---:|---:|",
    ]
    for model in models:
        rows = []
        for setting in settings_to_try():
            classifier = load_model(model, setting.options)
            rate = concurrent_images_per_s(
                classifier, setting.batch_size, setting.workers, min_time_s=seconds
            )
            rows.append((setting.label, rate, peak_rss_mib()))
            print(f"{model} {setting.label}: {rate:.1f} img/s", flush=True)
            del classifier
            gc.collect()
        for batch_size in (1, 8):
            rate = litert_batch_images_per_s(model, batch_size, seconds)
            rows.insert(-1, (f"litert 1 thread x 1 raw interpreter, batch {batch_size}", rate, 0))
            print(f"{model} raw interpreter batch {batch_size}: {rate:.1f} img/s", flush=True)
        reference = rows[-1][1]
        for label, rate, rss in rows:
            rss_text = f"{rss:.0f}" if rss else "-"
            lines.append(
                f"| {model} | {label} | {rate:.1f} | {rate / reference:.2f} | {rss_text} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite2"])
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per setting")
    args = parser.parse_args(argv)
    table = run(args.models, args.seconds)
    print()
    print(table)
    print()
    print(format_machine(machine_info()))


if __name__ == "__main__":
    main()
