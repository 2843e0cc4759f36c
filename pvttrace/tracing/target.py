"""What to trace: a built-in config, any importable model factory, or a timm model -- and tracing it.

A :class:`ModelSpec` is validated when it is made (:func:`builtin_spec`, :func:`external_spec`; no torch
needed); :func:`trace_target` builds the model and traces it. External models are built inside
``with torch.device("meta")`` so that no weights are allocated; a factory that cannot build there (or a
model whose forward cannot run there, e.g. one that reads tensor values) is rebuilt on the CPU, with a note.
Weights are never downloaded (``timm.create_model(..., pretrained=False)``).

Example:
    >>> spec = external_spec("timm", "pvt_v2_b0")          # doctest: +SKIP
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pvttrace.base.errors import MetaDeviceError, TraceError, UserCodeExit, UserInputError
from pvttrace.config import Attention, Device, PvtConfig, check_input_shape
from pvttrace.costs.conventions import Convention, as_convention
from pvttrace.memory.estimate import Optimizer
from pvttrace.records import Shape, Trace
from pvttrace.tracing.dense import HeadConfig

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ModelSpec",
    "builtin_spec",
    "external_spec",
    "import_optional",
    "install_advice",
    "load_model",
    "module_facts",
    "trace_target",
]

_IMPORT_SPEC = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_TIMM_NAME = re.compile(r"^[\w.\-]+$")
_HF_NAME = re.compile(r"^[A-Za-z_]\w*$")
_ATTENTION_CHOICES = tuple(a.value for a in Attention)
_EXTERNAL_SOURCES = ("import", "timm", "hf")


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
    head: HeadConfig | None = None
    """Built-in only: a dense-prediction head on the PVT (``pvttrace.tracing.heads``), None for the PVT alone."""
    options: tuple[tuple[str, str], ...] = ()
    """``hf:`` models: config overrides ``(key, value text)``, applied to the config class's defaults."""
    inputs: str | None = None
    """``package.module:function`` returning the forward's inputs: a tensor, a tuple (positional) or a dict
    (keyword); called inside ``with torch.device(...)``, so ``torch.empty``/``randn`` land on the trace device."""

    def with_overrides(self, *, batch: int | None = None, img: tuple[int, int] | None = None) -> ModelSpec:
        """This spec at another batch size or image size (``fit`` searches them).

        A built-in config is re-validated (:meth:`pvttrace.config.PvtConfig.with_overrides`); an external
        model's input shape, when given, gets the new batch (first dim) and image (last two dims).

        Raises:
            ConfigError: the built-in config does not accept the size.
            UserInputError: an input shape without the dims to change.
        """
        changes: dict[str, object] = {}
        if batch is not None:
            changes["batch"] = batch
        if img is not None:
            changes["img"] = img
        if self.config is not None:
            return replace(self, config=self.config.with_overrides(**changes))
        if self.input_shape is None:
            return replace(self, batch=self.batch if batch is None else batch, img=self.img if img is None else img)
        shape = list(self.input_shape)
        if img is not None:
            if len(shape) < 3:
                raise UserInputError(f"input_shape={','.join(map(str, shape))} has no H and W to change")
            shape[-2:] = img
        if batch is not None:
            shape[0] = batch
        return replace(self, input_shape=tuple(shape))

    @property
    def name(self) -> str:
        """How the model is named in headers and JSON: ``timm:pvt_v2_b0``, ``pkg.mod:make``, ``tiny``."""
        if self.source == "builtin" and self.config is not None:
            return self.config.variant if self.head is None else f"{self.head.kind} on {self.config.variant}"
        if self.source in ("timm", "hf"):
            return f"{self.source}:{self.target}"
        return self.target


def builtin_spec(config: PvtConfig, head: HeadConfig | None = None) -> ModelSpec:
    """A spec for the built-in PVT described by ``config`` (with a dense-prediction ``head`` when given)."""
    return ModelSpec(source="builtin", target=config.variant, config=config, head=head)


