"""`nas lut build|show|predict|validate|kit|import`: latency lookup tables of devices."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core.console import console, err_console, print_json, warn
from core.errors import UserError
from core.provenance import provenance
from evaluators.latency import (
    LutStore,
    MeasuredPredictor,
    RooflinePredictor,
    get_predictor,
    list_devices,
)
from evaluators.latency.devices import DEVICES
from evaluators.latency.image import ImageLatency, every_pipeline_signature, pipeline_signatures, predict_image
from evaluators.latency.imported import csv_files, read_measurements
from evaluators.latency.kit import (
    check_fits,
    kit_blocks,
    read_manifest,
    resolve_formats,
    write_kit,
)
from evaluators.latency.predictor import DEFAULT_ROUNDS
from evaluators.latency.record import save_record
from evaluators.latency.signature import BlockSignature, space_signatures
from evaluators.latency.store import Lut, check_device_name
from evaluators.latency.validate import held_out_sample, run_validation, write_scatter
from evaluators.memory import parse_size
from nas.arch_input import resolve_arch
from nas.commands.sampling_options import DECODER, GUIDANCE, STEPS_HELP, sampling_from
from search_spaces.config import ArchConfig
from search_spaces.pipeline import SamplingConfig
from search_spaces.space import get_space

lut_app = typer.Typer(no_args_is_help=True, add_completion=False, help=(
    "Latency lookup tables: build on this machine (cpu, cuda, onnxruntime), import phone measurements, "
    "predict and validate. Roofline phone profiles (iphone15pro, pixel8, ...) are ESTIMATES."))

DEVICE_HELP = "Device: cpu, cuda, onnxruntime, a roofline phone (estimate), or an imported LUT's name."
LutDir = typer.Option(None, "--lut-dir", help="LUT directory (default: $NAS_LUT_DIR or the user cache).")
ImageSize = typer.Option(512, "--image-size", help="Image side in pixels; latents are image_size // 8.")
Threads = typer.Option(1, "--threads", help="Intra-op threads of measured CPU backends (part of the fingerprint).")
Rounds = typer.Option(DEFAULT_ROUNDS, "--rounds", help="Interleaved timing rounds per block, after 10 warm-up runs "
                      "(median after outlier rejection).")
Capture = typer.Option(None, "--capture", help="How torch runs what it times: graph (CUDA graphs; cuda's default) or "
                       "eager (cpu's only mode). Part of the fingerprint.")
Dtype = typer.Option(None, "--dtype", help="float32 (cpu, onnxruntime default), float16 (cuda default, as deployed) "
                     "or bfloat16. Part of the fingerprint.")
Space = typer.Option("unet_mobile", "--space", help="Search space.")
Json = typer.Option(False, "--json", help="Print one JSON object.")
SpeedProbeOpt = typer.Option(None, "--speed-probe/--no-speed-probe", help="CPU: time a fixed reference workload at "
                             "every round and express latencies at the table's reference speed (a shared VM's "
                             "speed drifts by 10-50% over minutes). Default: as the stored table, else on.")
MaxMemory = typer.Option(None, "--max-memory", help="Refuse to build blocks or whole UNets whose estimated memory "
                         "exceeds this (e.g. 8GiB; default: the available memory).")


@contextlib.contextmanager
def _progress(label: str) -> Iterator:
    """A rich progress bar with ETA on stderr (a terminal only: logs get the summary lines); yields a
    (done, total) callback."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _selection(space: str, sample: int, seed: int, preset: Optional[str], config: Optional[Path]
               ) -> tuple[list[ArchConfig] | None, str]:
    """The architectures a command works on: one (--preset/--config), N sampled, or None for the whole space."""
    if preset is not None or config is not None:
        if sample:
            raise UserError("give --sample or one of --preset/--config, not both")
        arch, label = resolve_arch(preset, config)
        return [arch], label
    if sample < 0:
        raise UserError(f"--sample must be >= 0, got {sample}")
    if sample:
        return get_space(space).sample_random(sample, seed), f"{sample} archs of {space} (seed {seed})"
    return None, f"every block of {space}"


