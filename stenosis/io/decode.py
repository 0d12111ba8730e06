"""Decoding pixel data into one preallocated (T, H, W) array: native, deflated and
encapsulated (pydicom plugins, GDCM), risky native codecs in a forked child with a CPU budget."""
from __future__ import annotations

import contextlib
import os
import warnings as _warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

_NATIVE_TS = {
    "1.2.840.10008.1.2": (True, "<"),  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1": (False, "<"),  # Explicit VR Little Endian
    "1.2.840.10008.1.2.2": (False, ">"),  # Explicit VR Big Endian (retired)
}
_DEFLATED_TS = "1.2.840.10008.1.2.1.99"
_JPEG_EXTENDED_TS = "1.2.840.10008.1.2.4.51"
_JPEG_TS = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
}
_J2K_TS = {
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
}
_RLE_TS = "1.2.840.10008.1.2.5"


def _can_decode(ts: str) -> bool:
    if ts == _JPEG_EXTENDED_TS:
        return _gdcm_available()
    try:
        from pydicom.pixels import get_decoder

        decoder = get_decoder(ts)
    except Exception:
        return False
    return decoder.is_available or _gdcm_available()


def _gdcm_available() -> bool:
    try:
        import gdcm  # noqa: F401
    except Exception:
        return False
    return True


def _dtype(bits_alloc: int, pixel_rep: int, order: str = "<") -> np.dtype:
    kind = "i" if pixel_rep == 1 else "u"
    return np.dtype(f"{order}{kind}{bits_alloc // 8}")


def _fix_values(arr: np.ndarray, bits_stored: int, signed: bool, photometric: str) -> int:
    """In place: keep BitsStored bits (sign-extend if signed) and invert MONOCHROME1 (PS3.3 C.7.6.3.1).

    Returns how many pixels held a value that BitsStored cannot represent before masking:
    more than zero means a broken or mislabelled file."""
    nbits = arr.dtype.itemsize * 8
    beyond = 0
    if bits_stored < nbits:
        beyond = _count_beyond(arr, bits_stored, signed)
        if signed:
            shift = nbits - bits_stored
            np.left_shift(arr, shift, out=arr)
            np.right_shift(arr, shift, out=arr)  # arithmetic shift on a signed dtype
        else:
            np.bitwise_and(arr, np.array((1 << bits_stored) - 1, dtype=arr.dtype), out=arr)
    if photometric == "MONOCHROME1":
        if signed:
            np.invert(arr, out=arr)  # -1 - v maps the signed range onto itself
        else:
            np.bitwise_xor(arr, np.array((1 << bits_stored) - 1, dtype=arr.dtype), out=arr)
    return beyond


def _count_beyond(arr: np.ndarray, bits_stored: int, signed: bool) -> int:
    """Pixels outside the range of ``bits_stored`` bits (counted frame by frame: no full-size temporary)."""
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    if arr.size == 0 or (int(arr.min()) >= lo and int(arr.max()) <= hi):
        return 0
    return int(sum(np.count_nonzero((frame < lo) | (frame > hi)) for frame in arr))


def _read_native(path: Path, ds: Any, info: dict[str, Any]) -> np.ndarray:
    order = _NATIVE_TS[info["ts"]][1]
    shape = (info["n_frames"], info["rows"], info["cols"])
    dtype = _dtype(info["bits_alloc"], info["pixel_rep"])
    out = np.empty(shape, dtype=dtype)
    if info["offset"] is not None:
        with open(path, "rb") as fh:
            fh.seek(info["offset"])
            view = memoryview(out.reshape(-1).view(np.uint8))
            n = fh.readinto(view)
        if n != info["declared"]:
            raise InputError(f"{path}: pixel data ends early ({n} of {info['declared']} bytes); the file is truncated, re-export it")
    else:
        buf = ds.PixelData
        out.reshape(-1)[:] = np.frombuffer(buf, dtype=dtype.newbyteorder(order), count=out.size)
        return out
    if order == ">" and dtype.itemsize > 1:
        out.byteswap(inplace=True)
    return out