def external_spec(
    source: str,
    target: str,
    *,
    input_shape: Shape | None = None,
    img: tuple[int, int] | None = None,
    batch: int | None = None,
    in_chans: int | None = None,
    attention: Attention | str | None = None,
    options: Sequence[tuple[str, str]] = (),
    inputs: str | None = None,
) -> ModelSpec:
    """A validated spec for a model pvttrace does not build: ``import``, ``timm`` or ``hf`` (no import happens here).

    ``target`` is ``package.module:factory``, a timm model name or a transformers class name;
    ``options`` are ``hf`` config overrides ``(key, Python literal text)``; ``inputs`` is
    ``package.module:function`` returning the forward's inputs. Command-line text (``timm:NAME``,
    ``1,3,224,224``) is parsed by :func:`pvttrace.cli.parsing.parse_model_spec`.

    Example:
        >>> external_spec("timm", "pvt_v2_b0", img=(256, 256), batch=2).name
        'timm:pvt_v2_b0'

    Raises:
        UserInputError: a value that breaks a rule, or input options that do not combine.
    """
    if source not in _EXTERNAL_SOURCES:
        raise UserInputError(f"source={source!r} must be one of: {', '.join(_EXTERNAL_SOURCES)}")
    if source == "timm" and not _TIMM_NAME.match(target):
        raise UserInputError(f"model={'timm:' + target!r} must name a timm model after 'timm:', e.g. timm:pvt_v2_b0")
    if source == "hf" and not _HF_NAME.match(target):
        raise UserInputError(
            f"model={'hf:' + target!r} must name a transformers model class after 'hf:', e.g. hf:PvtV2Model"
        )
    if source == "import" and not _IMPORT_SPEC.match(target):
        raise UserInputError(
            f"model={target!r} must be PACKAGE.MODULE:FACTORY (a callable returning an nn.Module), "
            "timm:NAME or hf:CLASS"
        )
    if options and source != "hf":
        raise UserInputError("model_option applies to hf:CLASS models only (timm and factory models take no config)")
    if inputs is not None:
        if not _IMPORT_SPEC.match(inputs):
            raise UserInputError(f"inputs={inputs!r} must be PACKAGE.MODULE:FUNCTION returning the forward's inputs")
        if input_shape is not None or img is not None or batch is not None or in_chans is not None:
            raise UserInputError(
                "inputs cannot be combined with input_shape, img, batch or in_chans; the factory sets them"
            )
    if input_shape is not None and (img is not None or batch is not None or in_chans is not None):
        raise UserInputError("input_shape cannot be combined with img, batch or in_chans; give one or the other")
    for field, value in (("batch", batch), ("in_chans", in_chans)):
        if value is not None and value <= 0:
            raise UserInputError(f"{field}={value} must be a positive integer")
    if attention is not None and attention not in _ATTENTION_CHOICES:
        raise UserInputError(f"attention={attention!r} must be one of {', '.join(_ATTENTION_CHOICES)}")
    if img is not None and min(img) <= 0:
        raise UserInputError(f"img={img[0]}x{img[1]} must have a positive height and width")
    if input_shape is not None:
        if any(size <= 0 for size in input_shape):
            shown = ",".join(map(str, input_shape))
            raise UserInputError(f"input_shape={shown!r} must be positive integers, e.g. 1,3,224,224")
        check_input_shape(tuple(input_shape))
    return ModelSpec(
        source=source,
        target=target,
        input_shape=None if input_shape is None else tuple(input_shape),
        img=img,
        batch=batch,
        in_chans=in_chans,
        attention=None if attention is None else Attention(attention),
        options=tuple(options),
        inputs=inputs,
    )


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame outside torch, for build errors."""
    import torch

    torch_dir = os.path.dirname(torch.__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(torch_dir)]
    return f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""


def _import_factory(spec: ModelSpec, what: str = "model") -> Callable[[], Any]:
    module_name, _, attribute = spec.target.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        # The console script's sys.path lacks the working directory; `python -m` has it.
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserInputError(f"{what}={spec.target!r}: cannot import {module_name} ({_one_line(exc)})") from None
    except SystemExit as exc:
        raise UserCodeExit(f"model {spec.target}: importing {module_name} called sys.exit({exc.code!r})") from None
    except Exception as exc:
        raise TraceError(
            f"{what} {spec.target}: importing {module_name} failed: {_one_line(exc)}{_where(exc)}"
        ) from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise UserInputError(f"{what}={spec.target!r}: {module_name} has no attribute {attribute!r}")
        factory = getattr(factory, part)
    from torch import nn

    if isinstance(factory, nn.Module) or not callable(factory):
        raise UserInputError(
            f"{what}={spec.target!r}: {attribute} is a {type(factory).__name__}, not a factory; "
            "name a function or class that returns an nn.Module"
        )
    return factory  # type: ignore[no-any-return]


def import_optional(module: str, spec: ModelSpec) -> Any:
    """Import timm or transformers for ``spec``, or say why not in one line.

    The advice never names an install that would replace the user's torch: ``pvttrace[timm]``
    pins nothing, but pip resolving timm's torchvision can pull another torch build.

    Raises:
        UserInputError: the import failed (the message carries the real import error).
    """
    try:
        with warnings.catch_warnings():
            # torchvision (imported by timm) warns when its optional image extension is missing;
            # pvttrace needs only the model builders.
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except Exception as exc:
        error = " ".join(str(exc).split()) if isinstance(exc, ImportError) else _one_line(exc)
        advice = install_advice(module, exc)
        raise UserInputError(
            f"model={spec.name!r} needs {module}: {module} failed to import: {error}; {advice}"
        ) from None


def install_advice(module: str, exc: BaseException) -> str:
    """What to install for ``module`` without replacing the installed torch (README: 'Tracing any model')."""
    missing = getattr(exc, "name", None)
    import torch

    version = torch.__version__.split("+")[0]
    if isinstance(exc, ModuleNotFoundError) and missing not in (None, module, "torchvision"):
        return f"install what it lacks: pip install {missing}"
    if module == "timm":
        return (
            f"install the torchvision release made for your torch {version} (pytorch.org's compatibility table) "
            "from the same index as your torch, then: pip install timm"
        )
    return f"pip install {module} (it does not pin torch; keep your torch {version})"


def _timm_factory(spec: ModelSpec) -> Callable[[], Any]:
    timm = import_optional("timm", spec)
    if not timm.is_model(spec.target):
        close = difflib.get_close_matches(spec.target, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserInputError(f"model='timm:{spec.target}': timm has no model {spec.target!r}{hint}")

    def create() -> Any:
        return timm.create_model(spec.target, pretrained=False)

    return create


def _hf_factory(spec: ModelSpec) -> Callable[[], Any]:
    """A transformers model class built from its config class's defaults plus ``spec.options``.

    No weights and no hub: ``cls(config_class(**overrides))``, which initialises on the current device.
    """
    transformers = import_optional("transformers", spec)
    cls = getattr(transformers, spec.target, None)
    config_class = getattr(cls, "config_class", None)
    if cls is None or config_class is None:
        names = [
            n for n in dir(transformers) if n.endswith(("Model", "ForImageClassification", "ForSemanticSegmentation"))
        ]
        close = difflib.get_close_matches(spec.target, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserInputError(f"model='hf:{spec.target}': transformers has no model class {spec.target!r}{hint}")
    default_config = config_class()
    defaults = default_config.to_dict()
    overrides: dict[str, Any] = {}
    for key, text in spec.options:
        if key not in defaults and not hasattr(default_config, key):
            close = difflib.get_close_matches(key, list(defaults), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserInputError(f"model_option {key}={text}: {config_class.__name__} has no field {key!r}{hint}")
        overrides[key] = _literal(text)
    try:
        config = config_class(**overrides)
    except Exception as exc:
        raise UserInputError(f"model_option: {config_class.__name__} rejects {overrides}: {_one_line(exc)}") from None

    def create() -> Any:
        return cls(config)

    return create


def _literal(text: str) -> Any:
    """A config value: a Python literal (``[3, 4, 6, 3]``, ``0.5``, ``True``), else the text as a string."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _build(factory: Callable[[], Any], device: str, name: str) -> nn.Module:
    import torch
    from torch import nn

    from pvttrace.tracing.noinit import default_device_without_init

    try:
        with default_device_without_init(device):
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
        raise UserInputError(
            f"model={name!r}: the factory returned an object of type {type(model).__name__}, not an nn.Module"
        )
    return model


