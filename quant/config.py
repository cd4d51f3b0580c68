"""The quantization settings: one frozen, validated object, checked before any work and used as the cache key."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: Changes whenever an algorithm (not a setting) changes the int8 model made from the same inputs, so
#: caches do not reuse a model made by older code. Settings are in the key through ``QuantConfig.key``.
ALGORITHM_VERSION = 6
#: observers ``observer="auto"`` chooses between (the search never ranked entropy or MSE first on the real models)
AUTO_OBSERVERS = ("percentile", "minmax")
#: frames read from the source, half of them held out for the floor (``held_out_count``); the one home of this
#: default (the CLI, the model request and the benchmarks import it). Agreement with fp32 does not improve beyond
#: the spread between frame sets above 16 calibration frames, so 32 suffice; the held-out half is where frames
#: count: on 16 held-out frames one flipped box decides the floor, 32 halve that granularity
#: (``benchmarks/calibration_frames.py``; results in benchmarks/README.md, "Measurements behind design choices").
DEFAULT_NUM_FRAMES = 64


def held_out_count(num_frames: int) -> int:
    """Frames held out for the floor when ``num_frames`` are read: half (the calibration curve is flat from 16)."""
    return max(1, num_frames // 2)


#: the tracker's thresholds: int8 detections must agree with fp32 above both (ByteTrack matches high-score
#: detections first, then low-score ones)
HIGH_THRESH, LOW_THRESH = 0.5, 0.1
#: int8 is used only where it beats fp32 by more than this (relative, ``quant.speed.clearly_faster``): a smaller
#: gain is not worth an int8 model's accuracy risk, and a margin near a model's real gain makes the decision
#: follow the timing noise (the measurements behind 15%: benchmarks/README.md, "Speed plan")
SPEED_MARGIN = 0.15


@dataclass(frozen=True)
class QuantConfig:
    """How ``quantize_detector`` makes an int8 model.

    ``observer``: a name of ``quant.observers`` or "auto" (each of ``AUTO_OBSERVERS``, from one calibration
    pass, keeping the one whose int8 model agrees best with fp32 on held-out frames).
    ``target_agreement``: an explicit detection-F1 floor (vs fp32, at both tracker thresholds) every accepted
    plan must reach; None: the default floor, fp32's own agreement with fp32 on the held-out frames re-encoded
    as JPEG quality ``floor_jpeg_quality`` (a perturbation no user would notice).
    ``float_layers``: convs kept float (None: the first ``stem_float`` convs and, with ``head_float``, the
    head's pred convs). ``speed_aware``: keep early high-resolution stages float unless int8 there is faster
    by more than ``speed_margin`` (relative, median ratios to fp32 of interleaved timings, ``quant.speed``), and
    the whole model float when no int8 variant is. ``ranking``: how layers are ordered when the float set must
    grow ("local": each conv's own int8 error, one pass; "full": the detector output with that conv alone int8,
    slow).
    ``rounding``: "gptq" (weights rounded for the conv output error on ``gptq_frames`` frames) or "nearest".
    ``num_frames``: frames evenly spaced over the source (None: all given), of which ``held_out_frames`` are held
    out (``held_out_frames``) for the observer choice and the floor.
    """

    observer: str = "auto"
    scheme: str = "uint8"
    float_layers: tuple[str, ...] | None = None
    stem_float: int = 2
    head_float: bool = True
    target_agreement: float | None = None
    floor_jpeg_quality: int = 95
    ranking: str = "local"
    speed_aware: bool = True
    speed_margin: float = SPEED_MARGIN
    equalize: bool = False
    bias_correction: bool = False
    migrate: bool = False
    migrate_alpha: float = 0.5
    activation_aware: bool = True
    rounding: str = "gptq"
    weight_granularity: str = "per_channel"
    num_frames: int | None = DEFAULT_NUM_FRAMES
    held_out_frames: int = held_out_count(DEFAULT_NUM_FRAMES)
    gptq_frames: int = 16

    def __post_init__(self) -> None:
        from int8track.quant.observers import OBSERVER_NAMES  # torch-heavy: imported when a config is made
        from int8track.quant.simulate import ACT_SCHEMES, WEIGHT_GRANULARITIES

        if self.float_layers is not None and not isinstance(self.float_layers, tuple):
            object.__setattr__(self, "float_layers", tuple(self.float_layers))
        _one_of("observer", self.observer, ("auto", *OBSERVER_NAMES))
        _one_of("scheme", self.scheme, tuple(ACT_SCHEMES))
        _one_of("ranking", self.ranking, ("local", "full"))
        _one_of("rounding", self.rounding, ("gptq", "nearest"))
        _one_of("weight_granularity", self.weight_granularity, WEIGHT_GRANULARITIES)
        if self.target_agreement is not None and not 0.0 < self.target_agreement <= 1.0:
            raise ValueError(f"target_agreement must be an F1 in (0, 1], got {self.target_agreement}")
        if not 1 <= self.floor_jpeg_quality <= 100:
            raise ValueError(f"floor_jpeg_quality must be in [1, 100], got {self.floor_jpeg_quality}")
        if not 0.0 <= self.speed_margin < 1.0:
            raise ValueError(f"speed_margin must be in [0, 1), got {self.speed_margin}")
        for name in ("stem_float", "held_out_frames", "gptq_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1 or None, got {self.num_frames}")

    @classmethod
    def from_options(cls, base: QuantConfig | None = None, **overrides: Any) -> QuantConfig:
        """``base`` (default settings) with ``overrides``; an unknown option is a ValueError naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown quantization option(s) {unknown}; expected some of {sorted(known)}")
        return replace(base or cls(), **overrides)

    def key(self) -> dict[str, Any]:
        """Everything that determines the int8 model besides the weights and frames (for cache keys)."""
        return {"algorithm_version": ALGORITHM_VERSION, **asdict(self)}


def _one_of(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}, expected one of {list(allowed)}")
