"""The teacher: a parent architecture's proxy trained once with a longer budget, cached, and reused by trials.

A teacher is keyed by everything that determines its weights (`TeacherRecipe`: the full-scale architecture,
the training budget including the proxy scale and data, the description of the training split, the seed and
this module's code version), like the domain CLIP. Its cache entry is a folder
`<cache>/teachers/<key>/` holding `weights.safetensors`, the sidecar `teacher.json` (recipe, training stats,
the weights' SHA-256) and, while it trains, `checkpoint.pt` (the `TrainState` of the last checkpoint): an
interrupted training resumes from there and ends exactly where an uninterrupted one would (on CPU, bit for
bit). A cache entry is validated before use (sidecar schema and recipe, SHA-256, tensor names and shapes);
one that fails is retrained after a one-line warning, or refused when training is not allowed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from core.cache import cache_dir
from core.console import warn
from core.errors import UserError
from core.io import atomic_path, write_json
from evaluators.data import CaptionedImages, load_dataset
from evaluators.quality.cache import load_weights, save_weights, sha256
from evaluators.training.budget import Budget
from evaluators.training.diffusion import train_scheduler
from evaluators.training.model import ProxyModel, build_proxy_model
from evaluators.training.text_encoder import tokenize
from evaluators.training.train import TrainState, train
from search_spaces.config import ArchConfig
from search_spaces.proxy import to_proxy

CODE_VERSION = 1  # bump when teacher training changes in a way the recipe does not show
SUBDIR = "teachers"
DEFAULT_TEACHER = "sd15"
STEPS_FACTOR = 4  # default teacher steps: this many times the default trial budget's steps
CHECKPOINT_EVERY = 100  # optimizer steps between checkpoints of a teacher training
# Budget fields a teacher must share with every trial it anchors: the proxy scale, the data and the target.
MATCH_FIELDS = ("image_size", "width_divisor", "data", "data_path", "data_seed", "n_train", "prediction",
                "beta_schedule")
# Budget fields that determine the teacher's weights (the rest only concern sampling and scoring).
TRAIN_FIELDS = MATCH_FIELDS + ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip",
                               "cfg_dropout", "ema_decay")

Progress = Callable[[int, int, float], None]  # (steps done, total steps, recent training loss)


def default_teacher_steps() -> int:
    """Optimizer steps of a teacher by default: STEPS_FACTOR x the default trial budget's."""
    return STEPS_FACTOR * Budget().steps


def teacher_budget(trial: Budget, steps: int | None = None) -> Budget:
    """The teacher's training budget: the default recipe, at the trial's proxy scale, data and target, for
    `steps` optimizer steps (default `default_teacher_steps()`)."""
    return Budget().replace(steps=steps or default_teacher_steps(), **{f: getattr(trial, f) for f in MATCH_FIELDS})


@dataclass(frozen=True)
class TeacherRecipe:
    """Everything that determines a teacher's trained weights."""

    arch: str  # the full-scale ArchConfig, canonical JSON
    budget: dict  # the training budget's TRAIN_FIELDS
    data: dict  # description of the training split (`CaptionedImages.info`: kind, version, size, seed, ...)
    seed: int = 0  # initialisation and training randomness
    code_version: int = CODE_VERSION

    @classmethod
    def of(cls, config: ArchConfig, budget: Budget, data: dict, seed: int = 0) -> "TeacherRecipe":
        return cls(arch=config.to_json(indent=None), budget={f: getattr(budget, f) for f in TRAIN_FIELDS},
                   data=json.loads(json.dumps(data, default=str)), seed=seed)

    @property
    def key(self) -> str:
        """Stable hash of the recipe: the cache key of the trained weights."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def config(self) -> ArchConfig:
        return ArchConfig.from_json(self.arch)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Teacher:
    """A trained teacher proxy, ready to anchor trials (eval mode, gradients off)."""

    label: str  # preset name or file it was given as
    recipe: TeacherRecipe
    model: ProxyModel
    info: dict[str, Any] = field(default_factory=dict)  # cache folder, weights hash, training stats, trained now

    @property
    def config(self) -> ArchConfig:
        """The teacher's full-scale architecture."""
        return self.recipe.config

    def check_matches(self, budget: Budget) -> None:
        """Refuse to anchor a trial at another proxy scale, on other data or with another target.

        Raises:
            UserError: one line naming the first field that differs.
        """
        for name in MATCH_FIELDS:
            mine, theirs = self.recipe.budget[name], getattr(budget, name)
            if mine != theirs:
                raise UserError(f"teacher {self.label} was trained with {name}={mine!r} but the trial uses "
                                f"{name}={theirs!r}: a teacher anchors only trials of its own proxy scale and data")


