"""Speed and memory of every scorer at ImageNet scale, against the CLIP ViT-B/16 image encoder.

One command, one device, one run; every ratio printed is measured in that run:

    python benchmarks/run.py                    # cuda if available, else cpu
    python benchmarks/run.py --device cpu --quick

Random weights give the speed of real ones. Text banks are random unit vectors of the
ImageNet-scale sizes (d=512, 1000 ID classes, 10,000 negative labels, 20,000 antibodies):
text encoding is a one-off cost of ``fit``, not part of scoring, so it is not timed here.

Also measured: the fused ANTS scores against the five separate grouped scores; the batched EVT
fit; feature extraction end to end (JPEG files of the minibench, repeated to a few thousand,
decoded, resized and encoded into a cached feature entry) against the encoder alone on
pre-decoded tensors, per loader option (PIL or tensor decode, workers, prefetch, pinned memory),
with the time of each stage; and the feature / AUROC difference of the tensor decode path from
the reference PIL preprocessing (ImmunoTiny-ViT on the minibench test lists, CPU).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

D, N_CLASSES, N_NEG, N_ANTIBODIES, BATCH = 512, 1000, 10_000, 20_000, 256


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn, device, repeat: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


@contextmanager
def peak_memory(device, out: dict, key: str):
    """GPU: peak bytes allocated inside the block beyond what was held before; CPU: not measured
    (the process-wide peak RSS cannot isolate one scorer), ``None``."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    yield
    out[key] = ((torch.cuda.max_memory_allocated(device) - base) / 2**20
                if device.type == "cuda" else None)


def state_mb(obj, skip=("net", "_net", "_id_features")) -> float:
    """Megabytes of the distinct tensors a scorer holds (its banks, adapter, calibration)."""
    seen_obj, seen_data, total = set(), set(), 0
    stack = [obj]
    while stack:
        cur = stack.pop()
        if id(cur) in seen_obj:
            continue
        seen_obj.add(id(cur))
        if torch.is_tensor(cur):
            key = (cur.untyped_storage().data_ptr(), cur.device)
            if key not in seen_data:
                seen_data.add(key)
                total += cur.untyped_storage().nbytes()
        elif isinstance(cur, dict):
            stack.extend(v for k, v in cur.items() if k not in skip)
        elif isinstance(cur, (list, tuple, set)):
            stack.extend(cur)
        elif isinstance(cur, torch.nn.Module):
            stack.extend(cur.state_dict().values())
        elif hasattr(cur, "__dict__") and not isinstance(cur, type):
            stack.extend(v for k, v in vars(cur).items() if k not in skip)
    return total / 2**20