def _on_device(model: nn.Module, device: str) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return all(t.device.type == device for t in tensors)


def load_model(
    spec: ModelSpec, *, device: str = "meta", on_note: Callable[[str], None] | None = None
) -> tuple[nn.Module, str]:
    """Build the model of an external spec; return it (in eval mode) and the device it lives on.

    On ``meta``, a factory that raises or ignores the device is retried on the CPU with a note.

    Raises:
        UserInputError: the factory cannot be found, or does not return an ``nn.Module``.
        TraceError: the factory raised (the message names the error and where it happened).
    """
    if spec.source == "timm":
        factory = _timm_factory(spec)
    elif spec.source == "hf":
        factory = _hf_factory(spec)
    else:
        factory = _import_factory(spec)
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
    if size is None and spec.source == "hf":
        size = _hf_input_size(model)
    in_chans, h, w = (int(size[0]), int(size[1]), int(size[2])) if size and len(size) == 3 else (3, 224, 224)
    if spec.img is not None:
        h, w = spec.img
    shape = (spec.batch or 1, spec.in_chans or in_chans, h, w)
    check_input_shape(shape, field="input (batch, in_chans, img)")
    return shape


def _hf_input_size(model: nn.Module) -> tuple[int, int, int] | None:
    """(channels, H, W) from a transformers config's ``num_channels`` and ``image_size`` (224 when absent)."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    image = getattr(config, "image_size", 224)
    h, w = (image, image) if isinstance(image, int) else (int(image[0]), int(image[1]))
    return (int(getattr(config, "num_channels", 3)), h, w)


def _set_attention(model: nn.Module, spec: ModelSpec) -> None:
    switches = [m for m in model.modules() if isinstance(getattr(m, "fused_attn", None), bool)]
    if not switches:
        raise UserInputError(
            f"attention={str(spec.attention)!r} needs a model whose attention modules have a 'fused_attn' switch "
            f"(timm's do); {spec.name} has none"
        )
    for module in switches:
        setattr(module, "fused_attn", spec.attention == "sdpa")  # noqa: B010 - nn.Module's __setattr__ typing


def module_facts(model: nn.Module) -> tuple[dict[str, int], dict[str, str]]:
    """Each module's own parameter count (shared parameters counted once) and class name."""
    params: dict[str, int] = {}
    seen: set[int] = set()
    for path, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        params[path] = sum(p.numel() for p in own)
    return params, {path: type(module).__name__ for path, module in model.named_modules()}