def _announce(predictor: MeasuredPredictor, what: str, configs: list[ArchConfig]) -> None:
    """One line on stderr before minutes of end-to-end timing: what, how many whole-UNet timings, how long
    (after refusing models too large for the memory: a refusal comes first, alone)."""
    predictor.check_models_fit(configs)
    seconds = predictor.seconds_estimate(configs)
    took = "time unknown (no measured block to go by)" if seconds is None else (
        f"about {seconds / 60:.0f} min" if seconds >= 90 else f"about {seconds:.0f} s") + (
        " of compute (estimated from this table's speed; longer on a busy machine)")
    err_console.print(f"{what}: {len(configs)} whole-UNet timings at {predictor.image_size}px, {took}",
                      soft_wrap=True, markup=False)


def _measured(device: str, lut_dir: Optional[Path], image_size: int, threads: int, rounds: int,
              replace: bool = False, max_memory: Optional[str] = None, capture: Optional[str] = None,
              dtype: Optional[str] = None, speed_probe: Optional[bool] = None) -> MeasuredPredictor:
    predictor = get_predictor(device, lut_dir, image_size, threads=threads, rounds=rounds, replace=replace,
                              max_memory=None if max_memory is None else parse_size(max_memory), capture=capture,
                              dtype=dtype, speed_probe=speed_probe)
    if not isinstance(predictor, MeasuredPredictor):
        raise UserError(f"device {device!r} is not measured on this machine (measured: cpu, cuda, onnxruntime)")
    return predictor


def build(device: str = typer.Option(..., "--device", help="cpu, cuda or onnxruntime."),
          space: str = Space, image_size: int = ImageSize,
          sample: int = typer.Option(0, "--sample", help="Only the blocks of N sampled archs (0: whole space)."),
          seed: int = typer.Option(0, "--seed", help="Seed of --sample."),
          preset: Optional[str] = typer.Option(None, "--preset", help="Only the blocks of this preset."),
          config: Optional[Path] = typer.Option(None, "--config", help="Only the blocks of this ArchConfig JSON."),
          calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                         help="Fit the end-to-end overhead on the calibration archs (presets + a fixed random sample)."),
          threads: int = Threads, rounds: int = Rounds, lut_dir: Optional[Path] = LutDir,
          replace: bool = typer.Option(False, "--replace", help="Start afresh, replacing a stored LUT "
                                       "(needed when it was measured on another fingerprint, or is corrupt)."),
          max_memory: Optional[str] = MaxMemory, capture: Optional[str] = Capture, dtype: Optional[str] = Dtype,
          speed_probe: Optional[bool] = SpeedProbeOpt, json_out: bool = Json) -> None:
    """Measure every block (of the space, or of some archs) on a device; interrupted builds resume.

    With --calibrate (the default) and no calibration stored for this image size, it then times the
    calibration architectures end to end; the line before says how many and for about how long.
    """
    predictor = _measured(device, lut_dir, image_size, threads, rounds, replace, max_memory, capture, dtype,
                          speed_probe)
    configs, label = _selection(space, sample, seed, preset, config)
    sigs = space_signatures(space, image_size, layouts=predictor.layouts) if configs is None else list(
        {s.key: s for c in configs for _, s in predictor.signatures(c)}.values())
    todo = [s for s in sigs if s.key not in predictor.lut.entries]
    start = time.perf_counter()
    try:
        with _progress(f"{device}: measuring blocks") as tick:
            measured = predictor.measure_blocks(todo, tick)
        cal = None
        if calibrate and predictor.calibration() is None:
            _announce(predictor, "end-to-end calibration", predictor.calibration_configs())
            with _progress(f"{device}: end-to-end calibration") as tick:
                predictor.calibrate(progress=tick)
        cal = predictor.calibration()
    except KeyboardInterrupt:
        kept = len(predictor.lut.entries)
        err_console.print(f"interrupted: {kept} blocks are kept in {predictor.path}; run the same command to resume")
        raise typer.Exit(130) from None
    seconds = time.perf_counter() - start
    summary = {"device": device, "lut": str(predictor.path), "selection": label, "image_size": image_size,
               "blocks": len(sigs), "measured_now": measured, "already_present": len(sigs) - len(todo),
               "lut_entries": len(predictor.lut.entries), "seconds": seconds,
               "calibration": None if cal is None else {"scale": cal.scale, "offset_ms": cal.offset_ms}}
    if json_out:
        print_json(summary)
        return
    console.print(f"{device}: {len(sigs)} blocks of {label} at {image_size}px: measured {measured} now, "
                  f"{len(sigs) - len(todo)} already present, in {seconds:.1f} s")
    if cal is not None:
        console.print(f"calibration: measured = {cal.scale:.3f} x sum(blocks) + {cal.offset_ms:.2f} ms")
    console.print(f"wrote {predictor.path} ({len(predictor.lut.entries)} blocks)")