def _mb(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def unit(n: int, d: int = D, seed: int = 0, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1).to(device)


def backbone_seconds_per_image(device, batch: int, repeat: int) -> float:
    import open_clip

    model = open_clip.create_model("ViT-B-16", pretrained=None).to(device).eval()
    x = torch.randn(batch, 3, 224, 224, device=device)

    @torch.no_grad()
    def forward():
        model.encode_image(x)

    return timeit(forward, device, repeat, warmup=1) / batch


class BenchTextNet(torch.nn.Module):
    """The text side of a :class:`~openood_immuno.models.clip_net.CLIPNet` at ImageNet scale.

    ``encode_text`` returns unit random vectors, deterministic per (texts, templates): scoring
    cost depends on the bank sizes, not on what the vectors mean.
    """

    def __init__(self, class_names, dim: int, device):
        super().__init__()
        self.class_names, self.embed_dim, self._device = list(class_names), dim, device
        self.identity = f"bench-random-text-d{dim}"
        self.class_text_features = self.encode_text(self.class_names)

    @property
    def device(self):
        return self._device

    def encode_text(self, texts, templates=None):
        from openood_immuno.core.cache import content_key

        seed = int(content_key(list(texts), None if templates is None else list(templates))[:8], 16)
        return unit(len(texts), self.embed_dim, seed, self._device)


def synthetic_labels(workdir: str, n_neg: int) -> str:
    """A negative-label file (``openood-immuno neglabels`` format) of ``n_neg`` labels."""
    labels = os.path.join(workdir, f"neglabels_{n_neg}.txt")
    n_noun = int(0.8 * n_neg)
    with open(labels, "w") as fh:
        fh.write("# openood-immuno negative labels v1\n")
        fh.writelines(f"noun\tnegnoun{i}\n" for i in range(n_noun))
        fh.writelines(f"adj\tnegadj{i}\n" for i in range(n_neg - n_noun))
    return labels


def synthetic_inputs(workdir: str, class_names, n_neg: int, n_antibodies: int) -> dict:
    """A negative-label file and an antibody bank of the benchmark sizes."""
    from openood_immuno.methods.immuno.antibodies import Antibody, AntibodyBank

    labels = synthetic_labels(workdir, n_neg)
    per_class = n_antibodies // len(class_names)
    bank = AntibodyBank(class_names, {"generator": "benchmark-synthetic"})
    for c, name in enumerate(class_names):
        bank.add_class(name, [Antibody(f"look-alike {k} of class {c}", "near_ood", "bench")
                              for k in range(per_class - per_class // 4)]
                       + [Antibody(f"anomalous scene {k} of class {c}", "contextual", "bench")
                          for k in range(per_class // 4)], {})
    bank_path = os.path.join(workdir, "bank.json")
    bank.save(bank_path)
    return {"labels": labels, "bank": bank_path}


def synthetic_split(n: int, dim: int, num_classes: int, seed: int, device):
    from openood_immuno.data.features import FeatureSet

    labels = torch.arange(n) % num_classes
    return FeatureSet(f"synthetic{n}", unit(n, dim, seed).to(device), labels, [""] * n)


SCORERS = ("mcm", "neglabel", "immuno_zeroshot", "immuno_dis", "immuno", "ants_ens", "ants_vsnl", "ants")


def scorer_overrides(name: str, inputs: dict) -> dict:
    """Benchmark settings: synthetic banks of the target sizes, no MLLM, one vaccination epoch."""
    if name == "mcm":
        return {}
    if name == "neglabel":
        return {"neg_labels_file": inputs["labels"]}
    if name.startswith("ants"):
        return {"neg_labels_file": inputs["labels"], "mllm": "none"}
    out = {"antibody_bank": inputs["bank"], "delta_low": -1.0, "delta_high": 1.0}  # keep all 20k
    if name != "immuno_zeroshot":
        out.update(shots=0, epochs=1)
    return out


def fit_scorer(name: str, net, inputs: dict, id_features: dict):
    """A fitted postprocessor with ImageNet-scale banks (ANTS banks filled to their caps)."""
    from openood_immuno import build_postprocessor

    pp = build_postprocessor(name, **scorer_overrides(name, inputs)).fit(net, id_features)
    if name.startswith("ants"):
        online = pp.scorer
        ens = [f"a mined scene described {i}" for i in range(int(pp.args["ens_bank_size"]))]
        online.ens.add(ens, net.encode_text(ens, ()))
        classes = list(range(int(pp.args["vsnl_top_k"])))
        answers = {c: [f"similar {k} to {net.class_names[c]}" for k in range(5)] for c in classes}
        online.vsnl.features = net.encode_text(online.vsnl.update(classes, answers),
                                               [pp.args["vsnl_template"]])
    return pp


# ---- vaccination at the paper's scale (issue 14 item 5; owned by the falsify helper) ---------
PAPER_TRAIN, PAPER_EPOCHS = 1_281_167, 10   # ImageNet-1K training images, the paper's 10 epochs


def vaccination_paper_scale(device, quick: bool) -> dict:
    """Seconds per epoch of vaccination with every tensor on ``device``, for the default
    (fp32, batch 256) and the paper-scale setting (bf16 autocast, batch 4096), and the
    implied time of 1.28M features x 10 epochs. On a GPU the epoch runs on all 1.28M
    features; on a CPU on 20,000 (``quick``) or 100,000 and is scaled."""
    from openood_immuno.methods.immuno.params import ImmunoDISParams
    from openood_immuno.methods.immuno.vaccination import vaccinate

    gpu = device.type == "cuda"
    n = PAPER_TRAIN if gpu else (20_000 if quick else 100_000)
    feats = unit(n, D, 7, device)
    labels = torch.arange(n, device=device) % N_CLASSES
    protos, antibodies = unit(N_CLASSES, D, 8, device), unit(N_ANTIBODIES, D, 9, device)
    owner = torch.arange(N_ANTIBODIES, device=device) % N_CLASSES
    kappa = torch.full((N_CLASSES,), 50.0, device=device)
    out = {"features": n, "antibodies": N_ANTIBODIES}
    for precision, batch in (("fp32", 256), ("bf16", 4096)):
        cfg = ImmunoDISParams(adapter_hidden=512, epochs=1, lr=1e-3, batch_size=batch, weight_decay=1e-4,
                              beta=5.0, hard_k=8, seed=0, precision=precision)
        t = timeit(lambda: vaccinate(feats, labels, protos, kappa, antibodies, owner, cfg, 0.2, device,
                                     progress=False), device, 1, warmup=1 if gpu else 0)
        total = t * PAPER_TRAIN / n * PAPER_EPOCHS
        out[f"{precision}_batch{batch}"] = {"s_per_epoch": t, "paper_regime_s": total}
        print(f"vaccination {precision}, batch {batch}: {t:.2f} s/epoch on {n} features x "
              f"{N_ANTIBODIES} antibodies; ImageNet-1K x {PAPER_EPOCHS} epochs: {total / 60:.2f} min")
    return out


def repeated_jpeg_list(workdir: str, data_root: str, n_images: int) -> tuple[str, int]:
    """A list file of ``n_images`` lines cycling through every image of the minibench lists
    (real JPEGs on disk; paths relative to ``data_root``). Returns (path, distinct images)."""
    from openood_immuno.data.benchmarks import BENCHMARKS

    bench = BENCHMARKS["imagenet"]
    lines = []
    for spec in [bench.id["test"], bench.id["val"], bench.ood_val, *bench.near.values(),
                 *bench.far.values()]:
        with open(os.path.join(data_root, spec.imglist), encoding="utf-8") as fh:
            lines += [f"{spec.data_dir}{ln.split()[0]} {ln.split()[1]}" for ln in fh if ln.strip()]
    path = os.path.join(workdir, f"repeated_{n_images}.txt")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(lines[i % len(lines)] + "\n" for i in range(n_images))
    return path, len(lines)


def autocast(device):
    """fp16 autocast on a GPU (the issue's target precision), a no-op on the CPU."""
    return torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda")


def stage_times(net, dataset, device, n: int) -> dict:
    """Milliseconds per image of each stage, run one after the other in this process (no
    workers): read, decode, resize + crop, normalise, host-to-device, encoder."""
    import torchvision.transforms as T
    from PIL import Image

    from openood_immuno.data.decode import TensorPreprocess, read_bytes

    pre = TensorPreprocess.from_transform(net.preprocess)
    paths = [dataset.image_path(i) for i in range(n)]
    out: dict = {}

    def clock(key, fn):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        out[key] = 1e3 * (time.perf_counter() - start) / n
        return result

    blobs = clock("read", lambda: [read_bytes(p) for p in paths])
    pil = clock("pil_decode", lambda: [Image.open(p).convert("RGB") for p in paths])
    steps = net.preprocess.transforms
    resize_crop, to_tensor = T.Compose(steps[:2]), T.Compose(steps[2:])
    crops = clock("pil_resize_crop", lambda: [resize_crop(img) for img in pil])
    pil_batch = clock("pil_to_tensor_normalize", lambda: torch.stack([to_tensor(img) for img in crops]))
    decoded = clock("tensor_decode_cpu", lambda: pre.decode(blobs, "cpu"))
    small = clock("tensor_resize_crop_cpu", lambda: torch.stack([pre.resize_crop(i) for i in decoded]))
    if device.type == "cuda":
        on_gpu = clock("tensor_decode_cuda", lambda: pre.decode(blobs, device))
        clock("tensor_resize_crop_cuda", lambda: torch.stack([pre.resize_crop(i) for i in on_gpu]))
        pinned_f, pinned_u8 = pil_batch.pin_memory(), small.pin_memory()
        clock("h2d_float32_pinned", lambda: pinned_f.to(device, non_blocking=True))
        clock("h2d_uint8_pinned", lambda: pinned_u8.to(device, non_blocking=True))
        clock("h2d_float32_pageable", lambda: pil_batch.to(device))
    x = small.to(device)
    clock("tensor_normalize", lambda: pre.normalize(x))
    with autocast(device):
        xs = pre.normalize(x)
        net.encode_image(xs[:2])
        clock("encoder", lambda: [net.encode_image(xs[i:i + 64]) for i in range(0, n, 64)])
    return out


def end_to_end(net, dataset, device, options, fresh_cache: str) -> float:
    """Images/s from JPEG files on disk to a cached feature entry (``extract_features``)."""
    from openood_immuno.data.decode import make_image_loader
    from openood_immuno.data.features import extract_features

    os.environ["OPENOOD_IMMUNO_CACHE"] = fresh_cache
    loader = make_image_loader(dataset, device, options)
    sync(device)
    start = time.perf_counter()
    with autocast(device):
        fs = extract_features(net, loader, "bench", progress=False)
    sync(device)
    elapsed = time.perf_counter() - start
    if len(fs) != len(dataset):
        raise RuntimeError(f"extracted {len(fs)} of {len(dataset)} images")
    return len(dataset) / elapsed


def throughput_section(args, device, gpu: bool, fig: dict) -> None:
    """End-to-end extraction vs the encoder alone, the stages, and the loader options."""
    import warnings

    from openood_immuno import build_clip_net
    from openood_immuno.data.lists import ImglistDataset
    from openood_immuno.data.benchmarks import ListSpec
    from openood_immuno.data.decode import DecodeOptions

    model = "ImmunoTiny-ViT" if (args.quick and not gpu) else "ViT-B-16"
    n_images = args.e2e_images or (512 if args.quick else 4096)
    batch = 256 if gpu else 64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = build_clip_net(model, "none", "imagenet", device=device)
    with tempfile.TemporaryDirectory() as work:
        listed, distinct = repeated_jpeg_list(work, args.data_root, n_images)
        dataset = ImglistDataset(args.data_root, ListSpec("repeated", "", listed), net.preprocess)
        x = torch.randn(batch, 3, 224, 224, device=device)
        with autocast(device):
            t_enc = timeit(lambda: net.encode_image(x), device, 3 if args.quick else 5, warmup=1)
        enc_rate = batch / t_enc
        print(f"\nfeature extraction, {model} (random weights, {'fp16 autocast' if gpu else 'fp32'}), "
              f"batch {batch}: {n_images} JPEGs on disk ({distinct} distinct minibench images "
              f"repeated) -> cached features")
        print(f"  encoder alone on pre-decoded tensors: {enc_rate:.1f} images/s")
        workers = (8, 16) if gpu else (0, 2)
        configs = [DecodeOptions("pil", "cpu", batch, w, pin_memory=gpu) for w in workers]
        configs += [DecodeOptions("tensor", "cpu", batch, w, pin_memory=gpu) for w in workers]
        configs.append(DecodeOptions("tensor", "cpu", batch, workers[-1], gpu, prefetch_factor=4))
        if gpu:
            configs += [DecodeOptions("tensor", "cuda", batch, w, pin_memory=True) for w in workers]
        fig["end_to_end"] = {"model": model, "batch": batch, "images": n_images,
                             "encoder_images_per_s": enc_rate, "configs": []}
        print(f"  {'decode':<8}{'on':<6}{'workers':>8}{'prefetch':>9}{'pinned':>7}{'images/s':>10}"
              f"{'/encoder':>10}")
        for i, opt in enumerate(configs):
            rate = end_to_end(net, dataset, device, opt, os.path.join(work, f"cache{i}"))
            row = {"backend": opt.backend, "decode_device": opt.decode_device,
                   "num_workers": opt.num_workers, "prefetch_factor": opt.prefetch_factor or 2,
                   "pin_memory": opt.pin_memory, "images_per_s": rate, "ratio": rate / enc_rate}
            fig["end_to_end"]["configs"].append(row)
            print(f"  {opt.backend:<8}{opt.decode_device:<6}{opt.num_workers:>8}"
                  f"{row['prefetch_factor']:>9}{'yes' if opt.pin_memory else 'no':>7}{rate:>10.1f}"
                  f"{100 * rate / enc_rate:>9.1f}%")
        best = max(fig["end_to_end"]["configs"], key=lambda r: r["images_per_s"])
        fig["end_to_end"]["best"] = best
        print(f"  end-to-end / encoder-only = {best['ratio']:.3f} (best: {best['backend']} decode on "
              f"{best['decode_device']}, {best['num_workers']} workers)")
        stages = stage_times(net, dataset, device, min(n_images, 128 if args.quick else 512))
        fig["end_to_end"]["stage_ms_per_image"] = stages
        print("  where the time goes, one process, no workers (ms/image): "
              + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))


def decode_difference_section(args, fig: dict) -> None:
    """Tensor decode path vs the reference PIL preprocessing: features and MCM AUROC on the
    minibench test lists, ImmunoTiny-ViT (random weights), CPU."""
    import warnings

    import numpy as np

    from openood_immuno import build_clip_net
    from openood_immuno.data.lists import IMAGENET_FAR, IMAGENET_ID, IMAGENET_NEAR, ImglistDataset
    from openood_immuno.data.decode import DecodeOptions, make_image_loader
    from openood_immuno.data.features import extract_features
    from openood_immuno.core.metrics import compute_all_metrics
    from openood_immuno.scores.mcm import mcm_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = build_clip_net("ImmunoTiny-ViT", "none", "imagenet", device="cpu")
    specs = {"imagenet": IMAGENET_ID["test"], **IMAGENET_NEAR, **IMAGENET_FAR}
    feats = {}
    for backend in ("pil", "tensor"):
        opt = DecodeOptions(backend, "cpu", 128, 2)
        feats[backend] = {n: extract_features(net, make_image_loader(
            ImglistDataset(args.data_root, s, net.preprocess, 1000), "cpu", opt), n, False, cache=False)
            for n, s in specs.items()}
    a = torch.cat([f.features for f in feats["pil"].values()])
    b = torch.cat([f.features for f in feats["tensor"].values()])
    cos = (a * b).sum(dim=1)
    aurocs = {}
    for backend, sets in feats.items():
        conf = {n: mcm_score(f.features, net.class_text_features)[1].numpy() for n, f in sets.items()}
        aurocs[backend] = {n: compute_all_metrics(np.concatenate([conf["imagenet"], conf[n]]),
                                                  np.concatenate([np.zeros(len(conf["imagenet"])),
                                                                  -np.ones(len(conf[n]))]),
                                                  np.zeros(len(conf["imagenet"]) + len(conf[n])))[1]
                           for n in specs if n != "imagenet"}
    d_auroc = max(abs(aurocs["pil"][n] - aurocs["tensor"][n]) for n in aurocs["pil"])
    fig["decode_difference"] = {"images": int(a.shape[0]), "max_abs": float((a - b).abs().max()),
                                "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                                "max_auroc_diff": d_auroc}
    print(f"\ntensor decode path vs PIL reference (ImmunoTiny-ViT random weights, cpu, {a.shape[0]} "
          f"minibench test images): feature max |diff| {fig['decode_difference']['max_abs']:.2e}, "
          f"cosine min {cos.min():.6f} / mean {cos.mean():.6f}; MCM AUROC max |diff| over the 5 OOD "
          f"sets {100 * d_auroc:.3f} points")


def fused_ants_section(pp, x, device, repeat: int, t_bb: float, fig: dict) -> None:
    """The five grouped scores ANTS computes per batch: separately vs :func:`fused_ants_scores`."""
    from openood_immuno.scores.ants import balanced_bank_score, bank_score, fused_ants_scores
    from openood_immuno.scores.grouped import negative_label_score

    a, online = pp.args, pp.online
    id_text, neg = online.base.id_text, online.base.neg_text
    ens, vsnl = online.ens.features, online.vsnl.features
    scale, gs, seed = float(a["logit_scale"]), int(a["group_size"]), int(a["group_seed"])
    rep, ng = int(a["vsnl_balance_repeats"]), int(a["n_groups"])

    def separate():
        _, base = negative_label_score(x, id_text, neg, scale, "neglabel", ng, seed=seed)
        return (bank_score(x, id_text, ens, base, scale, gs, seed),
                bank_score(x, id_text, vsnl, base, scale, gs, seed),
                balanced_bank_score(x, id_text, ens, base, scale, 1, seed),
                balanced_bank_score(x, id_text, vsnl, base, scale, rep, seed))

    def fused():
        return fused_ants_scores(x, id_text, neg, ens, vsnl, scale, ng, gs, seed, rep)

    t_sep = timeit(separate, device, repeat) / x.shape[0]
    t_fused = timeit(fused, device, repeat) / x.shape[0]
    got, want = fused(), separate()
    diff = max(float((g - w).abs().max()) for g, w in zip(got[2:], want))
    fig["ants_fused"] = {"separate_ms_per_image": 1e3 * t_sep, "fused_ms_per_image": 1e3 * t_fused,
                         "separate_ratio": t_sep / t_bb, "fused_ratio": t_fused / t_bb, "max_diff": diff}
    print(f"\nANTS grouped scores per batch of {x.shape[0]} (S_base, S_ens, S_vsnl, 2 balanced; banks "
          f"{neg.shape[0]} / {ens.shape[0]} / {vsnl.shape[0]}): separate {1e3 * t_sep:.4f} ms/image "
          f"({100 * t_sep / t_bb:.2f}% of the encoder), fused {1e3 * t_fused:.4f} ms/image "
          f"({100 * t_fused / t_bb:.2f}%); max |fused - separate| {diff:.1e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller CPU batches")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    shared = os.environ.get("OPENOOD_IMMUNO_SHARED") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "shared")
    parser.add_argument("--data-root", default=os.path.join(shared, "data", "minibench"),
                        help="minibench data_root whose JPEGs the end-to-end figure decodes")
    parser.add_argument("--e2e-images", type=int, default=0,
                        help="images of the end-to-end figure (default 4096; --quick 512)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    from openood_immuno.data.classnames import resolve_class_names
    from openood_immuno.methods.immuno.params import ImmunoDISParams
    from openood_immuno.methods.immuno.vaccination import vaccinate
    from openood_immuno.methods.immuno.evt import EVTCalibrator

    gpu = device.type == "cuda"
    repeat = 5 if args.quick else 20
    name = torch.cuda.get_device_name(device) if gpu else f"{platform.processor() or 'cpu'} x{os.cpu_count()}"
    fig: dict = {"device": name, "torch": torch.__version__, "batch": BATCH}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    fig["load_average_start"] = load
    print(f"device: {name} | torch {torch.__version__} | python {sys.version.split()[0]} | "
          f"load average {load:.1f} on {os.cpu_count()} cores at start")

    bb_batch = BATCH if gpu else (16 if args.quick else 64)
    t_bb = backbone_seconds_per_image(device, bb_batch, 3 if gpu else 1)
    fig["backbone_ms_per_image"] = 1e3 * t_bb
    print(f"CLIP ViT-B/16 image encoder (fp32, random weights, batch {bb_batch}): "
          f"{1e3 * t_bb:.3f} ms/image")

    classes = resolve_class_names("imagenet")
    net = BenchTextNet(classes, D, device)
    os.environ.setdefault("OPENOOD_IMMUNO_CACHE", tempfile.mkdtemp(prefix="bench-cache-"))
    with tempfile.TemporaryDirectory() as work:
        inputs = synthetic_inputs(work, classes, N_NEG, N_ANTIBODIES)
        id_features = {"train": synthetic_split(10_000, D, N_CLASSES, 1, device),
                       "val": synthetic_split(5_000, D, N_CLASSES, 2, device)}
        x = unit(BATCH, D, 3, device)
        print(f"\nscoring a batch of {BATCH} (d={D}, {N_CLASSES} ID classes, {N_NEG} negative labels, "
              f"{N_ANTIBODIES} antibodies, ANTS banks full)")
        print(f"{'scorer':<16}{'ms/image':>10}{'/backbone':>11}{'state MB':>10}{'GPU peak MB':>13}")
        fig["scorers"], ants = {}, None
        for scorer in SCORERS:
            pp = fit_scorer(scorer, net, inputs, id_features)
            mem: dict = {}
            with peak_memory(device, mem, "peak"):
                t = timeit(lambda: pp.score_features(x), device, repeat) / BATCH
            fig["scorers"][scorer] = {"ms_per_image": 1e3 * t, "ratio_to_backbone": t / t_bb,
                                      "state_mb": state_mb(pp), "gpu_peak_mb": mem["peak"]}
            print(f"{scorer:<16}{1e3 * t:>10.4f}{100 * t / t_bb:>10.2f}%{state_mb(pp):>10.1f}"
                  f"{_mb(mem['peak']):>13}")
            if scorer == "ants":
                ants = pp
        total = sum(v["ms_per_image"] for v in fig["scorers"].values()) / 1e3
        fig["runner_ratio"] = (t_bb + total) / t_bb
        print(f"\nrunner: one backbone pass + all {len(SCORERS)} scorers from cached features = "
              f"{fig['runner_ratio']:.4f} x one backbone pass")
        fused_ants_section(ants, x, device, repeat, t_bb, fig)

        print("\nNegLabel grouped score vs number of negative labels (batch 256):")
        fig["neglabel_scaling"] = {}
        for n in (1_000, 10_000, 100_000):
            pp = fit_scorer("neglabel", net, {"labels": synthetic_labels(work, n)}, id_features)
            mem = {}
            with peak_memory(device, mem, "peak"):
                t = timeit(lambda: pp.score_features(x), device, repeat) / BATCH
            fig["neglabel_scaling"][n] = {"ms_per_image": 1e3 * t, "state_mb": state_mb(pp),
                                          "gpu_peak_mb": mem["peak"]}
            print(f"  {n:>7} labels: {1e3 * t:.4f} ms/image, state {state_mb(pp):.1f} MB, "
                  f"GPU peak {_mb(mem['peak'])} MB")

    n_train = 100_000 if (gpu or not args.quick) else 20_000
    feats = unit(n_train, D, 4, device)
    labels = torch.arange(n_train, device=device) % N_CLASSES
    protos, antibodies = unit(N_CLASSES, D, 5, device), unit(N_ANTIBODIES, D, 6, device)
    owner = torch.arange(N_ANTIBODIES, device=device) % N_CLASSES
    cfg = ImmunoDISParams(adapter_hidden=512, epochs=1, lr=1e-3, batch_size=256, weight_decay=1e-4,
                          beta=5.0, hard_k=8, seed=0)
    kappa = torch.full((N_CLASSES,), 50.0, device=device)
    mem = {}
    with peak_memory(device, mem, "peak"):
        t_epoch = timeit(lambda: vaccinate(feats, labels, protos, kappa, antibodies, owner, cfg, 0.2,
                                           device, progress=False), device, 1 if not gpu else 3, warmup=1)
    fig["vaccination"] = {"features": n_train, "antibodies": N_ANTIBODIES, "s_per_epoch": t_epoch,
                          "gpu_peak_mb": mem["peak"]}
    print(f"\nvaccination: {t_epoch:.2f} s/epoch on {n_train} features x {N_ANTIBODIES} antibodies "
          f"(batch 256), GPU peak {_mb(mem['peak'])} MB; 1.28M ImageNet images x 20 epochs would take "
          f"{t_epoch * 1_281_167 / n_train * 20 / 60:.1f} min, 16 shots x 20 epochs "
          f"{t_epoch * 16_000 / n_train * 20:.1f} s")
    fig["vaccination_paper_scale"] = vaccination_paper_scale(device, args.quick)
    dis = torch.randn(50_000, dtype=torch.float64) * 0.05 + 0.3
    evt_labels = torch.arange(50_000) % N_CLASSES
    t_evt = timeit(lambda: EVTCalibrator.fit(dis, evt_labels, N_CLASSES, 0.5, 5), torch.device("cpu"),
                   3 if args.quick else 9, warmup=1)
    fig["evt_fit_s"] = t_evt
    print(f"EVT: one batched Weibull fit for {N_CLASSES} classes (50 validation scores each), cpu: "
          f"{t_evt:.3f} s")
    throughput_section(args, device, gpu, fig)
    decode_difference_section(args, fig)
    if hasattr(os, "getloadavg"):
        fig["load_average_end"] = os.getloadavg()[0]
        print(f"load average {fig['load_average_end']:.1f} at the end (other processes share the CPUs: "
              "CPU times scale with it)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(fig, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
