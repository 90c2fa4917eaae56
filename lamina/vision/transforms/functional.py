"""Image transforms as functions, with torchvision's names and semantics (``transforms.functional``).

Each function takes a PIL image or a Tensor image of shape (..., C, H, W) (2-D ``(H, W)`` where
torchvision allows it) and returns the same kind. PIL images go through Pillow's own operations,
as in torchvision; tensors go through Lamina ops, so float tensors keep their autograd history
where the operation is differentiable (resize, crop, pad, flips, normalize, colour blends).
uint8 tensors are computed in float32 and rounded back, as torchvision does.
"""
from __future__ import annotations

import numbers
from enum import Enum
from functools import lru_cache

import numpy as np

from ... import backend, creation
from ...ops import index_select
from ...ops import pad as _pad
from ...tensor import Tensor

try:
    from PIL import Image, ImageEnhance, ImageOps
except ImportError:  # tensor images still work without Pillow
    Image = ImageEnhance = ImageOps = None


class InterpolationMode(Enum):
    """Resampling filters, as ``torchvision.transforms.InterpolationMode``."""
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


_PIL_CODES = {InterpolationMode.NEAREST: 0, InterpolationMode.NEAREST_EXACT: 0, InterpolationMode.LANCZOS: 1,
              InterpolationMode.BILINEAR: 2, InterpolationMode.BICUBIC: 3, InterpolationMode.BOX: 4,
              InterpolationMode.HAMMING: 5}
_FROM_PIL_CODES = {0: InterpolationMode.NEAREST, 1: InterpolationMode.LANCZOS, 2: InterpolationMode.BILINEAR,
                   3: InterpolationMode.BICUBIC, 4: InterpolationMode.BOX, 5: InterpolationMode.HAMMING}


def _is_pil(img) -> bool:
    return Image is not None and isinstance(img, Image.Image)


def _check_image(img, name: str) -> None:
    if isinstance(img, Tensor):
        if img.ndim < 2:
            raise TypeError(f"{name}: expected a tensor image of shape (..., C, H, W) or (H, W), got shape {img.shape}")
        return
    if not _is_pil(img):
        raise TypeError(f"{name}: expected a PIL Image or a Tensor, got {type(img).__name__}")


def _interpolation(mode, name: str) -> InterpolationMode:
    if isinstance(mode, InterpolationMode):
        return mode
    if isinstance(mode, int) and mode in _FROM_PIL_CODES:
        return _FROM_PIL_CODES[mode]
    if isinstance(mode, str):
        for m in InterpolationMode:
            if m.value == mode:
                return m
    raise ValueError(f"{name}: unknown interpolation {mode!r}; expected an InterpolationMode or a PIL filter code 0-5")


def get_dimensions(img) -> list:
    """[channels, height, width] of ``img``."""
    _check_image(img, "get_dimensions")
    if isinstance(img, Tensor):
        c = 1 if img.ndim == 2 else img.shape[-3]
        return [c, img.shape[-2], img.shape[-1]]
    return [len(img.getbands()), img.height, img.width]


def get_image_size(img) -> list:
    """[width, height] of ``img`` (torchvision's order)."""
    _, h, w = get_dimensions(img)
    return [w, h]


def get_image_num_channels(img) -> int:
    return get_dimensions(img)[0]


# ---- conversions ----------------------------------------------------------------------------

_PIL_NUMPY_TYPES = {"I": np.int32, "I;16": np.int16, "F": np.float32}