def _call_inputs(spec: ModelSpec, device: str) -> Any:
    """The forward's inputs from ``spec.inputs``, made on ``device``, as
    :class:`pvttrace.tracing.recorder.ModelInputs`."""
    import torch

    from pvttrace.tracing.recorder import ModelInputs

    assert spec.inputs is not None
    factory = _import_factory(replace(spec, target=spec.inputs), what="inputs")
    try:
        with torch.device(device):
            value = factory()
    except Exception as exc:
        raise TraceError(f"inputs {spec.inputs} failed: {_one_line(exc)}{_where(exc)}") from None
    if isinstance(value, torch.Tensor):
        return ModelInputs((value,))
    if isinstance(value, dict):
        return ModelInputs((), dict(value))
    if isinstance(value, (tuple, list)):
        return ModelInputs(tuple(value))
    raise UserInputError(
        f"inputs={spec.inputs!r} returned a {type(value).__name__}; return a tensor, a tuple or a dict"
    )


def _explicit_attention(model: nn.Module) -> None:
    """Turn off every ``fused_attn`` switch (timm's): the attention timm's benchmark counted with fvcore."""
    for module in model.modules():
        if isinstance(getattr(module, "fused_attn", None), bool):
            setattr(module, "fused_attn", False)  # noqa: B010 - nn.Module's __setattr__ typing


