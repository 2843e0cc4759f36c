"""What to trace: a built-in config, any importable model factory, or a timm model -- and tracing it.

A :class:`ModelSpec` is validated when it is parsed (no torch needed); :func:`trace_target`
builds the model and traces it. External models are built inside ``with torch.device("meta")``
so that no weights are allocated; a factory that cannot build there (or a model whose forward
cannot run there, e.g. one that reads tensor values) is rebuilt on the CPU, with a note.
Weights are never downloaded (``timm.create_model(..., pretrained=False)``).

Example:
    >>> spec = parse_model_spec("timm:pvt_v2_b0")          # doctest: +SKIP
    >>> trace_target(spec).totals.macs                     # doctest: +SKIP
    566065664
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pvttrace.config import PvtConfig, parse_img
from pvttrace.errors import MetaDeviceError, TraceError, UserCodeExit, UserInputError
from pvttrace.limits import check_input_shape
from pvttrace.records import CONVENTIONS, Shape, Trace

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ModelSpec", "builtin_spec", "load_model", "parse_input_shape", "parse_model_spec", "trace_target"]

_IMPORT_SPEC = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_TIMM_NAME = re.compile(r"^[\w.\-]+$")
_ATTENTION_CHOICES = ("explicit", "sdpa")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model to trace and the input to trace it with.

    ``source`` is ``builtin`` (``config`` set), ``import`` (``target`` = ``package.module:factory``)
    or ``timm`` (``target`` = a timm model name). For external models the input is
    ``input_shape`` when given, else ``(batch, in_chans, *img)`` with defaults 1, 3 and the
    model's own default size (timm's ``pretrained_cfg["input_size"]``) or 224.
    """

    source: str
    target: str
    config: PvtConfig | None = None
    input_shape: Shape | None = None
    img: tuple[int, int] | None = None
    batch: int | None = None
    in_chans: int | None = None
    attention: str | None = None
    """``explicit`` or ``sdpa``: sets every ``fused_attn`` switch of an external model (timm's)."""

    @property
    def name(self) -> str:
        """How the model is named in headers and JSON: ``timm:pvt_v2_b0``, ``pkg.mod:make``, ``tiny``."""
        if self.source == "builtin" and self.config is not None:
            return self.config.variant
        return f"timm:{self.target}" if self.source == "timm" else self.target


def builtin_spec(config: PvtConfig) -> ModelSpec:
    """A spec for the built-in PVT described by ``config``."""
    return ModelSpec(source="builtin", target=config.variant, config=config)


def parse_input_shape(text: str) -> Shape:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``.

    Raises:
        UserInputError: not a comma list of positive integers.
    """
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(re.fullmatch(r"[0-9]{1,30}", p) for p in parts) or any(int(p) <= 0 for p in parts):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise UserInputError(f"input_shape={shown!r} must be positive integers separated by commas, e.g. 1,3,224,224")
    shape = tuple(int(p) for p in parts)
    check_input_shape(shape)
    return shape


def parse_model_spec(
    text: str,
    *,
    input_shape: str | None = None,
    img: str | None = None,
    batch: int | None = None,
    in_chans: int | None = None,
    attention: str | None = None,
) -> ModelSpec:
    """Validate ``--model`` and its input options (no import happens here).

    Raises:
        UserInputError: a malformed spec, a bad size, or ``--input-shape`` combined with
            ``--img``/``--batch``/``--in-chans``.
    """
    spec = text.strip()
    if spec.startswith("timm:"):
        source, target = "timm", spec[len("timm:") :]
        if not _TIMM_NAME.match(target):
            raise UserInputError(f"model={text!r} must name a timm model after 'timm:', e.g. timm:pvt_v2_b0")
    elif _IMPORT_SPEC.match(spec):
        source, target = "import", spec
    else:
        raise UserInputError(
            f"model={text!r} must be PACKAGE.MODULE:FACTORY (a callable returning an nn.Module) or timm:NAME"
        )
    if input_shape is not None and (img is not None or batch is not None or in_chans is not None):
        raise UserInputError("input_shape cannot be combined with img, batch or in_chans; give one or the other")
    for field, value in (("batch", batch), ("in_chans", in_chans)):
        if value is not None and value <= 0:
            raise UserInputError(f"{field}={value} must be a positive integer")
    if attention is not None and attention not in _ATTENTION_CHOICES:
        raise UserInputError(f"attention={attention!r} must be one of {', '.join(_ATTENTION_CHOICES)}")
    size = None
    if img is not None:
        size = parse_img(img)
        if min(size) <= 0:
            raise UserInputError(f"img={size[0]}x{size[1]} must have a positive height and width")
    return ModelSpec(
        source=source,
        target=target,
        input_shape=None if input_shape is None else parse_input_shape(input_shape),
        img=size,
        batch=batch,
        in_chans=in_chans,
        attention=attention,
    )


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame outside torch, for build errors."""
    import torch

    torch_dir = os.path.dirname(torch.__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(torch_dir)]
    return f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""