def to_tensor(pic) -> Tensor:
    """A PIL image or an (H, W[, C]) ndarray as a (C, H, W) Tensor; uint8 data becomes the default
    float dtype scaled to [0, 1], other data keeps its dtype and values (as torchvision)."""
    if _is_pil(pic):
        arr = np.array(pic, _PIL_NUMPY_TYPES.get(pic.mode, np.uint8), copy=True)
        if pic.mode == "1":
            arr = 255 * arr
        arr = arr.reshape(pic.height, pic.width, len(pic.getbands()))
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"to_tensor: expected an ndarray of 2 or 3 dims (H, W[, C]), got shape {pic.shape}")
        arr = pic[:, :, None] if pic.ndim == 2 else pic
    else:
        raise TypeError(f"to_tensor: expected a PIL Image or an ndarray, got {type(pic).__name__}")
    arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    if arr.dtype == np.uint8:
        arr = arr.astype(np.dtype(backend.get_default_dtype())) / np.float32(255)
    return creation.from_numpy(np.ascontiguousarray(arr))


def pil_to_tensor(pic) -> Tensor:
    """A PIL image as a (C, H, W) Tensor of its own dtype (uint8 for 8-bit modes), unscaled."""
    if not _is_pil(pic):
        raise TypeError(f"pil_to_tensor: expected a PIL Image, got {type(pic).__name__}")
    arr = np.array(pic, _PIL_NUMPY_TYPES.get(pic.mode, np.uint8), copy=True)
    if pic.mode == "1":
        arr = 255 * arr
    arr = arr.reshape(pic.height, pic.width, len(pic.getbands()))
    return creation.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


_MODES_BY_CHANNELS = {2: ("LA",), 3: ("RGB", "YCbCr", "HSV"), 4: ("RGBA", "CMYK", "RGBX")}
_ONE_CHANNEL_MODES = {np.dtype(np.uint8): "L", np.dtype(np.int16): "I;16", np.dtype(np.int32): "I",
                      np.dtype(np.float32): "F"}


