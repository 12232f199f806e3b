"""Export one block, or a whole UNet, to ONNX (TorchScript exporter, opset 17) with fixed shapes."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

OPSET = 17


def input_names(kind: str) -> list[str]:
    """Names of a block's ONNX inputs, in `block_inputs` order."""
    if kind == "time_embed":
        return ["timestep"]
    if kind == "resnet":
        return ["x", "temb"]
    if kind == "transformer":
        return ["x", "context"]
    if kind == "text_encoder":
        return ["input_ids"]
    if kind == "vae_decoder":
        return ["latents"]
    return ["x"]


UNET_INPUTS = ["sample", "timestep", "encoder_hidden_states"]


class _Positional(nn.Module):
    """Calls the wrapped module with positional tensors only (the tracer rejects non-tensor defaults)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.module(*inputs)


def export(module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    """Export `module(*inputs)` to `path` (weights over 2 GiB go to external data files beside it)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Positional(module), inputs, str(path), input_names=names, output_names=["y"],
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)