def _import_factory(spec: ModelSpec) -> Callable[[], Any]:
    module_name, _, attribute = spec.target.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        # The console script's sys.path lacks the working directory; `python -m` has it.
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserInputError(f"model={spec.target!r}: cannot import {module_name} ({_one_line(exc)})") from None
    except SystemExit as exc:
        raise UserCodeExit(f"model {spec.target}: importing {module_name} called sys.exit({exc.code!r})") from None
    except Exception as exc:
        raise TraceError(f"model {spec.target}: importing {module_name} failed: {_one_line(exc)}{_where(exc)}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise UserInputError(f"model={spec.target!r}: {module_name} has no attribute {attribute!r}")
        factory = getattr(factory, part)
    from torch import nn

    if isinstance(factory, nn.Module) or not callable(factory):
        raise UserInputError(
            f"model={spec.target!r}: {attribute} is a {type(factory).__name__}, not a factory; "
            "name a function or class that returns an nn.Module"
        )
    return factory  # type: ignore[no-any-return]


def _timm_factory(spec: ModelSpec) -> Callable[[], Any]:
    try:
        with warnings.catch_warnings():
            # torchvision (imported by timm) warns when its optional image extension is missing;
            # pvttrace needs only timm's model builders.
            warnings.simplefilter("ignore")
            import timm
    except ImportError:
        raise UserInputError(
            f"model='timm:{spec.target}' needs timm, which is not installed; install the extra: "
            "pip install 'pvttrace[timm]' (README: 'Tracing any model')"
        ) from None
    except Exception as exc:
        raise UserInputError(f"timm is installed but cannot be imported: {_one_line(exc)}") from None
    if not timm.is_model(spec.target):
        close = difflib.get_close_matches(spec.target, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserInputError(f"model='timm:{spec.target}': timm has no model {spec.target!r}{hint}")

    def create() -> Any:
        return timm.create_model(spec.target, pretrained=False)

    return create


def _build(factory: Callable[[], Any], device: str, name: str) -> nn.Module:
    import torch
    from torch import nn

    try:
        with torch.device(device):
            if device == "meta":
                model = factory()
            else:
                # Seeded (and the caller's generator left as it was), so that a model whose control
                # flow depends on its weight values traces the same way every time.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    model = factory()
    except SystemExit as exc:
        raise UserCodeExit(f"model {name}: the factory called sys.exit({exc.code!r})") from None
    if not isinstance(model, nn.Module):
        raise UserInputError(f"model={name!r}: the factory returned an object of type {type(model).__name__}, not an nn.Module")
    return model


def _on_device(model: nn.Module, device: str) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return all(t.device.type == device for t in tensors)


def load_model(spec: ModelSpec, *, device: str = "meta", on_note: Callable[[str], None] | None = None) -> tuple[nn.Module, str]:
    """Build the model of an external spec; return it (in eval mode) and the device it lives on.

    On ``meta``, a factory that raises or ignores the device is retried on the CPU with a note.

    Raises:
        UserInputError: the factory cannot be found, or does not return an ``nn.Module``.
        TraceError: the factory raised (the message names the error and where it happened).
    """
    factory = _timm_factory(spec) if spec.source == "timm" else _import_factory(spec)
    if device == "meta":
        try:
            model = _build(factory, "meta", spec.name)
            if _on_device(model, "meta"):
                return _ready(model, spec), "meta"
            reason = "the factory created tensors on another device"
        except (UserInputError, UserCodeExit):
            raise
        except RecursionError:
            raise TraceError(f"model {spec.name} failed to build: {_TOO_DEEP}") from None
        except Exception as exc:
            reason = _one_line(exc)
        if on_note is not None:
            on_note(f"{spec.name} could not be built on the meta device ({reason}); built on cpu instead")
        device = "cpu"
    try:
        model = _build(factory, device, spec.name)
    except (UserInputError, UserCodeExit):
        raise
    except RecursionError:
        raise TraceError(f"model {spec.name} failed to build: {_TOO_DEEP}") from None
    except Exception as exc:
        raise TraceError(f"model {spec.name} failed to build: {_one_line(exc)}{_where(exc)}") from None
    return _ready(model, spec), device


_TOO_DEEP = "RecursionError: it nests modules or calls too deeply for Python's recursion limit"


def _ready(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """The model in eval mode; refuse one whose lazy modules have not made their parameters yet."""
    from torch.nn.parameter import is_lazy

    lazy = next((name for name, p in model.named_parameters() if is_lazy(p)), None)
    if lazy is not None:
        raise UserInputError(
            f"model={spec.name!r} has uninitialised lazy parameters ({lazy}, from a LazyModule); run one forward "
            "in the factory so that they get their shapes, then return the model"
        )
    return model.eval()


def _input_shape(spec: ModelSpec, model: nn.Module) -> Shape:
    if spec.input_shape is not None:
        return spec.input_shape
    default = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = default.get("input_size") if isinstance(default, dict) else None
    in_chans, h, w = (int(size[0]), int(size[1]), int(size[2])) if size and len(size) == 3 else (3, 224, 224)
    if spec.img is not None:
        h, w = spec.img
    shape = (spec.batch or 1, spec.in_chans or in_chans, h, w)
    check_input_shape(shape, field="input (batch, in_chans, img)")
    return shape


def _set_attention(model: nn.Module, spec: ModelSpec) -> None:
    switches = [m for m in model.modules() if isinstance(getattr(m, "fused_attn", None), bool)]
    if not switches:
        raise UserInputError(
            f"attention={spec.attention!r} needs a model whose attention modules have a 'fused_attn' switch "
            f"(timm's do); {spec.name} has none"
        )
    for module in switches:
        setattr(module, "fused_attn", spec.attention == "sdpa")  # noqa: B010 - nn.Module's __setattr__ typing


def trace_target(
    spec: ModelSpec,
    *,
    convention: str = "macs",
    train: bool = False,
    optimizer: str = "adamw",
    device: str = "meta",
    on_note: Callable[[str], None] | None = None,
) -> Trace:
    """Build and trace what ``spec`` names, counting in ``convention``.

    The built-in path is :func:`pvttrace.trace.trace_config`, unchanged. An external model
    is built on ``device`` (meta by default, CPU fallback with a note) and traced with a
    ``(B, C, H, W)`` input; a forward that fails because of the meta device (it reads tensor
    values, or mixes devices) is retried once on the CPU.
    ``on_note`` receives non-fatal notes (one line each).

    Raises:
        UserInputError: bad spec or convention, missing timm, unknown timm model.
        TraceError: the model failed to build or in its forward (message: the error in one
            line and the op where it failed).
    """
    if convention not in CONVENTIONS:
        raise UserInputError(f"convention={convention!r} must be one of {', '.join(CONVENTIONS)}")
    from pvttrace.trace import trace_config

    if spec.source == "builtin":
        if spec.config is None:
            raise UserInputError("a builtin model spec needs a config")
        return trace_config(spec.config, device=device, convention=convention, train=train, optimizer=optimizer)
    try:
        return _trace_external(spec, convention=convention, train=train, optimizer=optimizer, device=device, on_note=on_note)
    except RecursionError:
        raise TraceError(f"model {spec.name}: {_TOO_DEEP}") from None


def _trace_external(
    spec: ModelSpec,
    *,
    convention: str,
    train: bool,
    optimizer: str,
    device: str,
    on_note: Callable[[str], None] | None,
) -> Trace:
    import torch

    from pvttrace.trace import trace_model

    model, used = load_model(spec, device=device, on_note=on_note)
    if spec.attention is not None:
        _set_attention(model, spec)
    shape = _input_shape(spec, model)
    notes: list[str] = []

    def run(model: nn.Module, on: str) -> Trace:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        check_input_shape(shape, dtype_bytes=torch.empty((), dtype=dtype).element_size())
        try:
            example = torch.empty(shape, device=on, dtype=dtype)
            if on != "meta":
                example.normal_(generator=torch.Generator(device=on).manual_seed(0))
        except (RuntimeError, MemoryError) as exc:
            raise TraceError(
                f"cannot allocate the input {list(shape)} ({dtype}) on {on}: {_one_line(exc)[:200]}"
            ) from None
        return trace_model(
            model, example, convention=convention, model_name=spec.name, notes=notes, train=train, optimizer=optimizer
        )

    try:
        trace = run(model, used)
    except TraceError as exc:
        # Only failures that come from the meta device itself (a torch call on meta tensors that
        # reads values or mixes devices: MetaDeviceError) are worth a second, real run; an error the
        # model's own code raises would fail the same way on the CPU.
        if used != "meta" or not isinstance(exc, MetaDeviceError):
            raise type(exc)(f"model {spec.name}: {exc}") from None
        if on_note is not None:
            on_note(f"{spec.name} could not run on the meta device ({exc}); traced on cpu instead")
        model, used = load_model(spec, device="cpu", on_note=on_note)
        if spec.attention is not None:
            _set_attention(model, spec)
        try:
            trace = run(model, used)
        except TraceError as cpu_exc:
            raise type(cpu_exc)(f"model {spec.name}: {cpu_exc}") from None
    for note in notes:
        if on_note is not None:
            on_note(note)
    return trace
