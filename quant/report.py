"""What ``quantize_detector`` decided and measured: a typed record, stored in the int8 model's metadata,
printed as a short summary and written into ``track``'s timing JSON."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from int8track.quant.runtime_int8 import FULL_WEIGHT_QMAX


@dataclass
class QuantReport:
    """The decisions behind one int8 model.

    ``observer_scores``: each observer candidate's held-out agreement ``{"high": F1, "low": F1}``;
    ``floor``/``agreement``: the floor and what the accepted model reached (both thresholds);
    ``speed_ms``: fp32's fastest ORT time and each speed candidate's, fp32's times its median ratio to fp32 over
    interleaved rounds (``quant.speed``); ``speed_choice`` the one chosen ("" when the speed plan did not run);
    ``rejected``: candidates that missed the floor, with their agreement; ``int8_faster``: False when no int8
    variant beat fp32 by the speed margin (the model is then all float); ``weight_qmax``: the int8 weights' range,
    127, or 63 where this CPU's int8 convolution saturates pairs of products (``quant.runtime_int8``); ``seconds``:
    wall time per step
    (``cpu_seconds``: this process's CPU time, which a busy machine does not inflate).
    """

    config: dict[str, Any]
    calibration_frames: int
    eval_frames: int
    observer: str
    observer_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    floor: dict[str, Any] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    speed_ms: dict[str, float] = field(default_factory=dict)
    speed_choice: str = ""
    int8_faster: bool = True
    rejected: list[dict[str, Any]] = field(default_factory=list)
    accepted: str = ""
    quantized_convs: int = 0
    float_layers: list[str] = field(default_factory=list)
    all_float: bool = False
    weight_qmax: int = FULL_WEIGHT_QMAX  # reports stored before the field existed were all full range
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    frames_per_second: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantReport:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self) -> list[str]:
        """A few lines a user reads once: what was chosen, how faithful, how fast, how long it took."""
        fl = self.floor
        ag = self.agreement
        lines = [
            f"observer {self.observer} (" + ", ".join(
                f"{name}: F1@0.5 {s['high']:.3f} F1@0.1 {s['low']:.3f}" for name, s in self.observer_scores.items())
            + ")" if self.observer_scores else f"observer {self.observer}",
            f"floor ({fl.get('source', '?')}): F1@0.5 >= {fl.get('high', 0):.3f}, F1@0.1 >= {fl.get('low', 0):.3f}; "
            f"reached {ag.get('high', 0):.3f}, {ag.get('low', 0):.3f} on {self.eval_frames} held-out frames",
            f"{self.quantized_convs} int8 convs, {len(self.float_layers)} float convs; accepted: {self.accepted}",
        ]
        if self.weight_qmax < FULL_WEIGHT_QMAX and (not self.all_float or self.rejected):  # int8 plans were made
            lines.append(f"int8 weights within +-{self.weight_qmax}: this CPU's int8 convolution adds pairs of 8-bit "
                         "products in a saturating int16 (x86 without VNNI)")
        if self.speed_ms:
            lines.append("speed plan (ms, fp32 x median ratio of interleaved runs, 1 thread): " + ", ".join(
                f"{k} {v:.1f}" for k, v in self.speed_ms.items()) + f"; chose {self.speed_choice}")
        if not self.int8_faster:
            lines.append("int8 is not faster than fp32 for this model on this machine (within the floor): "
                         "the model stays float")
        elif self.all_float:
            lines.append("no int8 plan reached the floor: every conv stays float")
        for item in self.rejected:
            lines.append(f"rejected {item['candidate']}: F1@0.5 {item['high']:.3f}, F1@0.1 {item['low']:.3f}")
        steps = ", ".join(f"{k} {v:.1f} s" + (f" ({self.frames_per_second[k]:.1f} frames/s)"
                                                if k in self.frames_per_second else "")
                          for k, v in self.seconds.items())
        lines.append(f"calibration {sum(self.seconds.values()):.1f} s (cpu {sum(self.cpu_seconds.values()):.1f} s) on "
                     f"{self.calibration_frames} + "
                     f"{self.eval_frames} frames: {steps}")
        return lines
