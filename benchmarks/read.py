"""Read time and peak memory of ``stenosis.read_run`` against pydicom's decode alone.

For each file, two methods run in fresh child processes (so that peak memory is
not inherited from a previous case):

* ``read_run``: :func:`stenosis.read_run` (header, checks, decode, masking, calibration);
* ``pydicom``: ``pydicom.dcmread(path).pixel_array`` (decode only, pydicom's defaults).

Columns: wall time of the read (best of ``--repeat``), peak resident memory
above the child's memory after imports (``VmHWM`` - ``VmRSS`` from /proc, reset
before the read; counts C allocations of GDCM and friends), tracemalloc peak (Python and numpy allocations), and both
peaks as a multiple of the decoded array size. Files: the WG04 XA1 encodings
from ``../shared/data/wg04-xa1`` (when present) and a generated uncompressed
1024x1024x60 16-bit multi-frame XA (RLE too), written with pydicom to a temp dir.

Usage::

    python benchmarks/read.py            # WG04 + 1024x1024x60 (about 1 minute)
    python benchmarks/read.py --small    # CI: two WG04 files + 256x256x10
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WG04 = REPO.parent / "shared" / "data" / "wg04-xa1"

CHILD = r"""
import json, sys, time, tracemalloc, warnings
warnings.simplefilter("ignore")
import numpy as np
import pydicom
import stenosis.io

path, method, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])

def status_kb(field):
    # VmHWM/VmRSS of this process image (ru_maxrss would carry the parent's peak across exec)
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass

def read():
    if method == "read_run":
        return stenosis.io.read_run(path).frames
    return pydicom.dcmread(path).pixel_array

try:
    # warm up the decoder plugins on a different tiny read would hide import cost; instead
    # import them explicitly so that the baseline includes them
    import pydicom.pixels  # noqa
    try:
        import gdcm  # noqa
    except Exception:
        pass
    base = status_kb("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    arr = read()
    times = [time.perf_counter() - t0]
    peak_rss = status_kb("VmHWM") - base
    nbytes = int(arr.nbytes)
    del arr
    for _ in range(repeat - 1):
        t0 = time.perf_counter(); a = read(); times.append(time.perf_counter() - t0); del a
    tracemalloc.start()
    a = read()
    _, tm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"ok": True, "time": min(times), "rss_mb": peak_rss / 1024, "tm_mb": tm_peak / 2**20,
                      "decoded_mb": nbytes / 2**20}))
except Exception as exc:
    print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}"}))
"""


def make_run(path: Path, frames: int, size: int, *, rle: bool) -> Path:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[0:size, 0:size]
    base = (2000 + 500 * np.sin(rr / 37.0) * np.cos(cc / 53.0)).astype(np.float64)
    arr = np.empty((frames, size, size), dtype=np.uint16)
    for t in range(frames):
        arr[t] = np.clip(base + rng.normal(0, 20, base.shape) - 300 * (np.abs(rr - size / 2 - t) < 6), 0, 4095)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "XA"
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = [0.3, 0.3]
    ds.DistanceSourceToPatient, ds.DistanceSourceToDetector = 750, 1100
    ds.FrameTime = 66.7
    ds.PixelData = arr.tobytes()
    if rle:
        ds.compress(RLELossless, arr, encoding_plugin="pylibjpeg")
    ds.save_as(path, enforce_file_format=True)
    return path


def run_case(path: Path, method: str, repeat: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), method, str(repeat)],
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "error": (proc.stderr.strip().splitlines() or ["child died"])[-1][:60]}
    return json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="CI size: a few seconds")
    ap.add_argument("--repeat", type=int, default=None, help="timed reads per case (best is shown)")
    args = ap.parse_args()
    repeat = args.repeat or (1 if args.small else 3)

    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        files: list[tuple[str, Path]] = []
        if WG04.is_dir():
            names = ["XA1_UNC", "XA1_JLSL"] if args.small else sorted(p.name for p in WG04.iterdir())
            files += [(n, WG04 / n) for n in names]
        if args.small:
            files.append(("gen 256x256x10 UNC", make_run(tmpd / "g_unc.dcm", 10, 256, rle=False)))
        else:
            files.append(("gen 1024x1024x60 UNC", make_run(tmpd / "g_unc.dcm", 60, 1024, rle=False)))
            files.append(("gen 1024x1024x60 RLE", make_run(tmpd / "g_rle.dcm", 60, 1024, rle=True)))

        header = f"{'file':<22} {'method':<9} {'time s':>8} {'peak RSS MB':>12} {'tracemalloc MB':>15} {'decoded MB':>11} {'RSS/dec':>8} {'tm/dec':>7}"
        print(header)
        print("-" * len(header))
        for label, path in files:
            for method in ("read_run", "pydicom"):
                r = run_case(path, method, repeat)
                if not r.get("ok"):
                    print(f"{label:<22} {method:<9} {'failed: ' + r.get('error', '?')}")
                    continue
                dec = r["decoded_mb"]
                print(f"{label:<22} {method:<9} {r['time']:>8.3f} {r['rss_mb']:>12.1f} {r['tm_mb']:>15.1f} {dec:>11.1f} "
                      f"{r['rss_mb'] / dec:>8.2f} {r['tm_mb'] / dec:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