def show(device: str = typer.Option(..., "--device", help=DEVICE_HELP), space: str = Space,
         image_size: int = ImageSize, threads: int = Threads, lut_dir: Optional[Path] = LutDir,
         json_out: bool = Json) -> None:
    """Coverage of the space and metadata of a device's LUT (or the roofline profile of a phone)."""
    store = LutStore(lut_dir)
    check_device_name(device)
    if device in DEVICES and not store.path(device).exists():
        predictor = get_predictor(device, lut_dir, image_size, threads=threads)
        if isinstance(predictor, RooflinePredictor):
            info = {"device": device, "kind": "roofline", "estimate": True, "coverage": 1.0,
                    "profile": predictor.profile.describe()}
            _show(info, json_out)
            return
    lut = store.load(device)
    if lut is None:
        if device in DEVICES:
            info = {"device": device, "kind": "measured", "lut": str(store.path(device)), "entries": 0,
                    "coverage": 0.0, "note": f"no LUT yet: nas lut build --device {device}"}
            _show(info, json_out)
            return
        from evaluators.latency.devices import unknown_device
        raise unknown_device(device, store)
    layouts = lut.kind == "measured" and DEVICES.get(device).layout_sensitive
    space_keys = {s.key for s in space_signatures(space, image_size, layouts=layouts)}
    current = None
    if lut.kind == "measured":
        try:
            # the speed probe is the table's choice, not the device's: compare the device with it as stored
            probe = {"speed_probe": lut.fingerprint.get("speed_probe", "off")}
            current = DEVICES.create(device, threads=threads).fingerprint() | probe
        except UserError:
            current = None
    info = {"device": device, "kind": lut.kind, "lut": str(store.path(device)), "entries": len(lut.entries),
            "coverage": len(space_keys & set(lut.entries)) / len(space_keys), "space": space,
            "image_size": image_size, "space_blocks": len(space_keys),
            "fingerprint": lut.fingerprint, "fingerprint_matches": None if current is None else current == {"speed_probe": "off"} | lut.fingerprint,
            "calibration": {f"{int(k) * 8}px": {"scale": v["scale"], "offset_ms": v["offset_ms"]}
                            for k, v in lut.calibration.items()},
            "conditions": lut.conditions}
    _show(info, json_out)


def _show(info: dict, json_out: bool) -> None:
    if json_out:
        print_json(info)
        return
    table = Table("field", "value", title=f"LUT of {info['device']}" + (" (ESTIMATE)" if info.get("estimate") else ""))
    for key, value in info.items():
        table.add_row(key, f"{value:.1%}" if key == "coverage" else str(value))
    console.print(table)