def teacher_dir(recipe: TeacherRecipe, cache: str | Path | None = None) -> Path:
    """The cache entry folder of a recipe: <cache>/teachers/<key>/."""
    return cache_dir(cache) / SUBDIR / recipe.key


WEIGHTS, SIDECAR, CHECKPOINT, LOCK = "weights.safetensors", "teacher.json", "checkpoint.pt", ".lock"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on a cache entry (two processes never train the same teacher at once)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK, "a")
    except OSError as err:
        raise UserError(f"cannot write the teacher cache {folder}: {err.strerror or err}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_cached(folder: Path, recipe: TeacherRecipe, model: ProxyModel) -> tuple[dict | None, str]:
    """Load a cache entry into `model`: its sidecar, or None and "<file> <what is wrong>"."""
    sidecar, weights = folder / SIDECAR, folder / WEIGHTS
    if not sidecar.is_file():
        return None, f"{sidecar} is missing"
    try:
        meta = json.loads(sidecar.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{sidecar} is not readable JSON text"
    if not isinstance(meta, dict) or not isinstance(meta.get("train"), dict) \
            or not isinstance(meta.get("weights_sha256"), str) or len(meta["weights_sha256"]) != 64:
        return None, f"{sidecar} is not a JSON object with recipe, train and weights_sha256"
    if meta.get("recipe") != recipe.to_dict():
        return None, f"{sidecar} describes another recipe than {recipe.key}"
    if not weights.is_file():
        return None, f"{weights} is missing"
    if sha256(weights) != meta["weights_sha256"]:
        return None, f"{weights} does not match the SHA-256 in its sidecar (truncated or modified)"
    try:
        model.load_state_dict(load_weights(weights))
    except UserError:
        return None, f"{weights} is not a safetensors weights file"
    except RuntimeError:
        return None, f"{weights} holds tensors of other names or shapes than the teacher's model"
    return meta, ""


def _resume_state(path: Path, model: ProxyModel, steps: int) -> TrainState | None:
    """The checkpoint of an interrupted training, when it is readable and fits the model; else None (warned)."""
    if not path.is_file():
        return None
    try:
        state = TrainState.load(path)
        model.load_state_dict(state.model)
    except Exception as err:  # a truncated or foreign pickle: any error means "start over"
        warn(f"teacher checkpoint {path} is unreadable ({type(err).__name__}); training from the start")
        return None
    if not 0 < state.step <= steps:
        warn(f"teacher checkpoint {path} is at step {state.step} of {steps}; training from the start")
        return None
    return state


def _train(recipe: TeacherRecipe, budget: Budget, model: ProxyModel, train_set: CaptionedImages, ids: torch.Tensor,
           folder: Path, device: torch.device, progress: Progress | None, every: int) -> dict:
    """Train the teacher in place, checkpointing every `every` steps; returns the training stats."""
    scheduler = train_scheduler(budget.prediction, budget.beta_schedule)
    uncond = tokenize([""], model.config.context_len)[0].to(device)
    images, ids = train_set.images.to(device), ids.to(device)
    state = _resume_state(folder / CHECKPOINT, model, budget.steps)
    resumed = state.step if state else 0
    if progress:
        progress(resumed, budget.steps, float("nan"))

    def report(r: dict) -> None:
        if progress:
            progress(r["step"], budget.steps, r["loss"])

    while True:
        until = min(budget.steps, ((state.step if state else 0) // every + 1) * every)
        outcome = train(model, scheduler, images, ids, uncond, budget, recipe.seed, report, resume=state, until=until)
        if outcome.failure_reason:
            raise RuntimeError(f"teacher training failed: {outcome.failure_reason}")
        state = outcome.state
        if state.step >= budget.steps:
            break
        with atomic_path(folder / CHECKPOINT, suffix=".pt") as tmp:
            state.save(tmp)
    if outcome.ema is not None:
        outcome.ema.copy_to(model.parameters())
    tail = state.losses[-max(1, len(state.losses) // 10):]
    return dict(steps=state.step, seconds=round(state.seconds, 2), final_loss=round(sum(tail) / len(tail), 5),
                resumed_from_step=resumed)


_LOADED: dict[tuple, "Teacher"] = {}  # per process: a teacher is read from disk once


def forget_loaded() -> None:
    """Forget the teachers this process has loaded: the next `load_teacher` reads (or trains) them again."""
    _LOADED.clear()


def load_teacher(config: ArchConfig, budget: Budget, *, label: str = DEFAULT_TEACHER, steps: int | None = None,
                 seed: int = 0, train_allowed: bool = True, device: str | torch.device = "cpu",
                 progress: Progress | None = None, cache: str | Path | None = None,
                 train_set: CaptionedImages | None = None, checkpoint_every: int = CHECKPOINT_EVERY) -> Teacher:
    """The trained teacher `config` for trials of `budget`: from the cache, or trained now and cached.

    Args:
        config: the teacher's full-scale architecture.
        budget: the trial budget; the teacher trains at its proxy scale and on its data (`teacher_budget`).
        label: how the user named the teacher (messages, records).
        steps: teacher training steps (default `default_teacher_steps()`).
        seed: the teacher's training seed.
        train_allowed: False: a missing or invalid cache entry is an error instead of a training.
        device: where it trains and runs.
        progress: called with (steps done, total, loss) while it trains.
        cache: the cache folder (default: the user cache, see `core.cache.cache_dir`).
        train_set: the training split, when the caller has it loaded already (else it is loaded here).
        checkpoint_every: steps between checkpoints of the training.

    Returns:
        The teacher in eval mode with gradients off; `info` says where it is cached, its weights' SHA-256, its
        training stats, whether it was trained now and the wall seconds this call spent training
        (`seconds_now`; trials report the one-time training separately).

    Raises:
        UserError: no valid cache entry and `train_allowed` is False, or the cache cannot be written.
        RuntimeError: the teacher's training diverged.
    """
    tb = teacher_budget(budget, steps)
    if train_set is None:
        train_set = load_dataset(kind=tb.data, split="train", image_size=tb.image_size, n=tb.n_train,
                                 seed=tb.data_seed, path=tb.data_path)
    recipe = TeacherRecipe.of(config, tb, train_set.info, seed)
    device = torch.device(device)
    memo = (recipe.key, str(device), str(cache_dir(cache)))
    if memo in _LOADED:  # trained (if at all) by an earlier call of this process
        return dataclasses.replace(_LOADED[memo], info=_LOADED[memo].info | dict(trained_now=False, seconds_now=0.0))
    folder = teacher_dir(recipe, cache)
    proxy = to_proxy(config, tb.scale)
    ids = tokenize(list(train_set.captions), proxy.context_len)  # (N, L)
    model = build_proxy_model(proxy, ids, seed)
    seconds_now = 0.0
    with _locked(folder):
        meta, problem = (None, "") if not (folder / SIDECAR).exists() and not (folder / WEIGHTS).exists() \
            else _load_cached(folder, recipe, model)
        if meta is None:
            where = problem or f"no trained teacher {label} in {folder}"
            if not train_allowed:
                raise UserError(f"{where}; training the teacher is not allowed here (run without --no-train)")
            if problem:
                warn(f"teacher cache {problem}; retraining teacher {label} ({tb.steps} steps)")
                model = build_proxy_model(proxy, ids, seed)
            began = time.perf_counter()
            stats = _train(recipe, tb, model.to(device), train_set, ids, folder, device, progress, checkpoint_every)
            seconds_now = time.perf_counter() - began
            weights = save_weights(folder / WEIGHTS, model.state_dict(), {"recipe": json.dumps(recipe.to_dict())})
            meta = dict(recipe=recipe.to_dict(), train=stats, weights_sha256=sha256(weights), label=label)
            write_json(folder / SIDECAR, meta)
            (folder / CHECKPOINT).unlink(missing_ok=True)
    model = model.to(device).eval().requires_grad_(False)
    info = dict(label=label, arch_id=config.arch_id, proxy_arch_id=proxy.arch_id, key=recipe.key,
                cache_path=str(folder), weights_sha256=meta["weights_sha256"], steps=tb.steps,
                trained_now=seconds_now > 0, seconds_now=round(seconds_now, 2), train=meta["train"],
                proxy_params=model.unet_params)
    teacher = Teacher(label, recipe, model, info)
    _LOADED[memo] = teacher
    return teacher
