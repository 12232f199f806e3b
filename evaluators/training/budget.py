"""`Budget`: everything that sets the cost and the meaning of one proxy trial."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.errors import UserError
from search_spaces.proxy import ProxyScale

PREDICTIONS = ("epsilon", "v_prediction")
SAMPLERS = ("dpm", "ddim")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class Budget:
    """The training, sampling and scoring budget of one proxy trial.

    Training length is counted in optimizer steps (a wall-clock budget gives big architectures fewer
    steps and so ranks them by speed rather than quality). Setting `seconds` switches to a wall-clock
    budget on the training stage instead; `steps` is then ignored.

    Raises:
        UserError: a non-positive count, a probability outside [0, 1) or an unknown option.
    """

    steps: int = 500  # optimizer steps of training (the default budget)
    seconds: float | None = None  # wall-clock training budget; when set, it replaces `steps`
    batch_size: int = 32  # training images per optimizer step
    lr: float = 2e-3  # AdamW peak learning rate (constant after warm-up: intermediate reports stay comparable)
    warmup_steps: int = 25  # linear learning-rate warm-up
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max gradient norm
    prediction: str = "epsilon"  # "epsilon" or "v_prediction"
    beta_schedule: str = "squaredcos_cap_v2"  # diffusers DDPMScheduler beta schedule (cosine suits 16x16 pixels)
    cfg_dropout: float = 0.1  # probability that a training caption is replaced by the empty caption
    ema_decay: float | None = None  # EMA of the weights for evaluation (None: evaluate the raw weights)
    n_train: int | None = None  # training images (None: the dataset's default size)
    n_val: int = 256  # held-out images for the denoising loss
    n_samples: int = 256  # generated images scored against the held-out set
    n_real: int = 512  # held-out real images for FID/KID
    sample_steps: int = 10  # steps of the few-step sampler
    sampler: str = "dpm"  # "dpm" (DPM-Solver++ 2M) or "ddim"
    cfg_scale: float = 3.0  # classifier-free guidance scale at sampling time (1 = no guidance)
    sample_batch_size: int = 128  # captions per sampling forward (each forward runs cond + uncond)
    grid_images: int = 16  # images in the labelled sample grid (0: no grid)
    image_size: int = 16  # proxy image side (pixels)
    width_divisor: int = 16  # proxy channels = full-scale channels / this
    min_head_dim: int = 8  # no proxy attention head narrower than this (fewer, wider heads)
    context_dim: int = 64  # width of the proxy's own conditioning text encoder
    data: str = "synthetic"  # dataset kind for `evaluators.data.load_dataset`
    data_path: str | None = None  # dataset path for folder/COCO kinds
    data_seed: int = 0  # dataset seed: the same data for every trial, whatever the trial seed
    report_every: int = 10  # optimizer steps between intermediate loss reports

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "n_val", "n_samples", "n_real", "sample_steps", "sample_batch_size",
                    "image_size", "width_divisor", "min_head_dim", "context_dim", "report_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"budget {name} must be a positive integer, got {value!r}")
        for name in ("seconds", "lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"budget {name} must be positive, got {value!r}")
        if self.n_train is not None and self.n_train < self.batch_size:
            raise UserError(f"budget n_train ({self.n_train}) must be at least batch_size ({self.batch_size})")
        for name in ("warmup_steps", "grid_images"):
            if getattr(self, name) < 0:
                raise UserError(f"budget {name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.cfg_dropout < 1:
            raise UserError(f"budget cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise UserError(f"budget ema_decay must be in (0, 1), got {self.ema_decay}")
        if not self.cfg_scale >= 1:
            raise UserError(f"budget cfg_scale must be >= 1, got {self.cfg_scale}")
        if not self.grad_clip > 0 or not self.weight_decay >= 0:
            raise UserError("budget grad_clip must be positive and weight_decay non-negative")
        if self.prediction not in PREDICTIONS:
            raise UserError(f"budget prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise UserError(f"budget beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"budget sampler must be one of {SAMPLERS}, got {self.sampler!r}")

    @property
    def scale(self) -> ProxyScale:
        """The proxy scale this budget trains at."""
        return ProxyScale(width_divisor=self.width_divisor, image_size=self.image_size,
                          min_head_dim=self.min_head_dim, context_dim=self.context_dim)

    def replace(self, **changes) -> "Budget":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Every field, except the fields added after the first record format while they hold their default:
        so every budget recorded before them (manifests, caches, committed study rows) keeps its hash."""
        data = dataclasses.asdict(self)
        for name, default in LATER_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data


# Budget fields added after budgets were first hashed, with their defaults (omitted from `to_dict` at them).
LATER_FIELDS = {f.name: f.default for f in dataclasses.fields(Budget) if f.name in ("min_head_dim", "context_dim")}