def image_prediction(device: str, arch: ArchConfig, sampling: SamplingConfig, lut_dir: Path | None, image_size: int,
                     threads: int = 1, max_memory: int | None = None, calibrate: bool = False) -> ImageLatency:
    """Per-image latency of `arch` on `device`: measured devices measure missing blocks (the UNet's, the text
    encoder and the decoder) with a progress bar, and fit the calibration first with `calibrate`."""
    predictor = get_predictor(device, lut_dir, image_size, threads=threads, max_memory=max_memory)
    if isinstance(predictor, MeasuredPredictor):
        extra = [sig for _, sig in pipeline_signatures(predictor, arch, sampling) if sig.key not in predictor.lut.entries]
        with _progress(f"{device}: measuring missing blocks") as tick:
            predictor.ensure([arch], tick)
            if extra:
                predictor.measure_blocks(extra, tick)
        _calibration(predictor, calibrate, image_size)
    return predict_image(predictor, arch, sampling, calibrate=False)


def _calibration(predictor: MeasuredPredictor, calibrate: bool, image_size: int) -> None:
    if predictor.calibration() is None and calibrate:
        _announce(predictor, "end-to-end calibration", predictor.calibration_configs())
        with _progress(f"{predictor.device}: end-to-end calibration (once per image size)") as tick:
            predictor.calibrate(progress=tick)
    elif predictor.calibration() is None:
        warn(f"{predictor.path} has no end-to-end calibration at {image_size}px: this prediction is the sum of "
             "blocks (pass --calibrate to fit one)")


