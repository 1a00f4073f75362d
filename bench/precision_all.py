"""What bf16 costs for every bundled model, each at its own JPEG quality, against fp32.

Luminance models (``jpeg-qN``, ``fast-arcnn-qN``): the paper protocol (Y, greyscale JPEG at N) run
through our fp32 path and our bf16 path. The colour path (``auto``: luma model + chroma network,
both tiers): the colour protocol (RGB JPEG 4:2:0) at each quality given, fp32 against bf16, RGB
PSNR. bf16 is the ``auto`` precision on CPUs where it runs fast (AMX; AVX512-BF16 on AMD), so this is
what those users' outputs cost, on average and on the image it changes most.

    python -m bench.precision_all ../shared/data/LIVE1
"""

from __future__ import annotations

from pathlib import Path

from arcnn.acceleration import prepare
from arcnn.evaluation import color_protocol, paper_protocol
from arcnn.model_names import TIERS, quality_models
from arcnn.registry import bundled, load_named
from arcnn.restoration import Restorer
from bench.harness import arguments, table, write


def change(results: dict[str, dict], metric: str) -> dict[str, float]:
    """Mean PSNR in fp32 and bf16, the mean change, and the change on the image bf16 hurt most."""
    fp32, bf16 = results["fp32"], results["bf16"]
    return {"fp32_psnr": round(fp32["restored"][metric], 4), "bf16_psnr": round(bf16["restored"][metric], 4),
            "change_db": round(bf16["restored"][metric] - fp32["restored"][metric], 5),
            "worst_image_db": round(min(b - a for a, b in zip(fp32["per_image"], bf16["per_image"])), 5)}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("data", type=Path, nargs="?", default=Path("../shared/data/LIVE1"))
    parser.add_argument("--colour-qualities", default="10,20,30,40")
    parser.add_argument("--tiers", default="standard,fast")
    args = parser.parse_args()
    if args.quick:  # two synthetic photos: the run's plumbing, not a result
        import tempfile

        from bench.product_memory import photo_like

        args.data = Path(tempfile.mkdtemp(prefix="arcnn-precision-"))
        for i in range(2):
            photo_like(0.02, "RGB", seed=i).save(args.data / f"{i}.png")
    rows = []
    bundle = list(bundled())
    luma = dict(sorted((name, q) for tier in TIERS for q, name in quality_models(bundle, tier).items()))
    for name in list(luma)[:1] if args.quick else luma:
        quality = luma[name]
        model, _ = load_named(name)
        results = {p: paper_protocol(prepare(model, "cpu", p), args.data, quality) for p in ("fp32", "bf16")}
        rows.append({"what": name, "protocol": f"paper q{quality}", **change(results, "psnr")})
        print(f"  {name}: {rows[-1]['change_db']:+.5f} dB", flush=True)
    for tier in args.tiers.split(","):
        for q in map(int, args.colour_qualities.split(",")):
            results = {p: color_protocol(Restorer("auto", device="cpu", precision=p, tier=tier).restore, args.data, q)
                       for p in ("fp32", "bf16")}
            rows.append({"what": f"auto, {tier} tier (colour)", "protocol": f"color q{q} (RGB PSNR)",
                         **change(results, "psnr_rgb")})
            print(f"  colour {tier} q{q}: {rows[-1]['change_db']:+.5f} dB", flush=True)
            if args.quick:
                break
    print(f"\n{args.data}: bf16 against fp32, our paths, CPU")
    print(table(rows, ["what", "protocol", "fp32_psnr", "bf16_psnr", "change_db", "worst_image_db"]))
    print(f"wrote {write('precision_all', args.json, {'data': str(args.data), 'rows': rows})}")


if __name__ == "__main__":
    main()
