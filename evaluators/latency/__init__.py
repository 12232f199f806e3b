"""Latency lookup tables (LUTs): measure blocks on a device once, predict architectures as sums.

Public API (what the search calls):

    from evaluators.latency import get_predictor
    predictor = get_predictor("cpu", image_size=512)       # or "onnxruntime", "cuda", "iphone15pro", an import
    predictor.ensure(configs, progress=lambda done, total: ...)  # measure only the blocks these need
    prediction = predictor.predict(config)                  # LatencyPrediction(latency_ms, blocks, ...)
    record = validation_on_record(predictor)                # `nas lut validate`'s stored result, or None
    warning = latency_budget_warning(predictor)             # one line when a budget cannot trust ms, or None

See `store` for the on-disk contract, `imported` for the CSV schema, `roofline` for phone estimates,
`validate` and `record` for validation against the measurement's repeatability, `kit` and `phone` for the
phone measurement kit (ONNX, Core ML, LiteRT), `inmodel` for blocks timed inside whole forwards.
"""

from evaluators.latency.devices import DEVICES, DeviceInfo, list_devices
from evaluators.latency.predictor import (
    BlockLatency,
    Calibration,
    ImportedPredictor,
    LatencyPrediction,
    MeasuredPredictor,
    Predictor,
    RooflinePredictor,
    get_predictor,
)
from evaluators.latency.record import latency_budget_warning, validation_on_record
from evaluators.latency.signature import (
    BlockSignature,
    arch_signatures,
    space_signatures,
)
from evaluators.latency.store import LutStore, default_lut_dir

__all__ = [
    "DEVICES", "BlockLatency", "BlockSignature", "Calibration", "DeviceInfo", "ImportedPredictor",
    "LatencyPrediction", "LutStore", "MeasuredPredictor", "Predictor", "RooflinePredictor", "arch_signatures",
    "default_lut_dir", "get_predictor", "latency_budget_warning", "list_devices", "space_signatures",
    "validation_on_record",
]