def predict(device: str = typer.Option(..., "--device", help=DEVICE_HELP),
            preset: Optional[str] = typer.Option(None, "--preset", help="A preset name."),
            config: Optional[Path] = typer.Option(None, "--config", help="An ArchConfig JSON file."),
            image_size: int = ImageSize, threads: int = Threads, lut_dir: Optional[Path] = LutDir,
            calibrate: bool = typer.Option(False, "--calibrate", help="Measured devices whose table has no "
                                           "calibration at this image size: fit it first (times 9 architectures "
                                           "end to end, minutes; the estimate is printed before it starts). "
                                           "Without it such a prediction is the sum of blocks, labelled "
                                           "uncalibrated."),
            steps: Optional[int] = typer.Option(None, "--steps", help=STEPS_HELP + " Given, the prediction is per "
                                                "image: text encoder + UNet calls + decoder (measured devices "
                                                "measure the text encoder and decoder once: an SD decoder at "
                                                "512px takes minutes on a CPU core)."),
            guidance: str = GUIDANCE, decoder: str = DECODER,
            max_memory: Optional[str] = MaxMemory, json_out: bool = Json) -> None:
    """Predicted latency of one UNet step, total and per block; with --steps, of one image with its breakdown
    (measures missing blocks on measured devices)."""
    arch, label = resolve_arch(preset, config)
    sampling = None if steps is None else sampling_from(steps, guidance, decoder)
    limit = None if max_memory is None else parse_size(max_memory)
    if sampling is not None:
        image = image_prediction(device, arch, sampling, lut_dir, image_size, threads, limit, calibrate)
        result = image.unet
    else:
        image = None
        predictor = get_predictor(device, lut_dir, image_size, threads=threads, max_memory=limit)
        if isinstance(predictor, MeasuredPredictor):
            with _progress(f"{device}: measuring missing blocks") as tick:
                predictor.ensure([arch], tick)
            _calibration(predictor, calibrate, image_size)
        result = predictor.predict(arch, calibrate=False)
    out = result.to_dict() | {"source": label, "arch_id": arch.arch_id, "image_size": image_size}
    if image is not None:
        out["image"] = image.to_dict() | {"unet": None}  # the UNet call is the top-level prediction
    if json_out:
        print_json(out)
        return
    tag = " (ESTIMATE: roofline from public peak figures)" if result.estimate else ""
    table = Table("block", "ms", title=f"{label} on {device} at {image_size}px, one UNet call{tag}")
    for b in result.blocks:
        table.add_row(b.path, f"{b.ms:.2f}")
    table.add_row("overhead (calibrated)" if result.calibrated else "overhead (uncalibrated)", f"{result.overhead_ms:.2f}")
    table.add_row("total", f"{result.latency_ms:.2f}", style="bold")
    console.print(table)
    if image is not None:
        from evaluators.cost import analytic_cost
        from evaluators.pipeline_cost import image_cost
        from nas.commands.cost import image_table

        sized = arch.replace(latent_size=image_size // 8)
        unet = analytic_cost(sized)
        console.print(image_table(image_cost(sized, sampling, unet.params, unet.macs), image,
                                  f"one {image_size}px image: {sampling.label}"))


def validate(device: str = typer.Option(..., "--device", help="cpu, cuda or onnxruntime."),
             n: int = typer.Option(10, "--n", help="Architectures to sample and measure end to end."),
             seed: int = typer.Option(0, "--seed", help="Sampling seed."), space: str = Space,
             image_size: int = ImageSize, threads: int = Threads, rounds: int = Rounds,
             out: Optional[Path] = typer.Option(None, "--out", help="Scatter HTML (default: in the LUT dir)."),
             lut_dir: Optional[Path] = LutDir, max_memory: Optional[str] = MaxMemory,
             capture: Optional[str] = Capture, dtype: Optional[str] = Dtype,
             speed_probe: Optional[bool] = SpeedProbeOpt,
             inmodel: bool = typer.Option(True, "--inmodel/--no-inmodel", help="Also time every block inside whole "
                                          "forwards and score that source (torch backends)."),
             json_out: bool = Json) -> None:
    """Measure N sampled archs end to end in two passes; score the LUT against each pass and their mean,
    beside the measurement's own repeatability (pass 2 vs pass 1). The result is stored beside the LUT.

    A table without calibration at this image size is calibrated first (9 more architectures end to end);
    the line before the measurements says how many architectures and for about how long.
    """
    if n < 2:
        raise UserError(f"--n must be >= 2 (Kendall tau needs two architectures), got {n}")
    predictor = _measured(device, lut_dir, image_size, threads, rounds, max_memory=max_memory, capture=capture,
                          dtype=dtype, speed_probe=speed_probe)
    configs = held_out_sample(space, n, seed)
    _announce(predictor, "validation (two passes)" if predictor.calibration() else "calibration and validation "
              "(two passes)", configs * 2 + ([] if predictor.calibration() else predictor.calibration_configs()))
    start = time.perf_counter()
    with _progress(f"{device}: blocks, calibration, end-to-end runs") as tick:
        info = run_validation(predictor, configs, tick, inmodel=inmodel)
    html = write_scatter(info, out or predictor.store.dir / f"validate-{device}-{image_size}px-n{n}-seed{seed}.html")
    seconds = time.perf_counter() - start
    record = save_record(predictor, info, seed=seed, seconds=seconds, load_average=list(_load_average()))
    result = info.to_dict() | {"seed": seed, "html": str(html), "lut": str(predictor.path), "record": str(record),
                               "fingerprint": predictor.lut.fingerprint, "seconds": seconds,
                               "load_average": list(_load_average()),
                               "provenance": provenance(device=device, threads=threads)}
    if json_out:
        print_json(result)
        return
    tau = "n/a" if info.kendall_tau is None else f"{info.kendall_tau:.3f}"
    console.print(f"{device} at {image_size}px, {info.n} archs (seed {seed}): MAPE {info.mape:.2f}%, "
                  f"within 10%: {info.within_10pct:.0%}, Kendall tau: {tau} (isolated blocks vs the mean of two passes)")
    console.print(info.summary(), soft_wrap=True, markup=False)
    console.print(f"wrote {html} and {record}; LUT {predictor.path}")


def _load_average() -> tuple[float, ...]:
    """The OS's 1/5/15-minute load averages (empty where the OS has none): a timing's context."""
    import os

    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return ()


def kit(space: str = Space, out: Path = typer.Option(..., "--out", help="Kit directory to write."),
        image_size: int = ImageSize,
        sample: int = typer.Option(0, "--sample", help="Only the blocks of N sampled archs (0: whole space)."),
        seed: int = typer.Option(0, "--seed", help="Seed of --sample."),
        preset: Optional[str] = typer.Option(None, "--preset", help="Only the blocks of this preset."),
        config: Optional[Path] = typer.Option(None, "--config", help="Only the blocks of this ArchConfig JSON."),
        formats: Optional[str] = typer.Option(None, "--formats", help="Phone formats besides ONNX, comma "
                                              "separated: coreml, tflite (default: every installed converter; "
                                              "the others are listed with the reason)."),
        pipeline: bool = typer.Option(True, "--pipeline/--no-pipeline", help="Also the text encoder (CLIP "
                                      "ViT-L/14's text tower) and every VAE decoder at this image size, for "
                                      "per-image latency (`nas lut predict --steps`; ~0.75 GB more)."),
        json_out: bool = Json) -> None:
    """Write every distinct block as ONNX plus the phones' formats (Core ML, LiteRT/TFLite) where the
    converters handle it, a manifest, timing instructions (TIMING.md) and the CSV templates `nas lut import`
    reads. Blocks a converter cannot handle are listed with its reason."""
    configs, label = _selection(space, sample, seed, preset, config)
    if configs is None:
        sigs = space_signatures(space, image_size)
    else:
        from evaluators.latency.signature import arch_signatures, with_image_size
        sigs = sorted({s.key: s for c in configs for _, s in arch_signatures(with_image_size(c, image_size))}.values(),
                      key=lambda s: s.key)
    if pipeline:
        sigs = list(sigs) + every_pipeline_signature(image_size)
    requested = None if formats is None else [f.strip() for f in formats.split(",")]
    names, unavailable = resolve_formats(requested)
    check_fits(sigs, out, [f for f in names if not unavailable[f]])
    with _progress(f"exporting blocks (ONNX{''.join(', ' + f for f in names if not unavailable[f])})") as tick:
        result = write_kit(sigs, out, image_size, tick, requested)
    summary = {"kit": str(out), "manifest": str(result.manifest), "blocks": len(sigs), "written": result.written,
               "kept": result.kept, "bytes_estimate": result.bytes_estimate, "selection": label,
               "formats": result.formats, "not_converted": list(result.not_converted),
               "instructions": str(out / "TIMING.md")}
    if json_out:
        print_json(summary)
        return
    for name, stats in result.formats.items():
        if stats["unavailable"]:
            err_console.print(f"{name}: not written: {stats['unavailable']}", soft_wrap=True, markup=False)
        else:
            console.print(f"{name}: wrote {stats['written']}, kept {stats['kept']}, could not convert {stats['failed']}")
    for miss in result.not_converted:
        err_console.print(f"{miss['format']} cannot convert {miss['file']} ({miss['kind']}): {miss['reason']}",
                          soft_wrap=True, markup=False)
    console.print(f"{len(sigs)} blocks of {label} at {image_size}px: wrote {result.written} ONNX files, kept "
                  f"{result.kept} (~{result.bytes_estimate / 1e9:.2f} GB) in {out}/blocks")
    console.print(f"wrote {result.manifest}, {out / 'TIMING.md'} and the measurements_*template.csv files: "
                  f"time the blocks on the phone as TIMING.md says, then `nas lut import FILE --device NAME --kit {out}`")


def import_(file: Path = typer.Argument(..., help="CSV: key|file,latency_ms[,std_ms] (see the kit manifest)."),
            device: str = typer.Option(..., "--device", help="Name to store the LUT under (e.g. pixel8-tflite)."),
            kit_dir: Optional[Path] = typer.Option(None, "--kit", help="Kit directory: its blocks must all be "
                                                    "covered, and a `file` column maps through its manifest."),
            fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="Describes the device and "
                                                       "runtime (default: the device name)."),
            space: str = Space, image_size: int = ImageSize,
            replace: bool = typer.Option(False, "--replace", help="Replace a stored LUT of another fingerprint."),
            lut_dir: Optional[Path] = LutDir, json_out: bool = Json) -> None:
    """Check a CSV of measurements (schema, values, coverage) and store it as a device's LUT."""
    check_device_name(device)
    if device in DEVICES:
        raise UserError(f"{device!r} is a built-in device; import under another name (e.g. {device}-measured)")
    manifest = read_manifest(kit_dir) if kit_dir else None
    entries = read_measurements(file, manifest)
    if manifest is not None:
        listed = csv_files(file)
        expected = kit_blocks(kit_dir, listed) if listed else set(manifest.values())  # the CSV's format's blocks
        missing = sorted(expected - set(entries))
        if missing:
            suffixes = {Path(f).suffix for f in listed} or {".onnx"}
            files = [f for f, k in manifest.items() if k in set(missing) and Path(f).suffix in suffixes]
            raise UserError(f"{file} misses {len(missing)} of the kit's {len(expected)} blocks "
                            f"({', '.join(sorted(files)[:3])}{', ...' if len(files) > 3 else ''})")
    store = LutStore(lut_dir)
    fp = {"device": device, "description": fingerprint or device}
    try:
        lut = store.load(device)
    except UserError:
        if not replace:
            raise
        lut = None  # a corrupt stored LUT is replaced on request
    if lut is not None and lut.fingerprint != fp and not replace:
        raise UserError(f"{store.path(device)} holds measurements of fingerprint {lut.fingerprint}; "
                        "pass --replace to overwrite it, or import under another --device name")
    if lut is None or lut.fingerprint != fp:
        lut = Lut(device, "imported", fp)
    lut.entries.update(entries)
    lut.conditions = {"source": str(file), "imported": provenance()["created"]}
    path = store.save(lut)
    space_keys = {s.key for s in space_signatures(space, image_size)}
    dtype_batch = {BlockSignature.from_key(k).dtype for k in entries}
    summary = {"device": device, "lut": str(path), "imported": len(entries), "lut_entries": len(lut.entries),
               "space_coverage": len(space_keys & set(lut.entries)) / len(space_keys), "space": space,
               "image_size": image_size, "kit_complete": manifest is not None, "dtypes": sorted(dtype_batch)}
    pipeline = [s.key for s in every_pipeline_signature(image_size)]
    summary["per_image_blocks"] = f"{sum(k in lut.entries for k in pipeline)} of {len(pipeline)}"
    if json_out:
        print_json(summary)
        return
    console.print(f"imported {len(entries)} block latencies from {file} as device {device!r}: "
                  f"{summary['space_coverage']:.1%} of {space} at {image_size}px; text encoder and decoders "
                  f"(per-image latency): {summary['per_image_blocks']}")
    console.print(f"wrote {path} ({len(lut.entries)} blocks)")


def devices(lut_dir: Optional[Path] = LutDir, json_out: bool = Json) -> None:
    """Every device name `--device` accepts (roofline profiles are estimates)."""
    rows = list_devices(LutStore(lut_dir))
    if json_out:
        print_json([r.__dict__ for r in rows])
        return
    table = Table("device", "kind", "description", title="Latency devices")
    for r in rows:
        table.add_row(r.name, r.kind, r.description)
    console.print(table)


def register(app: typer.Typer) -> None:
    for name, fn in (("build", build), ("show", show), ("predict", predict), ("validate", validate),
                     ("kit", kit), ("import", import_), ("devices", devices)):
        lut_app.command(name)(fn)
    app.add_typer(lut_app, name="lut")