def to_pil_image(pic, mode=None):
    """A (C, H, W) Tensor or an (H, W, C) ndarray as a PIL image. Float tensors (except for
    ``mode="F"``) are scaled by 255 and truncated to uint8, as torchvision does."""
    if isinstance(pic, Tensor):
        if pic.ndim not in (2, 3):
            raise ValueError(f"to_pil_image: expected a 2-D or 3-D tensor, got shape {pic.shape}")
        arr = pic.detach().cpu().numpy()
        if arr.ndim == 2:
            arr = arr[None]
        if arr.shape[0] > 4:
            raise ValueError(f"to_pil_image: expected at most 4 channels in dim 0, got shape {pic.shape}")
        if np.issubdtype(arr.dtype, np.floating) and mode != "F":
            arr = (arr * np.float32(255)).astype(np.uint8)
        arr = arr.transpose(1, 2, 0)
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"to_pil_image: expected a 2-D or 3-D ndarray, got shape {pic.shape}")
        arr = pic[:, :, None] if pic.ndim == 2 else pic
        if arr.shape[-1] > 4:
            raise ValueError(f"to_pil_image: expected at most 4 channels in the last dim, got shape {pic.shape}")
    else:
        raise TypeError(f"to_pil_image: expected a Tensor or an ndarray, got {type(pic).__name__}")
    channels = arr.shape[2]
    if channels == 1:
        arr = arr[:, :, 0]
        expected = _ONE_CHANNEL_MODES.get(arr.dtype)
        if expected is None:
            raise TypeError(f"to_pil_image: a 1-channel image of dtype {arr.dtype} has no PIL mode; "
                            "use uint8, int16, int32 or float32")
        if mode is not None and mode != expected:
            raise ValueError(f"to_pil_image: mode {mode!r} does not fit a 1-channel {arr.dtype} image "
                             f"(expected {expected!r})")
        if expected == "I;16":
            return Image.frombytes("I;16", (arr.shape[1], arr.shape[0]), arr.astype("<u2").tobytes())
        return Image.fromarray(np.ascontiguousarray(arr))
    allowed = _MODES_BY_CHANNELS[channels]
    mode = allowed[0] if mode is None else mode
    if mode not in allowed:
        raise ValueError(f"to_pil_image: mode {mode!r} does not fit a {channels}-channel image; "
                         f"expected one of {allowed}")
    if arr.dtype != np.uint8:
        raise TypeError(f"to_pil_image: a {channels}-channel image must be uint8 (or a float tensor), "
                        f"got {arr.dtype}")
    return Image.frombytes(mode, (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())


def convert_image_dtype(image: Tensor, dtype=backend.float32) -> Tensor:
    """``image`` in ``dtype`` with values rescaled: uint8 [0, 255] <-> float [0, 1]."""
    if not isinstance(image, Tensor):
        raise TypeError(f"convert_image_dtype: expected a Tensor, got {type(image).__name__}")
    src_float, dst_float = backend.is_floating(image.dtype), backend.is_floating(dtype)
    if image.dtype == dtype:
        return image
    if src_float and dst_float:
        return image.to(dtype)
    if not src_float and dst_float:
        return image.to(dtype) / float(np.iinfo(np.dtype(image.dtype)).max)
    if src_float and not dst_float:
        top = float(np.iinfo(np.dtype(dtype)).max)
        # torchvision's rule: scale by max + 1 - eps, so 1.0 maps to max and each bin is equally wide
        return (image * (top + 1.0 - 1e-3)).to(dtype)
    return _apply_numpy(image, lambda a: (a.astype(np.float64) * np.iinfo(np.dtype(dtype)).max
                                          / np.iinfo(a.dtype).max).round().astype(np.dtype(dtype)))


def _apply_numpy(t: Tensor, fn) -> Tensor:
    """``fn`` applied to ``t``'s values as a NumPy array, the result back on ``t``'s device (no autograd)."""
    out = fn(t.detach().cpu().numpy())
    return creation.tensor(out, dtype=backend.as_dtype(out.dtype), device=t.device)


def _float(img: Tensor) -> Tensor:
    return img if backend.is_floating(img.dtype) else img.to(backend.float32)


def _back(out: Tensor, like: Tensor) -> Tensor:
    """``out`` (computed in float) in ``like``'s dtype: integer images are rounded and clamped."""
    if backend.is_floating(like.dtype):
        return out
    info = np.iinfo(np.dtype(like.dtype))
    return _apply_numpy(out, lambda a: np.clip(np.rint(a), info.min, info.max).astype(np.dtype(like.dtype)))


def _bound(img: Tensor) -> float:
    return 1.0 if backend.is_floating(img.dtype) else float(np.iinfo(np.dtype(img.dtype)).max)


# ---- normalize ------------------------------------------------------------------------------

def normalize(tensor: Tensor, mean, std, inplace: bool = False) -> Tensor:
    """(tensor - mean[c]) / std[c] for each channel c of a float (..., C, H, W) tensor."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"normalize: expected a Tensor, got {type(tensor).__name__}")
    if not backend.is_floating(tensor.dtype):
        raise TypeError(f"normalize: expected a float tensor, got {tensor.dtype}; convert it first "
                        "(ToTensor or convert_image_dtype)")
    if tensor.ndim < 3:
        raise ValueError(f"normalize: expected a tensor image of shape (..., C, H, W), got {tensor.shape}")
    mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    std = np.atleast_1d(np.asarray(std, dtype=np.float64))
    c = tensor.shape[-3]
    for what, v in (("mean", mean), ("std", std)):
        if v.ndim != 1 or v.shape[0] not in (1, c):
            raise ValueError(f"normalize: {what} has {v.shape[0]} values for {c} channels")
    if (std == 0).any():
        raise ValueError(f"normalize: std {std.tolist()} has a zero, which would divide by zero")
    m = creation.tensor(mean.reshape(-1, 1, 1), dtype=tensor.dtype, device=tensor.device)
    s = creation.tensor(std.reshape(-1, 1, 1), dtype=tensor.dtype, device=tensor.device)
    if inplace:
        return tensor.sub_(m).div_(s)
    return (tensor - m) / s


# ---- geometry -------------------------------------------------------------------------------

def _size_pair(size, name: str):
    if isinstance(size, numbers.Number):
        return int(size), int(size)
    size = tuple(size)
    if len(size) == 1:
        return int(size[0]), int(size[0])
    if len(size) != 2:
        raise ValueError(f"{name}: size must be an int or a sequence of 1 or 2 ints, got {size}")
    return int(size[0]), int(size[1])


def _resized_output_size(h: int, w: int, size, max_size):
    """torchvision's rule: an int (or 1-sequence) matches the smaller edge keeping the aspect
    ratio, the longer edge truncated to int; ``max_size`` then caps the longer edge."""
    if isinstance(size, numbers.Number) or len(size) == 1:
        requested = int(size) if isinstance(size, numbers.Number) else int(size[0])
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None:
            if max_size <= requested:
                raise ValueError(f"resize: max_size ({max_size}) must be larger than the requested size ({requested})")
            if new_long > max_size:
                new_short, new_long = int(max_size * new_short / new_long), max_size
        return (new_long, new_short) if w <= h else (new_short, new_long)
    if max_size is not None:
        raise ValueError("resize: max_size is only allowed when size is a single int; "
                         f"got size={tuple(size)} and max_size={max_size}")
    return _size_pair(size, "resize")


def _filter(mode: InterpolationMode, antialias: bool):
    """(support, kernel) of the separable filter PIL and torch's antialiased resize use."""
    if mode == InterpolationMode.BILINEAR:
        return 1.0, lambda x: np.clip(1.0 - np.abs(x), 0.0, None)
    a = -0.5 if antialias else -0.75  # PIL's (and torch's antialiased) cubic vs torch's plain one

    def cubic(x):
        x = np.abs(x)
        return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                        np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))
    return 2.0, cubic