def _read_encapsulated(path: Path, ds: Any, info: dict[str, Any]) -> np.ndarray:
    """Decode compressed (or deflated) pixel data frame by frame into one array.

    Each encoding goes to the decoders that are authoritative for it, in order
    (:func:`_decode_plan`); GDCM only sees JPEG (12-bit lossy "JPEG Extended"
    and lossless JPEG, which no other installed decoder reads). Native codecs
    that can abort the process or spin on corrupt data (GDCM, CharLS, OpenJPEG,
    Pillow) run in a forked child with a CPU-time budget (:func:`_decode_in_child`),
    so a crash or a stall becomes an :class:`InputError`."""
    shape = (info["n_frames"], info["rows"], info["cols"])
    dtype = _dtype(info["bits_alloc"], info["pixel_rep"])
    first: BaseException | None = None
    first_plugin = ""
    for where, plugin in _decode_plan(info):
        rust_rle = info["ts"] == _RLE_TS and plugin == "pylibjpeg"
        if plugin == "gdcm":
            fill = lambda out: _fill_gdcm(path, out)  # noqa: E731
        else:
            fill = lambda out, plugin=plugin: _fill_pydicom(ds, out, plugin)  # noqa: E731
        try:
            if where == "child":
                _warm_plugin(info["ts"], plugin)
                return _decode_in_child(path, fill, shape, dtype, _cpu_budget_s(info, plugin))
            out = np.empty(shape, dtype=dtype)
            with _quiet_stderr() if rust_rle else contextlib.nullcontext():  # a Rust panic prints to stderr
                fill(out)
            return out
        except _DecoderStalled as exc:
            raise InputError(str(exc)) from None
        except (MemoryError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - incl. Rust panics (pyo3 PanicException); try the next decoder
            if rust_rle:
                # the RLE segments do not hold the declared frames (the Rust decoder checks the
                # bounds; pydicom's pure-Python one would decode the damaged data without a word)
                raise InputError(f"{path}: pixel data cannot be decoded (the RLE segments do not match the declared "
                                 "frame size); the file is corrupt, re-export it") from None
            if first is None:
                first, first_plugin = exc, plugin
    if first is None:
        from pydicom.uid import UID

        raise InputError(f"{path}: no decoder for {UID(info['ts']).name} is installed here; re-export the run uncompressed")
    if isinstance(first, InputError) and not isinstance(first, _DecoderFailed):
        raise InputError(str(first)) from None
    # a decoder's own exception text is about its internals, not the file: name the decoder only
    crashed = isinstance(first, _DecoderFailed) and str(first).startswith("the decoder crashed")
    why = str(first) if crashed else f"the {first_plugin or 'pydicom'} decoder failed on it"
    raise InputError(
        f"{path}: pixel data cannot be decoded ({why[:160]}); the file may be truncated or corrupt, re-export it"
    ) from None


class _quiet_stderr:
    """Redirect the process's stderr (file descriptor 2) to /dev/null for the duration."""

    def __enter__(self):
        import sys

        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        except OSError:
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        return False


class _DecoderStalled(Exception):
    """A decoder in a child process ran past its CPU budget (message is the one-line refusal)."""


class _DecoderFailed(InputError):
    """A decoder in a child process failed or died; the next decoder may be tried."""


#: JPEG family transfer syntaxes decoded by GDCM (no other installed decoder reads lossless / 12-bit JPEG).
_GDCM_JPEG_TS = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}
_JPEG_LS_TS = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}


