"""``arcnn restore`` with its defaults against ``--precision fp32``, on one large colour JPEG.

``auto`` precision is bf16 on CPUs where it runs fast (AMX, or AVX512-BF16 on AMD:
``arcnn.acceleration.cpu_runs_bf16_fast``) and fp32 elsewhere, so on such a machine this is the
speed-up users get without asking for it, and elsewhere it checks that nothing changed (ratio
1). Whole commands, start-up included, best of ``--repeats``.

    python -m bench.auto_precision --megapixels 12
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from arcnn.acceleration import cpu_has_amx, cpu_runs_bf16_fast, default_precision
from bench.harness import arguments, table, timed_restore, write
from bench.product_memory import jpeg_file


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--quality", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.megapixels, args.repeats = 0.05, 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        jpeg_file(photo, args.megapixels, "RGB", args.quality)
        for label, extra in (("defaults", ()), ("--precision fp32", ("--precision", "fp32"))):
            seconds = min(timed_restore(photo, Path(tmp) / "out", *extra) for _ in range(args.repeats))
            rows.append({"run": label, "seconds": round(seconds, 2)})
            print(f"  {label}: {seconds:.2f} s", flush=True)
    ratio = rows[0]["seconds"] / rows[1]["seconds"]
    print(f"\n{args.megapixels} MP colour JPEG q{args.quality}; CPU has AMX: {cpu_has_amx()}, "
          f"runs bf16 fast: {cpu_runs_bf16_fast()}, "
          f"auto precision: {default_precision('cpu')}; defaults take {ratio:.2f}x the fp32 time")
    print(table(rows, ["run", "seconds"]))
    print(f"wrote {write('auto_precision', args.json, {'amx': cpu_has_amx(), 'bf16_fast': cpu_runs_bf16_fast(), 'auto': default_precision('cpu'), 'ratio': ratio, 'rows': rows})}")


if __name__ == "__main__":
    main()