def resize_matrix(in_size: int, out_size: int, mode: InterpolationMode, antialias: bool = True) -> np.ndarray:
    """The (out_size, in_size) float64 matrix that resamples one axis.

    Bilinear/bicubic with ``antialias`` follow PIL's resampling (the filter stretched by the
    downscale factor, taps normalised), which torch's ``interpolate(antialias=True)`` also uses;
    without it, torch's ``interpolate(align_corners=False)``; nearest is torch's ``floor(i * scale)``
    and nearest-exact ``floor((i + 0.5) * scale)``.
    """
    scale = in_size / out_size
    m = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    if mode in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):
        offset = 0.5 if mode == InterpolationMode.NEAREST_EXACT else 0.0
        src = np.minimum(np.floor((rows + offset) * scale).astype(np.int64), in_size - 1)
        m[rows, src] = 1.0
        return m
    support, kernel = _filter(mode, antialias)
    if antialias:
        fscale = max(scale, 1.0)
        sup = support * fscale
        for i in range(out_size):
            center = (i + 0.5) * scale
            lo = max(int(center - sup + 0.5), 0)
            hi = min(int(center + sup + 0.5), in_size)
            w = kernel((np.arange(lo, hi) - center + 0.5) / fscale)
            m[i, lo:hi] = w / w.sum()
        return m
    src = (rows + 0.5) * scale - 0.5
    if mode == InterpolationMode.BILINEAR:
        src = np.maximum(src, 0.0)
    base = np.floor(src).astype(np.int64)
    t = src - base
    taps = range(2) if mode == InterpolationMode.BILINEAR else range(-1, 3)
    for k in taps:
        idx = np.clip(base + k, 0, in_size - 1)
        np.add.at(m, (rows, idx), kernel(t - k))
    return m


@lru_cache(maxsize=64)
def _cached_resize_matrix(in_size, out_size, mode, antialias):
    """``resize_matrix`` kept for reuse: a data pipeline resizes many images of the same size."""
    m = resize_matrix(in_size, out_size, mode, antialias)
    m.flags.writeable = False
    return m


def resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
    """``img`` resized to ``size``: an int matches the smaller edge (aspect ratio kept), ``(h, w)``
    is exact. PIL images use Pillow's filters; tensors support nearest, nearest-exact, bilinear and
    bicubic."""
    _check_image(img, "resize")
    mode = _interpolation(interpolation, "resize")
    _, h, w = get_dimensions(img)
    oh, ow = _resized_output_size(h, w, size, max_size)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"resize: output size ({oh}, {ow}) from size={size} for a {h}x{w} image must be positive")
    if _is_pil(img):
        if (oh, ow) == (h, w):
            return img
        return img.resize((ow, oh), _PIL_CODES[mode])
    if mode not in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT, InterpolationMode.BILINEAR,
                    InterpolationMode.BICUBIC):
        raise ValueError(f"resize: tensor images support nearest, nearest-exact, bilinear and bicubic, got {mode.value}")
    if (oh, ow) == (h, w):
        return img
    if mode in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):
        rows = np.argmax(resize_matrix(h, oh, mode), axis=1)
        cols = np.argmax(resize_matrix(w, ow, mode), axis=1)
        return index_select(index_select(img, -2, _index(rows, img)), -1, _index(cols, img))
    x = _float(img)
    mh = creation.tensor(_cached_resize_matrix(h, oh, mode, antialias), dtype=x.dtype, device=x.device)
    mw = creation.tensor(_cached_resize_matrix(w, ow, mode, antialias).T, dtype=x.dtype, device=x.device)
    return _back(mh @ x @ mw, img)


def _index(idx, like: Tensor) -> Tensor:
    return creation.tensor(np.asarray(idx, dtype=np.int64), dtype=backend.int64, device=like.device)


def _padding_ltrb(padding, name: str):
    if isinstance(padding, numbers.Number):
        p = int(padding)
        return p, p, p, p
    padding = tuple(int(p) for p in padding)
    if len(padding) == 1:
        return padding * 4
    if len(padding) == 2:
        return padding[0], padding[1], padding[0], padding[1]
    if len(padding) == 4:
        return padding
    raise ValueError(f"{name}: padding must be an int or a sequence of 1, 2 or 4 ints, got {padding}")


def _pad_indices(n: int, before: int, after: int, mode: str) -> np.ndarray:
    pos = np.arange(-before, n + after)
    if mode == "edge":
        return np.clip(pos, 0, n - 1)
    if mode == "reflect":
        period = 2 * (n - 1)
        pos = np.abs(pos) % period if period else np.zeros_like(pos)
        return np.where(pos >= n, period - pos, pos)
    period = 2 * n  # symmetric: the edge pixel is repeated
    pos = pos % period
    return np.where(pos >= n, period - 1 - pos, pos)


def pad(img, padding, fill=0, padding_mode="constant"):
    """Pad the borders: ``padding`` is an int (all sides), (left/right, top/bottom) or (left, top,
    right, bottom); ``padding_mode`` constant (with ``fill``), edge, reflect or symmetric."""
    _check_image(img, "pad")
    if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError(f"pad: padding_mode must be constant, edge, reflect or symmetric, got {padding_mode!r}")
    left, top, right, bottom = _padding_ltrb(padding, "pad")
    if min(left, top, right, bottom) < 0:
        raise ValueError(f"pad: negative padding is not supported, got {(left, top, right, bottom)}")
    _, h, w = get_dimensions(img)
    if padding_mode == "reflect" and (max(left, right) >= w or max(top, bottom) >= h):
        raise ValueError(f"pad: reflect padding {(left, top, right, bottom)} must be smaller than the image "
                         f"size ({h}, {w}) on each side")
    if _is_pil(img):
        if padding_mode == "constant":
            if isinstance(fill, numbers.Number) and len(img.getbands()) > 1:
                fill = (fill,) * len(img.getbands())  # PIL would read a bare number as (fill, 0, 0)
            return ImageOps.expand(img, border=(left, top, right, bottom), fill=fill)
        arr = np.asarray(img)
        widths = [(top, bottom), (left, right)] + ([(0, 0)] if arr.ndim == 3 else [])
        out = Image.fromarray(np.pad(arr, widths, mode=padding_mode))
        if img.mode == "P":
            out.putpalette(img.getpalette())
        return out
    if padding_mode == "constant":
        return _pad(img, (left, right, top, bottom), value=float(fill))
    rows = _pad_indices(h, top, bottom, padding_mode)
    cols = _pad_indices(w, left, right, padding_mode)
    return index_select(index_select(img, -2, _index(rows, img)), -1, _index(cols, img))