def _decode_plan(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, plugin) decoders to try for one encoding: ``where`` is "here" or "child";
    plugin a pydicom decoding plugin name ("" = pydicom's choice) or "gdcm" (GDCM on the file)."""
    ts = info["ts"]
    try:
        from pydicom.pixels import get_decoder

        available = set(get_decoder(ts).available_plugins)
    except Exception:  # noqa: BLE001 - no pydicom decoder for this syntax
        available = set()
    if ts == _RLE_TS:  # Rust (panics are caught) then pure Python: never GDCM
        plan = [("here", "pylibjpeg"), ("here", "pydicom")]
    elif ts in _J2K_TS:
        plan = [("child", "pylibjpeg"), ("child", "pillow")]
    elif ts in _JPEG_LS_TS:  # CharLS can spin for many seconds on a corrupt scan
        plan = [("child", "pyjpegls")]
    elif ts in _GDCM_JPEG_TS:
        plan = [("child", "pillow")] if info.get("jpeg_precision", 8) == 8 and ts in _JPEG_TS_LOSSY else []
        if _gdcm_available():
            plan.append(("child", "gdcm"))
        return plan
    elif ts == _DEFLATED_TS:
        return [("here", "")]
    else:
        plan = [("child", p) for p in sorted(available - {"gdcm"})]
    return [(w, p) for w, p in plan if p in available]


_JPEG_TS_LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}


def _cpu_budget_s(info: dict[str, Any], plugin: str) -> float:
    """CPU seconds a child decoder may spend on one run: a fixed start plus the
    declared decoded size at a rate about 10x below the throughput measured for
    valid data (1024x1024 16-bit, one core: CharLS 44 MB/s, GDCM lossless JPEG
    20 MB/s, OpenJPEG 9 MB/s)."""
    rate = _CHILD_MIN_RATE.get(plugin, _CHILD_MIN_RATE[""])
    return _CHILD_BASE_CPU_S + info["declared"] / rate


#: CPU seconds any child decode may take, plus decoded bytes per CPU second it must reach.
_CHILD_BASE_CPU_S = 0.2
_CHILD_MIN_RATE = {"": 2e6, "pylibjpeg": 1e6, "pillow": 1e6}


def _warm_plugin(ts: str, plugin: str) -> None:
    """Import a decoder's modules here, so that each forked child does not import them again."""
    modules = {"pyjpegls": ("jpeg_ls",), "pylibjpeg": ("pylibjpeg", "openjpeg"), "pillow": ("PIL.Image",),
               "gdcm": ("gdcm",)}.get(plugin, ())
    for name in modules:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - the child reports a missing decoder
            pass


