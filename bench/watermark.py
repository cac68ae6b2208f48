"""Watermark survival: bit accuracy and detection rate under common attacks, and the PSNR cost.

    .venv/bin/python bench/watermark.py [--n 50] [--sets photos,emoji] [--no-baseline]

Images
    photos  ``--n`` crops (288-480 px a side, fixed seed) of the colour photographs bundled with
            scikit-image (astronaut, coffee, chelsea, rocket, immunohistochemistry,
            hubble_deep_field, retina) and of gray ones as RGB (camera, moon, coins).
    emoji   ``--n`` Noto emoji from the strata emoji dataset (~/.cache/strata/data/emoji), on
            white, upscaled 4× to 256² (what the built-in 64² model's output becomes after
            upscaling); skipped when the dataset is not there.

Attacks (each applied to the marked image)
    none       the marked pixels as written (lossless)
    jpeg85     JPEG quality 85 (Pillow, 4:2:0)
    resize50   down to 50% (area) and back up (bilinear)
    crop10     10% cut away: 5% from each edge, both axes (81% of the area kept)
    video      the image as 12 frames of an H.264 MP4 (PyAV, libx264 defaults: CRF 23, yuv420p),
               decoded, frame 6 read
    unmarked   the original image, never marked: the false-positive rate

Reported per set and attack: bit accuracy (mean share of the 32 bits right), detection rate
(magic found: ≤ 1 of 16 magic bits wrong), asset-hint rate (all 16 id bits right as well).
PSNR of marked vs original (8-bit RGB). The baseline in the same run is the package's
``dwtDctSvd`` with the same 32-bit payload and the same detection rule (its encoder works at
the full image size). Writes bench/results/watermark.json.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import PIL.Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from strata.provenance import watermark as wm  # noqa: E402

Attack = Callable[[np.ndarray], np.ndarray]


def jpeg85(a: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    PIL.Image.fromarray(a).save(buf, "JPEG", quality=85)
    return np.asarray(PIL.Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def resize50(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    small = cv2.resize(a, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def crop10(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    return a[h // 20: h - h // 20, w // 20: w - w // 20]


def video(a: np.ndarray) -> np.ndarray:
    import av

    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2  # yuv420p needs even sizes
    a = np.ascontiguousarray(a[:h, :w])
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for _ in range(12):
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(io.BytesIO(buf.getvalue())) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames[6]


ATTACKS: dict[str, Attack] = {"none": lambda a: a, "jpeg85": jpeg85, "resize50": resize50, "crop10": crop10, "video": video}


def photos(n: int, seed: int = 0) -> list[np.ndarray]:
    import skimage.data as d

    color = [d.astronaut(), d.coffee(), d.chelsea(), d.rocket(), d.immunohistochemistry(), d.hubble_deep_field(),
             d.retina()]
    gray = [np.repeat(g[:, :, None], 3, axis=2) for g in (d.camera(), d.moon(), d.coins())]
    sources = [np.ascontiguousarray(s[:, :, :3]) for s in color + gray]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        side_h = int(rng.integers(288, min(480, h) + 1))
        side_w = int(rng.integers(288, min(480, w) + 1))
        y, x = int(rng.integers(0, h - side_h + 1)), int(rng.integers(0, w - side_w + 1))
        out.append(np.ascontiguousarray(src[y:y + side_h, x:x + side_w]))
    return out


def emoji(n: int, seed: int = 0) -> list[np.ndarray]:
    path = Path.home() / ".cache" / "strata" / "data" / "emoji" / "images.npz"
    if not path.is_file():
        return []
    images = np.load(path)["images"]
    picks = np.random.default_rng(seed).choice(len(images), size=n, replace=False)
    out = []
    for i in picks:
        rgba = images[i].astype(np.float32) / 255.0
        rgb = rgba[:, :, :3] * rgba[:, :, 3:] + (1.0 - rgba[:, :, 3:])  # on white
        big = cv2.resize(np.rint(rgb * 255).astype(np.uint8), (256, 256), interpolation=cv2.INTER_CUBIC)
        out.append(big)
    return out


def rivagan() -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    return wm.embed_frame, wm.decode_bits


def dwt_dct_svd() -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    def embed(rgb: np.ndarray, bits: np.ndarray) -> np.ndarray:
        enc = WatermarkEncoder()
        enc.set_by_bits(list(bits))
        return np.ascontiguousarray(enc.encode(rgb[:, :, ::-1].copy(), "dwtDctSvd")[:, :, ::-1])

    def decode(rgb: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(WatermarkDecoder("bits", 32).decode(rgb[:, :, ::-1].copy(), "dwtDctSvd"), np.uint8)
        except RuntimeError:  # it refuses images under 256×256 pixels (a crop of a 256² image): nothing read
            return np.full(32, 2, np.uint8)

    return embed, decode


def measure(images: list[np.ndarray], embed: Callable, decode: Callable, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    magic = wm.payload_bits(None)[:16]
    rows: dict[str, dict[str, list[float]]] = {k: {"acc": [], "found": [], "hint": []} for k in [*ATTACKS, "unmarked"]}
    psnr, t_embed, t_decode = [], [], []
    for img in images:
        bits = np.concatenate([magic, rng.integers(0, 2, 16).astype(np.uint8)])
        t = time.perf_counter()
        marked = embed(img, bits)
        t_embed.append(time.perf_counter() - t)
        psnr.append(cv2.PSNR(img, marked))
        for name, attack in [*ATTACKS.items(), ("unmarked", lambda a, img=img: img)]:
            attacked = attack(marked)
            t = time.perf_counter()
            got = decode(attacked)
            t_decode.append(time.perf_counter() - t)
            found = int(np.sum(got[:16] != magic)) <= wm.MAX_MAGIC_ERRORS
            rows[name]["acc"].append(float(np.mean(got == bits)))
            rows[name]["found"].append(float(found))
            rows[name]["hint"].append(float(found and np.array_equal(got[16:], bits[16:])))
    attacks = {k: {"bit_accuracy": round(float(np.mean(v["acc"])), 4), "detection_rate": round(float(np.mean(v["found"])), 4),
                   "asset_hint_rate": round(float(np.mean(v["hint"])), 4), "n": len(v["acc"])} for k, v in rows.items()}
    return {"n_images": len(images), "psnr_db": {"mean": round(float(np.mean(psnr)), 2), "min": round(float(np.min(psnr)), 2)},
            "embed_s_median": round(float(np.median(t_embed)), 3), "decode_s_median": round(float(np.median(t_decode)), 3),
            "attacks": attacks}


def table(results: dict) -> str:
    lines = ["| set | method | attack | bit accuracy | detection | asset hint | n |", "|---|---|---|---|---|---|---|"]
    for set_name, methods in results.items():
        for method, r in methods.items():
            for attack, a in r["attacks"].items():
                lines.append(f"| {set_name} | {method} | {attack} | {a['bit_accuracy']:.3f} | {a['detection_rate']:.2f} | "
                             f"{a['asset_hint_rate']:.2f} | {a['n']} |")
            lines.append(f"| {set_name} | {method} | PSNR (dB) | mean {r['psnr_db']['mean']}, min {r['psnr_db']['min']} | "
                         f"embed {r['embed_s_median']} s | decode {r['decode_s_median']} s | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50, help="images per set (default 50)")
    parser.add_argument("--sets", default="photos,emoji", help="comma-separated: photos, emoji")
    parser.add_argument("--no-baseline", action="store_true", help="skip the dwtDctSvd baseline")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for set_name in args.sets.split(","):
        images = photos(args.n) if set_name == "photos" else emoji(args.n)
        if not images:
            print(f"{set_name}: no images (dataset missing), skipped")
            continue
        results[set_name] = {wm.METHOD: measure(images, *rivagan())}
        if not args.no_baseline:
            results[set_name]["dwtDctSvd"] = measure(images, *dwt_dct_svd())
        print(f"{set_name} done", flush=True)
    print(table(results))
    path = write_result("watermark", {"method": wm.METHOD, "work_size": wm.WORK_SIZE, "magic_bits": 16,
                                      "max_magic_errors": wm.MAX_MAGIC_ERRORS, "results": results, "table": table(results)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