def crop(img, top: int, left: int, height: int, width: int):
    """The ``height`` x ``width`` window at (``top``, ``left``); parts outside the image are zeros."""
    _check_image(img, "crop")
    if height < 0 or width < 0:
        raise ValueError(f"crop: height and width must be >= 0, got ({height}, {width})")
    if _is_pil(img):
        return img.crop((left, top, left + width, top + height))
    _, h, w = get_dimensions(img)
    right, bottom = left + width, top + height
    if left < 0 or top < 0 or right > w or bottom > h:
        pads = (max(-left, 0), max(right - w, 0), max(-top, 0), max(bottom - h, 0))
        inner = img[..., max(top, 0):min(bottom, h), max(left, 0):min(right, w)]
        return _pad(inner, pads, value=0.0)
    return img[..., top:bottom, left:right]


def center_crop(img, output_size):
    """The central ``output_size`` window (an int for a square); an image smaller than that is
    zero-padded first, as in torchvision."""
    _check_image(img, "center_crop")
    th, tw = _size_pair(output_size, "center_crop")
    _, h, w = get_dimensions(img)
    if tw > w or th > h:
        padding = [(tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0,
                   (tw - w + 1) // 2 if tw > w else 0, (th - h + 1) // 2 if th > h else 0]
        img = pad(img, padding, fill=0)
        _, h, w = get_dimensions(img)
        if (th, tw) == (h, w):
            return img
    top = round((h - th) / 2.0)
    left = round((w - tw) / 2.0)
    return crop(img, top, left, th, tw)


def resized_crop(img, top, left, height, width, size, interpolation=InterpolationMode.BILINEAR, antialias=True):
    """``crop`` then ``resize`` to ``size``."""
    return resize(crop(img, top, left, height, width), size, interpolation, antialias=antialias)


def hflip(img):
    """Mirror left-right."""
    _check_image(img, "hflip")
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if _is_pil(img) else img.flip(-1)


def vflip(img):
    """Mirror top-bottom."""
    _check_image(img, "vflip")
    return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if _is_pil(img) else img.flip(-2)


# ---- colour ---------------------------------------------------------------------------------

def rgb_to_grayscale(img, num_output_channels: int = 1):
    """Luma 0.2989 R + 0.587 G + 0.114 B (tensors; PIL images use Pillow's "L" conversion), in
    1 or 3 channels."""
    _check_image(img, "rgb_to_grayscale")
    if num_output_channels not in (1, 3):
        raise ValueError(f"rgb_to_grayscale: num_output_channels must be 1 or 3, got {num_output_channels}")
    if _is_pil(img):
        gray = img.convert("L")
        return gray if num_output_channels == 1 else Image.merge("RGB", (gray, gray, gray))
    c = get_dimensions(img)[0]
    if c not in (1, 3):
        raise ValueError(f"rgb_to_grayscale: expected 1 or 3 channels, got shape {img.shape}")
    if c == 3:
        x = _float(img)
        r, g, b = x[..., 0:1, :, :], x[..., 1:2, :, :], x[..., 2:3, :, :]
        gray = 0.2989 * r + 0.587 * g + 0.114 * b
        # torchvision truncates back to the integer dtype (no rounding)
        gray = gray if backend.is_floating(img.dtype) else gray.to(img.dtype)
    else:
        gray = img if img.ndim > 2 else img.unsqueeze(0)
    if num_output_channels == 3:
        gray = gray.expand(*gray.shape[:-3], 3, *gray.shape[-2:])
    return gray


to_grayscale = rgb_to_grayscale


def _blend(img1: Tensor, img2, ratio: float) -> Tensor:
    bound = _bound(img1)
    out = (ratio * _float(img1) + (1.0 - ratio) * img2).clamp(0.0, bound)
    return out if backend.is_floating(img1.dtype) else out.to(img1.dtype)


def _check_factor(name: str, factor: float) -> None:
    if factor < 0:
        raise ValueError(f"{name}: factor must be non-negative, got {factor}")


def adjust_brightness(img, brightness_factor: float):
    """Scale intensities by ``brightness_factor`` (0 gives black, 1 the image itself)."""
    _check_image(img, "adjust_brightness")
    _check_factor("adjust_brightness", brightness_factor)
    if _is_pil(img):
        return ImageEnhance.Brightness(img).enhance(brightness_factor)
    return _blend(img, 0.0, brightness_factor)


def adjust_contrast(img, contrast_factor: float):
    """Blend with the mean grey level (0 gives a uniform grey, 1 the image itself)."""
    _check_image(img, "adjust_contrast")
    _check_factor("adjust_contrast", contrast_factor)
    if _is_pil(img):
        return ImageEnhance.Contrast(img).enhance(contrast_factor)
    c = get_dimensions(img)[0]
    gray = rgb_to_grayscale(img) if c == 3 else img
    mean = _float(gray).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(img, mean, contrast_factor)


def adjust_saturation(img, saturation_factor: float):
    """Blend with the greyscale image (0 gives grey, 1 the image itself)."""
    _check_image(img, "adjust_saturation")
    _check_factor("adjust_saturation", saturation_factor)
    if _is_pil(img):
        return ImageEnhance.Color(img).enhance(saturation_factor)
    if get_dimensions(img)[0] == 1:
        return img
    return _blend(img, _float(rgb_to_grayscale(img)), saturation_factor)


def adjust_hue(img, hue_factor: float):
    """Rotate the hue by ``hue_factor`` of a turn, in [-0.5, 0.5]. Tensors are converted through
    HSV on NumPy (no autograd), as the hue rotation has no useful gradient."""
    _check_image(img, "adjust_hue")
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"adjust_hue: hue_factor must be in [-0.5, 0.5], got {hue_factor}")
    if _is_pil(img):
        if img.mode in ("L", "1", "I", "F"):
            return img
        h, s, v = img.convert("HSV").split()
        np_h = np.array(h, dtype=np.uint8)
        np_h += np.uint8(int(hue_factor * 255) % 256)  # uint8 arithmetic: the hue wraps around
        return Image.merge("HSV", (Image.fromarray(np_h), s, v)).convert(img.mode)
    if get_dimensions(img)[0] == 1:
        return img

    def rotate(a):
        x = a.astype(np.float32) / 255 if a.dtype == np.uint8 else a
        h, s, v = _rgb_to_hsv(x)
        out = _hsv_to_rgb(np.mod(h + hue_factor, 1.0), s, v).astype(x.dtype)
        # back to uint8 by torchvision's convert_image_dtype rule (scale by 256 - 1e-3, truncate)
        return (out * np.float32(256 - 1e-3)).astype(np.uint8) if a.dtype == np.uint8 else out
    return _apply_numpy(img, rotate)


def _rgb_to_hsv(x: np.ndarray):
    r, g, b = x[..., 0, :, :], x[..., 1, :, :], x[..., 2, :, :]
    maxc, minc = x.max(axis=-3), x.min(axis=-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = np.ones_like(maxc)
    s = cr / np.where(eqc, ones, maxc)
    cr_div = np.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = np.mod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return h, s, maxc


def _hsv_to_rgb(h, s, v):
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int64) % 6
    p = np.clip(v * (1.0 - s), 0.0, 1.0)
    q = np.clip(v * (1.0 - s * f), 0.0, 1.0)
    t = np.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    choices_r = [v, q, p, p, t, v]
    choices_g = [t, v, v, q, p, p]
    choices_b = [p, p, t, v, v, q]
    conds = [i == k for k in range(6)]
    return np.stack([np.select(conds, choices_r), np.select(conds, choices_g), np.select(conds, choices_b)], axis=-3)