def trace_target(
    spec: ModelSpec,
    *,
    convention: Convention | str = Convention.MACS,
    train: bool = False,
    optimizer: Optimizer | str = Optimizer.ADAMW,
    device: Device | str = Device.META,
    memory_figures: bool = True,
    model: nn.Module | None = None,
    on_note: Callable[[str], None] | None = None,
    on_model: Callable[[nn.Module], None] | None = None,
) -> Trace:
    """Build and trace what ``spec`` names, counting in ``convention``: the one tracing entry point.

    Every command traces through here, for built-in configs (with or without a dense-prediction
    head) and ``--model`` alike. A built-in config is traced by :func:`pvttrace.tracing.recorder.trace_config`
    (``model``, when given, is a PVT already built for its architecture, reused across image sizes;
    ``memory_figures=False`` skips storage tracking); a head by :func:`pvttrace.tracing.heads.trace_dense`.
    An external model is built on ``device`` (meta by default, CPU fallback with a note) and traced
    with a ``(B, C, H, W)`` input; a forward that fails because of the meta device (it reads tensor
    values, or mixes devices) is retried once on the CPU.
    ``on_note`` receives non-fatal notes (one line each); ``on_model``, the model that was traced
    (for views that need its modules, e.g. :mod:`pvttrace.analyses.module_view`).

    Example:
        >>> from pvttrace.config import get_variant
        >>> trace_target(builtin_spec(get_variant("tiny"))).totals.macs
        1932911616

    Raises:
        UserInputError: bad spec or convention, missing timm, unknown timm model.
        TraceError: the model failed to build or in its forward (message: the error in one
            line and the op where it failed).
    """
    convention = as_convention(convention)
    # Looked up at call time, so that a test (or a caller) that replaces recorder.trace_config is honoured.
    from pvttrace.tracing import recorder

    if spec.source == "builtin":
        if spec.config is None:
            raise UserInputError("a builtin model spec needs a config")
        if spec.head is not None:
            if convention != "macs":
                raise UserInputError(
                    f"convention={str(convention)!r} works on the PVT alone; whole models (--head) count macs"
                )
            from pvttrace.tracing.heads import build_dense_model, trace_dense

            if on_model is not None:
                on_model(build_dense_model(spec.config, spec.head))
            return trace_dense(spec.config, spec.head, device=device, train=train, optimizer=optimizer)
        if on_model is not None:
            from pvttrace.tracing.model import build_model

            on_model(model if model is not None else build_model(spec.config))
        return recorder.trace_config(
            spec.config,
            device=device,
            convention=convention,
            train=train,
            optimizer=optimizer,
            memory_figures=memory_figures,
            model=model,
        )
    if model is not None:
        raise UserInputError(f"model {spec.name}: a prebuilt model goes with built-in configs only")
    try:
        return _trace_external(
            spec,
            convention=convention,
            train=train,
            optimizer=optimizer,
            device=device,
            on_note=on_note,
            on_model=on_model,
        )
    except RecursionError:
        raise TraceError(f"model {spec.name}: {_TOO_DEEP}") from None


def _trace_external(
    spec: ModelSpec,
    *,
    convention: Convention,
    train: bool,
    optimizer: Optimizer | str,
    device: str,
    on_note: Callable[[str], None] | None,
    on_model: Callable[[nn.Module], None] | None,
) -> Trace:
    import torch

    from pvttrace.tracing.recorder import ModelInputs, trace_model

    model, used = load_model(spec, device=device, on_note=on_note)
    if spec.attention is not None:
        _set_attention(model, spec)
    elif convention == "timm":
        _explicit_attention(model)
    shape = _input_shape(spec, model)
    notes: list[str] = []

    def run(model: nn.Module, on: str) -> Trace:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        example: torch.Tensor | ModelInputs
        if spec.inputs is not None:
            example = _call_inputs(spec, on)
        else:
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
        elif convention == "timm":
            _explicit_attention(model)
        try:
            trace = run(model, used)
        except TraceError as cpu_exc:
            raise type(cpu_exc)(f"model {spec.name}: {cpu_exc}") from None
    for note in notes:
        if on_note is not None:
            on_note(note)
    if on_model is not None:
        on_model(model)
    return trace
