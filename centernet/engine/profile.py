"""The optimisation profile of a TensorRT engine: the input shapes it accepts.

A dynamic ONNX (the default export) gets the profile of the build_engine.py flags (`Profile`); a
static one (export.py --static) gets exactly its one shape (`FixedShape`), since TensorRT takes a
fixed dimension only in a profile with min = opt = max. An end-to-end graph (export.py --end2end)
has a second input, `borders` (B, 4), whose batch range is the canvas's.
"""

import dataclasses
from dataclasses import dataclass

from .. import onnx_export as ox
from ..errors import UserError

SIDE_MULTIPLE = 32  # the ONNX contract: canvas H and W are multiples of 32


BORDERS_NAME = ox.END2END_INPUT_NAMES[1]  # (B, 4) float32 [top, bottom, left, right]


class _IntRecord:
    """to_dict / from_dict for the sidecar, for a dataclass of ints; the shapes of every input."""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields):
        return cls(**{f.name: int(fields[f.name]) for f in dataclasses.fields(cls)})

    def input_shapes(self, end2end=False):
        """{input name: (min, opt, max)}: `canvas`, and for an end-to-end graph `borders`, one
        row per image, over the canvas's batch range."""
        shapes = {ox.INPUT_NAME: self.canvas_shapes()}
        if end2end:
            shapes[BORDERS_NAME] = tuple((shape[0], 4) for shape in self.canvas_shapes())
        return shapes


@dataclass(frozen=True)
class Profile(_IntRecord):
    """The canvas shapes the engine accepts: batch and side (H and W alike) ranges, with the
    shape TensorRT tunes its kernels for (opt)."""

    min_batch: int = 1
    opt_batch: int = 32
    max_batch: int = 32
    min_side: int = 32
    opt_side: int = 672
    max_side: int = 672

    def validate(self):
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise UserError(f'batch profile {self.min_batch}/{self.opt_batch}/{self.max_batch} '
                            'must satisfy 1 <= --min_batch <= --opt_batch <= --max_batch')
        if not SIDE_MULTIPLE <= self.min_side <= self.opt_side <= self.max_side:
            raise UserError(f'side profile {self.min_side}/{self.opt_side}/{self.max_side} must '
                            f'satisfy {SIDE_MULTIPLE} <= --min_side <= --opt_side <= --max_side')
        odd = [s for s in (self.min_side, self.opt_side, self.max_side) if s % SIDE_MULTIPLE]
        if odd:
            raise UserError(f'--min_side/--opt_side/--max_side must be multiples of '
                            f'{SIDE_MULTIPLE} (canvas sides are); got {odd[0]}')
        return self

    def canvas_shapes(self):
        """(min, opt, max) shapes of the `canvas` input, (B, H, W, 3) as the ONNX declares it."""
        return tuple((batch, side, side, 3) for batch, side in (
            (self.min_batch, self.min_side), (self.opt_batch, self.opt_side),
            (self.max_batch, self.max_side)))

    def describe(self):
        return (f'batch {self.min_batch}..{self.max_batch} (opt {self.opt_batch}), '
                f'sides {self.min_side}..{self.max_side} (opt {self.opt_side})')


@dataclass(frozen=True)
class FixedShape(_IntRecord):
    """The one canvas shape of an ONNX exported with a fixed shape (export.py --static): TensorRT
    takes fixed dimensions only in a profile with min = opt = max."""

    batch: int
    height: int
    width: int

    def validate(self):
        return self

    @property
    def min_batch(self):
        return self.batch

    @property
    def max_batch(self):
        return self.batch

    def canvas_shapes(self):
        shape = (self.batch, self.height, self.width, 3)
        return shape, shape, shape

    def describe(self):
        return f'fixed shape {self.batch}x{self.height}x{self.width} (a static ONNX)'


def profile_from_dict(fields):
    """A sidecar's `profile` record -> Profile or FixedShape."""
    kind = FixedShape if 'height' in fields else Profile
    return kind.from_dict(fields)


def onnx_canvas_dims(onnx_path):
    """The ONNX's declared `canvas` dimensions: an int where fixed, None where dynamic."""
    import onnx
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and OSError alike
        raise UserError(f'{onnx_path} is not a readable ONNX ({type(exc).__name__}): make it '
                        'again with export.py') from None
    for value in proto.graph.input:
        if value.name == ox.INPUT_NAME:
            return tuple(d.dim_value if d.HasField('dim_value') else None
                         for d in value.type.tensor_type.shape.dim)
    raise UserError(f'{onnx_path} has no input {ox.INPUT_NAME!r}: export it with export.py')


def resolve_profile(onnx_path, profile, log=print):
    """The profile to build with: `profile` for a dynamic ONNX; for a static one (all of B, H, W
    fixed) its one shape, min = opt = max, as TensorRT requires of fixed dimensions. An ONNX with
    some fixed and some dynamic of B, H, W is refused: this kit never exports one."""
    dims = onnx_canvas_dims(onnx_path)
    fixed = [d is not None for d in dims[:3]]
    if not any(fixed):
        return profile
    if not all(fixed):
        shown = 'x'.join('?' if d is None else str(d) for d in dims)
        raise UserError(f'{onnx_path} fixes only some of the canvas dimensions ({shown}): export '
                        'it with export.py, either dynamic (the default) or --static BxHxW')
    shape = FixedShape(*dims[:3])
    if shape.height % SIDE_MULTIPLE or shape.width % SIDE_MULTIPLE:
        raise UserError(f'{onnx_path} has a fixed canvas {shape.height}x{shape.width}, not a '
                        f'multiple of {SIDE_MULTIPLE}: export it again with --static BxHxW '
                        f'(H and W multiples of {SIDE_MULTIPLE}) or without --static')
    if profile != Profile():
        log(f'{onnx_path} has a fixed input shape: the engine takes exactly '
            f'{shape.batch}x{shape.height}x{shape.width}; the --min/opt/max_batch and _side '
            'flags do not apply (export without --static for a range of shapes)')
    return shape