def _fill_pydicom(ds: Any, out: np.ndarray, plugin: str = "") -> None:
    """Decode ``ds`` frame by frame into ``out`` (T, H, W) with one pydicom plugin."""
    from pydicom.pixels import get_decoder

    decoder = get_decoder(str(ds.file_meta.TransferSyntaxUID))
    n = out.shape[0]
    i = -1
    # Frame by frame into the preallocated output: peak memory is the output
    # plus the encoded data plus one frame.
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        for i, (frame, _) in enumerate(decoder.iter_array(ds, raw=True, decoding_plugin=plugin)):
            if i >= n:
                break
            frame = np.asarray(frame)
            if frame.shape != out.shape[1:]:
                frame = frame.reshape(out.shape[1:])
            out[i] = frame
    if i + 1 < n:
        raise InputError(f"pixel data holds {i + 1} frames but the header declares {n}; the file is truncated, re-export it")


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _decode_in_child(path: Path, fill, shape: tuple[int, int, int], dtype: np.dtype, cpu_budget_s: float) -> np.ndarray:
    """Run ``fill(out)`` in a forked child that writes into shared memory.

    The child is killed once it has used ``cpu_budget_s`` of CPU (CPU, not wall
    time, so a busy machine does not refuse valid files; a wall-time cap 30 s +
    20x the budget catches a child that blocks). A child that dies (SIGABRT
    from a C++ exception escaping a codec) or overruns is an error for this
    file only. Without ``os.fork`` (Windows) the decode runs in this process.
    Overhead: one fork (a few ms; the address space is shared copy-on-write)."""
    import mmap
    import select
    import signal
    import time

    dtype = np.dtype(dtype)
    if not hasattr(os, "fork"):
        out = np.empty(shape, dtype=dtype)
        fill(out)
        return out
    nbytes = int(np.prod(shape)) * dtype.itemsize
    shm = mmap.mmap(-1, max(nbytes, 1))  # MAP_SHARED | MAP_ANONYMOUS: the child's writes are ours
    out = np.frombuffer(shm, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: decode, report one line, never return into the caller
        code = 1
        try:
            os.close(r)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)  # codecs print refusals on C stderr
            import faulthandler

            faulthandler.disable()  # an abort here is reported by the parent, not dumped on the caller's stderr
            try:
                fill(out)
                msg, code = b"ok", 0
            except InputError as exc:
                msg = b"I" + str(exc).encode("utf-8", "replace")
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                text = (str(exc).splitlines() or [""])[0][:200]
                msg = b"E" + f"{type(exc).__name__}: {text}".encode("utf-8", "replace")
            os.write(w, msg[:4000])
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    t0 = time.monotonic()
    wall_cap = 30.0 + 20.0 * cpu_budget_s
    wait = 0.001
    status = None
    try:
        while True:
            ready, _, _ = select.select([r], [], [], wait)
            if ready:
                data = os.read(r, 65536)
                if data:
                    chunks.append(data)
                    continue
                break  # EOF: the child has exited (or closed the pipe on its way out)
            wait = min(wait * 2, 0.02)
            cpu = _proc_cpu_s(pid)
            elapsed = time.monotonic() - t0
            if (cpu if cpu is not None else elapsed / 4) > cpu_budget_s or elapsed > wall_cap:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = "killed"
                raise _DecoderStalled(
                    f"{path}: decoding stopped after {elapsed:.1f} s (budget {cpu_budget_s:.1f} s of CPU for "
                    f"{nbytes / 1e6:.2g} MB decoded); the compressed data is corrupt, re-export the file"
                )
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(r)
        if status is None:  # interrupted (KeyboardInterrupt): do not leave the child behind
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
    msg = b"".join(chunks)
    if os.WIFSIGNALED(status):
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = f"signal {os.WTERMSIG(status)}"
        raise _DecoderFailed(f"the decoder crashed ({name})")
    if msg == b"ok" and os.WEXITSTATUS(status) == 0:
        return out
    text = msg[1:].decode("utf-8", "replace") if msg else "no answer"
    if msg[:1] == b"I":
        raise InputError(text)
    raise _DecoderFailed(text)


def _fill_gdcm(path: Path, out: np.ndarray) -> None:
    """Decode the file with GDCM into ``out`` (run it through :func:`_decode_in_child`)."""
    import gdcm

    gdcm.Trace.WarningOff()
    gdcm.Trace.ErrorOff()
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise InputError(f"{path}: GDCM cannot read the file; it may be truncated or corrupt, re-export it")
    image = reader.GetImage()
    pf = image.GetPixelFormat()
    if pf.GetSamplesPerPixel() != 1:
        raise InputError(f"{path}: colour pixel data; pass a greyscale XA run")
    gdcm_dtype = {
        gdcm.PixelFormat.UINT8: np.uint8,
        gdcm.PixelFormat.INT8: np.int8,
        gdcm.PixelFormat.UINT16: np.uint16,
        gdcm.PixelFormat.INT16: np.int16,
        gdcm.PixelFormat.UINT32: np.uint32,
        gdcm.PixelFormat.INT32: np.int32,
    }.get(pf.GetScalarType())
    if gdcm_dtype is None:
        raise InputError(f"{path}: GDCM pixel type {pf.GetScalarTypeAsString()} is not supported; re-export the run")
    expected = out.size * np.dtype(gdcm_dtype).itemsize
    if image.GetBufferLength() != expected:
        raise InputError(
            f"{path}: decoded pixel data has {image.GetBufferLength()} bytes, header declares {expected}; "
            "the file is truncated or corrupt, re-export it"
        )
    buf = image.GetBuffer().encode("utf-8", "surrogateescape")
    del image, reader
    out.reshape(-1)[:] = np.frombuffer(buf, dtype=gdcm_dtype)
