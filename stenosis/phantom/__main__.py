"""Write one phantom run and its truth sidecar.

    python -m stenosis.phantom OUT.dcm --segment M1 --percent 60 --seed 3
    python -m stenosis.phantom OUT.dcm --random 17                # random_spec(17)
    python -m stenosis.phantom OUT.dcm --set subtracted=true --set calibration=magnification

``--set`` takes any :class:`PhantomSpec` field as JSON (strings may go unquoted).
"""
from __future__ import annotations

import argparse
import json
import sys

from .dicom import write_phantom
from .engine import render_phantom
from .spec import PhantomSpec, random_spec


def _value(text: str):
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stenosis.phantom", description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output .dcm path (the .truth.json goes next to it)")
    ap.add_argument("--segment", choices=["ICA", "M1", "V4", "BA"])
    ap.add_argument("--percent", type=float, help="diameter stenosis at the lesion (0-100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random", type=int, metavar="SEED", help="a random plausible spec from this seed")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = ap.parse_args(argv)
    fields: dict = {}
    if args.segment:
        fields["segment"] = args.segment
    if args.percent is not None:
        fields["stenosis_percent"] = args.percent
    for item in args.set:
        key, sep, val = item.partition("=")
        if not sep:
            ap.error(f"--set needs FIELD=VALUE, got {item!r}")
        fields[key.strip()] = _value(val.strip())
    try:
        spec = random_spec(args.random, **fields) if args.random is not None else PhantomSpec(seed=args.seed, **fields)
        ph = render_phantom(spec)
    except (TypeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dcm, truth = write_phantom(ph, args.out)
    t = ph.truth
    print(
        f"{dcm}: {t['segment']} {t['percent_stenosis']:.1f}% (MLD {t['mld_mm']:.3f} mm, reference "
        f"{t['reference_diameter_mm']:.3f} mm {t['reference_choice']}), frame {t['frame_index']}, "
        f"proximal {t['proximal_rc']}, distal {t['distal_rc']}; truth in {truth}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
