"""Quantization settings: one frozen Recipe, a table of named presets, and `auto` by execution provider and CPU."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from quantlab.choice import Choice
from quantlab.cpu import CpuInfo, detect_cpu
from quantlab.devices import on_gpu
from quantlab.errors import ConfigError


class Mode(Choice):
    STATIC = "static"
    DYNAMIC = "dynamic"
    FP16 = "fp16"  # half precision (quantlab.half), no integers: the fast precision on GPUs


class QuantFormat(Choice):
    QDQ = "qdq"
    QOPERATOR = "qoperator"


class QType(Choice):
    U8 = "u8"
    S8 = "s8"


class CalibMethod(Choice):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


ALIGN_CHOICES = (0, 4, 8, 16)
# MLAS picks its ConvSym dispatch by these (platform.cpp): output channels % 4 on AVX512-core, % 8 on AVX2
AVX512_CORE_FLAGS = frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl"})
# Settings of integer quantization alone: an fp16 recipe leaves them at their defaults and does not record them
INT8_ONLY = ("quant_format", "activation_type", "weight_type", "per_channel", "reduce_range", "calibrate_method",
             "op_types", "float_output_op_types", "align_channels")


@dataclass(frozen=True)
class Recipe:
    """Every setting that decides the quantized bytes. Strings are accepted and turned into enums."""

    name: str
    mode: Mode = Mode.STATIC
    quant_format: QuantFormat = QuantFormat.QDQ
    activation_type: QType = QType.U8
    weight_type: QType = QType.S8
    per_channel: bool = True
    reduce_range: bool = False
    calibrate_method: CalibMethod = CalibMethod.MINMAX
    op_types: tuple[str, ...] = ()  # empty: every op type onnxruntime can quantize
    float_output_op_types: tuple[str, ...] = ()  # op types whose inputs are INT8 but outputs stay float
    runtimes: tuple[str, ...] = ()  # the runtimes it is made for; empty: every runtime
    keep_head_float: bool = True
    # Zero-pad convolution channels (quantlab.align) so output channels are a multiple of this, at least 16,
    # and input channels a multiple of 4: onnxruntime's fast INT8 convolution (MLAS ConvSym) takes only those
    # shapes; 4 fits AVX512 CPUs, 8 fits AVX2 and AVX-VNNI; 0 leaves the channels as they are
    align_channels: int = 0
    exclude_nodes: tuple[str, ...] = ()
    include_nodes: tuple[str, ...] = ()  # forced back into INT8 even if a pass keeps them in float
    num_calib: int = 100
    seed: int = 0
    description: str = field(default="", compare=False)

    def __post_init__(self):
        convert = {"mode": Mode, "quant_format": QuantFormat, "activation_type": QType,
                   "weight_type": QType, "calibrate_method": CalibMethod}
        for attr, kind in convert.items():
            object.__setattr__(self, attr, kind.from_value(getattr(self, attr)))
        for attr in ("op_types", "float_output_op_types", "runtimes", "exclude_nodes", "include_nodes"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        if self.align_channels not in ALIGN_CHOICES:
            raise ConfigError(f"align_channels must be one of {', '.join(map(str, ALIGN_CHOICES))} "
                              f"(0: no padding), got {self.align_channels!r}")
        if self.num_calib < 1:
            raise ConfigError(f"num_calib must be at least 1, got {self.num_calib}")
        if self.mode is Mode.DYNAMIC and self.activation_type is not QType.U8:
            raise ConfigError("dynamic quantization computes U8 activations at run time: "
                              "set activation_type='u8'")
        if self.mode is Mode.FP16:
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            changed = [name for name in INT8_ONLY if getattr(self, name) != defaults[name]]
            if changed:
                several = len(changed) > 1
                raise ConfigError(f"recipe {self.name!r}: {', '.join(changed)} only appl{'y' if several else 'ies'} "
                                  "to INT8 quantization, which mode fp16 does not do: leave "
                                  f"{'them at their defaults' if several else 'it at its default'} "
                                  "or choose mode static")

    def settings(self) -> dict:
        """The effective settings as plain JSON values (for metadata and reports); an fp16 recipe's leave out the
        INT8-only ones, which it does not use (and holds at their defaults, so Recipe(**settings()) is itself)."""
        out = {}
        for f in dataclasses.fields(self):
            if self.mode is Mode.FP16 and f.name in INT8_ONLY:
                continue
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, enum.Enum) else (
                list(value) if isinstance(value, tuple) else value)
        return out

    def replace(self, **changes) -> Recipe:
        return dataclasses.replace(self, **changes)


_BASE = Recipe(name="u8s8")
PRESETS: dict[str, Recipe] = {
    r.name: r for r in (
        _BASE.replace(description="QDQ, U8 activations, S8 per-channel weights, head in float: "
                                  "x86-64 with VNNI (u8 x s8 is what the VNNI kernels take)"),
        _BASE.replace(name="u8s8-rr", reduce_range=True,
                      description="u8s8 with 7-bit weights: x86-64 without VNNI, where "
                                  "u8 x s8 products can saturate the 16-bit accumulators"),
        _BASE.replace(name="s8s8", activation_type=QType.S8,
                      description="QDQ, S8 activations and weights, head in float: ARM64 "
                                  "(on x86 these convolutions are not fused and run slower than FP32)"),
        _BASE.replace(name="ov-conv", op_types=("Conv",), float_output_op_types=("Conv",), runtimes=("openvino",),
                      description="u8s8 on convolution inputs and weights only, outputs, SiLU, Add and Concat "
                                  "left in float, head in float: for OpenVINO, which fuses the float SiLU into its "
                                  "INT8 convolutions (on the demo 2.3-2.5x FP32, as fast as NNCF's INT8, vs auto's 1.95x there); on onnxruntime "
                                  "slower than FP32 (a Conv without a Q after it is not fused into QLinearConv)"),
        _BASE.replace(name="ort-default", activation_type=QType.S8, per_channel=False,
                      keep_head_float=False,
                      description="onnxruntime's quantize_static defaults, head included: "
                                  "the field report's model (slow on x86, scores round to zero)"),
        _BASE.replace(name="dynamic", mode=Mode.DYNAMIC, per_channel=False, weight_type=QType.U8,
                      description="dynamic quantization (ConvInteger): no calibration, "
                                  "usually much slower than FP32 for convolutional nets on CPU; "
                                  "U8 weights, the only ConvInteger onnxruntime < 1.20 implements"),
        _BASE.replace(name="fp16", mode=Mode.FP16,
                      description="half-precision weights and activations, I/O float32, head decode float32: for "
                                  "GPUs (CUDA/TensorRT), about 0.5x the size; on CPU onnxruntime runs it through "
                                  "inserted casts, no faster than FP32"),
    )
}


def convsym_output_multiple(cpu: CpuInfo) -> int:
    """The output-channel multiple onnxruntime's fast INT8 convolution (MLAS ConvSym) needs on this CPU; 0 off x86.

    Measured: padding to it took the pruned demo's `auto` from 1.98x to 2.25x FP32 on AVX512-VNNI, and about
    8% faster on AVX2 without VNNI (docs/performance.md). ARM64's ConvSym wants 64+ input channels and is unmeasured.
    """
    if cpu.arch != "x86_64" or "avx2" not in cpu.flags:
        return 0
    return 4 if AVX512_CORE_FLAGS <= cpu.flags else 8


def auto_recipe(cpu: CpuInfo | None = None, providers: Sequence[str] = ()) -> Recipe:
    """The fastest accurate recipe for the first execution provider, named 'auto' with its reason recorded: fp16 on
    a GPU provider; on the CPU the preset onnxruntime's guidance picks for this CPU, channels padded to the CPU's
    fast INT8 convolution rule where it has one."""
    if on_gpu(providers):
        return PRESETS["fp16"].replace(name="auto", description=(
            f"auto on {providers[0]}: fp16 ({PRESETS['fp16'].description}). Measured on CUDA on an H200: INT8 QDQ "
            "ran at 0.40x FP32's speed on the demo at batch 1 (onnxruntime inserted 71 Memcpy nodes: the QLinear "
            "ops went back to the CPU); FP16 at 0.85-0.97x on the demo at batch 1 and 1.07-1.26x on a YOLOv8s at "
            "640, batch 1-32"))
    cpu = cpu or detect_cpu()
    if cpu.arch == "arm64":
        chosen = PRESETS["s8s8"]
    elif cpu.arch == "x86_64" and not cpu.has_vnni:
        chosen = PRESETS["u8s8-rr"]
    else:
        chosen = PRESETS["u8s8"]
    align = convsym_output_multiple(cpu)
    padding = f", channels padded to multiples of {align} (onnxruntime's fast INT8 convolution)" if align else ""
    return chosen.replace(name="auto", align_channels=align, description=f"auto on {cpu.arch}"
                          f"{' with VNNI' if cpu.has_vnni else ''}: {chosen.name} ({chosen.description}){padding}")


def resolve_recipe(name: str | Recipe, cpu: CpuInfo | None = None, providers: Sequence[str] = ()) -> Recipe:
    """A preset by name ('auto' picks by the first execution provider, then by CPU); a Recipe passes through."""
    if isinstance(name, Recipe):
        return name
    if name == "auto":
        return auto_recipe(cpu, providers)
    if name not in PRESETS:
        raise ConfigError(f"recipe {name!r} is unknown: choose auto or one of {', '.join(PRESETS)}")
    return PRESETS[name]


def recipe_choices() -> list[str]:
    """Every name resolve_recipe accepts."""
    return ["auto", *PRESETS]


def parse_recipe_list(text: str) -> list[str]:
    """'auto,ort-default' -> ['auto', 'ort-default'], each checked."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("no recipe named: give a comma-separated list such as auto,s8s8")
    for name in names:
        resolve_recipe(name)
    return names
