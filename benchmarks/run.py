"""Speed and memory of every scorer at ImageNet scale, against the CLIP ViT-B/16 image encoder.

One command, one device, one run; every ratio printed is measured in that run:

    python benchmarks/run.py                    # cuda if available, else cpu
    python benchmarks/run.py --device cpu --quick
    python benchmarks/run.py --smoke            # every section at tiny sizes (tests/test_benchmark_smoke.py)

Random weights give the speed of real ones. Text banks are random unit vectors of the
ImageNet-scale sizes (d=512, 1000 ID classes, 10,000 negative labels, 20,000 antibodies):
text encoding is a one-off cost of ``fit``, not part of scoring, so it is not timed here.

Also measured: the fused ANTS scores against the five separate grouped scores; the batched EVT
fit; feature extraction end to end (JPEG files of the minibench, repeated to a few thousand,
decoded, resized and encoded into a cached feature entry) against the encoder alone on
pre-decoded tensors, per loader option (PIL or tensor decode, workers, prefetch, pinned memory),
with the time of each stage; and the feature / AUROC difference of the tensor decode path from
the reference PIL preprocessing (ImmunoTiny-ViT on the minibench test lists, CPU).

``--smoke`` runs every section at tiny sizes (ImmunoTiny-ViT as the backbone, d=64, 20 classes,
a few hundred labels and antibodies, a few dozen images): its figures say only that each section
runs, not how fast anything is at scale. The sizes of each mode are :func:`scale`'s; every line
printed names the sizes it measured. The last line lists the sections that ran.
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
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

PAPER_TRAIN, PAPER_EPOCHS = 1_281_167, 10   # ImageNet-1K training images, the paper's 10 epochs


#: OpenOOD's KNN banks all of ImageNet-1K's train features; the paper's 1% bank (bank_ratio 0.01)
KNN_TRAIN = 1_281_167


@dataclass(frozen=True)
class Scale:
    """The sizes of one run (:func:`scale`)."""

    mode: str
    dim: int = 512                    # CLIP ViT-B/16 embedding
    n_classes: int = 1000             # ImageNet-1K
    n_neg: int = 10_000               # NegLabel's negative labels
    n_antibodies: int = 20_000
    batch: int = 256                  # scoring batch
    n_patches: int = 196              # ViT-B/16 at 224: GL-MCM's local features per image
    repeat: int = 20
    backbone_model: str = "ViT-B-16"
    backbone_batch: int = 64
    backbone_repeat: int = 1
    train: int = 10_000               # synthetic ID features the scorers fit on
    val: int = 5_000
    neglabel_sizes: tuple = (1_000, 10_000, 100_000)
    knn_train: int = KNN_TRAIN        # ID train features KNN draws its bank from
    knn_ratios: tuple = (0.01, 0.1, 1.0)
    vaccination_features: int = 100_000
    vaccination_repeat: int = 1
    paper_features: int = 100_000     # CPU; a GPU runs the whole 1.28M
    evt_scores: int = 50_000
    evt_repeat: int = 9
    e2e_model: str = "ViT-B-16"
    e2e_images: int = 4096
    e2e_batch: int = 64
    e2e_workers: tuple = (0, 2)
    encoder_repeat: int = 5
    stage_images: int = 512
    decode_images_per_list: int = 0   # 0 = every image of the minibench test lists
    decode_workers: int = 2
    decode_classes: int = 1000        # ImageNet class names of the MCM classifier
    threads: int = 0                  # torch threads; 0 = torch's default
    overrides: dict = field(default_factory=dict)   # postprocessor args for small banks


class Sections:
    """The sections that ran, in order, with the wall seconds each took."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self._last = now - self._last, now


def scale(mode: str, gpu: bool) -> Scale:
    """Sizes of ``full`` (the default), ``quick`` (fewer repeats, smaller CPU batches) and
    ``smoke`` (tiny: every section runs in seconds; the figures mean nothing at scale)."""
    if mode == "smoke":
        return Scale("smoke", dim=64, n_classes=20, n_neg=200, n_antibodies=200, batch=32, repeat=2, n_patches=49,
                     backbone_model="ImmunoTiny-ViT", backbone_batch=8, train=200, val=100,
                     neglabel_sizes=(100, 400), knn_train=2000, knn_ratios=(0.1, 1.0), vaccination_features=500, paper_features=500,
                     evt_scores=200, evt_repeat=1, e2e_model="ImmunoTiny-ViT", e2e_images=32, e2e_batch=16,
                     e2e_workers=(0, 1), encoder_repeat=1, stage_images=16, decode_images_per_list=8,
                     decode_workers=0, decode_classes=20, threads=1,
                     overrides={"n_groups": 10, "group_size": 20, "vsnl_top_k": 5, "ens_bank_size": 50,
                                "vsnl_start_batch": 1})
    quick = mode == "quick"
    cpu_quick = quick and not gpu
    return Scale(mode, repeat=5 if quick else 20,
                 backbone_batch=256 if gpu else (16 if quick else 64), backbone_repeat=3 if gpu else 1,
                 vaccination_features=20_000 if cpu_quick else 100_000, vaccination_repeat=3 if gpu else 1,
                 paper_features=PAPER_TRAIN if gpu else (20_000 if quick else 100_000),
                 evt_repeat=3 if quick else 9,
                 e2e_model="ImmunoTiny-ViT" if cpu_quick else "ViT-B-16", e2e_images=512 if quick else 4096,
                 e2e_batch=256 if gpu else 64, e2e_workers=(8, 16) if gpu else (0, 2),
                 encoder_repeat=3 if quick else 5, stage_images=128 if quick else 512)


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
    (the process-wide peak RSS cannot isolate one scorer), ``None`` (and no garbage collection,
    which costs seconds once open_clip, transformers and scikit-learn are loaded)."""
    if device.type == "cuda":
        gc.collect()
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


def unit(n: int, d: int, seed: int = 0, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1).to(device)


def random_clip(model: str, class_names, device):
    """A CLIP net with random weights (they give the speed of real ones), without the warning."""
    import warnings

    from openood_immuno import build_clip_net

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_clip_net(model, "none", list(class_names), device=device, progress=False)


def backbone_seconds_per_image(model: str, device, batch: int, repeat: int) -> float:
    net = random_clip(model, ["object"], device).eval()
    x = torch.randn(batch, 3, 224, 224, device=device)

    @torch.no_grad()
    def forward():
        net.encode_image(x)

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

    def head(self):
        """The zero-shot linear head of ``CLIPNet.head``: ``W = 100 t``, ``b = 0``."""
        return 100.0 * self.class_text_features, torch.zeros(len(self.class_names), device=self._device)

    def encode_text(self, texts, templates=None, cache=True):
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
    from openood_immuno.methods.eoe import write_names
    from openood_immuno.methods.eoe.prompts import default_count

    eoe_names = write_names([f"envisioned outlier {i}" for i in range(default_count("far"))],
                            os.path.join(workdir, "eoe_names.txt"))
    return {"labels": labels, "bank": bank_path, "eoe_names": str(eoe_names)}


def synthetic_split(n: int, dim: int, num_classes: int, seed: int, device, prototypes=None):
    """``n`` unit features labelled ``i mod C``; with class ``prototypes`` [C, d] each is its class's
    prototype plus noise (classified correctly: SHE needs a correct feature of every class)."""
    from openood_immuno.data.features import FeatureSet

    labels = torch.arange(n) % num_classes
    x = unit(n, dim, seed, device)
    if prototypes is not None:
        x = F.normalize(prototypes[labels.to(prototypes.device)] + 0.5 * x, dim=1)
    return FeatureSet(f"synthetic{n}", x, labels, [""] * n)


SCORERS = ("mcm", "neglabel", "immuno_zeroshot", "immuno_dis", "immuno", "ants_ens", "ants_vsnl", "ants",
           "adaneg", "csp", "eoe", "negrefine")
#: OpenOOD's classic scores on the CLIP head (docs/classic.md); KNN's bank is timed on its own below
CLASSIC = ("msp", "ebo", "mls", "gen", "gradnorm", "react", "ash", "scale", "dice", "knn", "vim", "mds",
           "rmds", "klm", "she", "fdbd", "nci")


def scorer_overrides(name: str, inputs: dict, sizes: Scale) -> dict:
    """Benchmark settings: synthetic banks of the target sizes, no MLLM, one vaccination epoch
    (and, at smoke sizes, the small-bank settings of ``sizes.overrides`` that apply)."""
    if name == "mcm":
        out = {}
    elif name in ("neglabel", "adaneg"):
        out = {"neg_labels_file": inputs["labels"]}
    elif name.startswith("ants"):
        out = {"neg_labels_file": inputs["labels"], "mllm": "none"}
    elif name == "csp":
        out = {"neg_labels_file": inputs["labels"]}
    elif name == "eoe":
        out = {"outlier_names_file": inputs["eoe_names"]}
    elif name == "negrefine":   # the synthetic list stands for the LLM-filtered one: no LLM
        out = {"filtered_labels_file": inputs["labels"]}
    elif name in CLASSIC:
        out = {"dim": sizes.dim // 2} if name == "vim" else {}   # ViM's default 256 of d = 512
    else:
        out = {"antibody_bank": inputs["bank"], "delta_low": -1.0, "delta_high": 1.0}  # keep them all
        if name != "immuno_zeroshot":
            out.update(shots=0, epochs=1)
    from openood_immuno.openood.registry import resolved_params

    known = resolved_params(name)[0].names()
    return {**out, **{k: v for k, v in sizes.overrides.items() if k in known}}


def fit_scorer(name: str, net, inputs: dict, id_features: dict, sizes: Scale):
    """A fitted postprocessor with banks of the benchmark sizes (ANTS banks filled to their caps)."""
    from openood_immuno import build_postprocessor

    pp = build_postprocessor(name, **scorer_overrides(name, inputs, sizes)).fit(net, id_features)
    if name.startswith("ants"):
        online = pp.scorer
        ens = [f"a mined scene described {i}" for i in range(int(pp.args["ens_bank_size"]))]
        online.ens.add(ens, net.encode_text(ens, ()))
        classes = list(range(int(pp.args["vsnl_top_k"])))
        answers = {c: [f"similar {k} to {net.class_names[c]}" for k in range(5)] for c in classes}
        online.vsnl.features = net.encode_text(online.vsnl.update(classes, answers),
                                               [pp.args["vsnl_template"]])
    if name == "adaneg":
        fill_adaneg_memory(pp)
    return pp


def fill_adaneg_memory(pp) -> None:
    """AdaNeg's memory full: every slot (ID class, negative label) holds its capacity of random unit
    features, written through the memory's own rule."""
    from openood_immuno.methods.adaneg import FeatureMemory

    text, cap = pp.scorer.text, pp.params.capacity
    memory = FeatureMemory(text, cap)
    slots = torch.arange(len(text), device=text.device).repeat(cap)
    memory.write(slots, unit(len(slots), text.shape[1], 5, text.device),
                 torch.rand(len(slots), generator=torch.Generator().manual_seed(6)).to(text.device))
    pp.scorer.memory = memory


def adaneg_memory(pp, fig: dict) -> None:
    """AdaNeg's memory per slot and in all, and the transient floats its scoring needs per image
    (cos, w and w cos over every slot's 1 + capacity entries, sample-adaptive proxies)."""
    memory = pp.scorer.memory
    slots, entries = memory.entries.shape[:2]
    total = memory.nbytes()
    per_image = 3 * slots * entries * 4
    fig["adaneg_memory"] = {"bytes": total, "bytes_per_slot": total / slots, "slots": slots,
                            "capacity": memory.capacity, "transient_bytes_per_image": per_image}
    print(f"adaneg memory: {total / 2**20:.1f} MB held for {slots} slots ({total / slots:.0f} B per slot: the "
          f"text feature + {memory.capacity} cached features, their entropies, sums and Gram matrix); "
          f"scoring needs {per_image / 1024:.0f} KB transient per image")


#: the push margin of the timed vaccination runs (the immuno default resolves it from the data)
MARGIN = 0.2


def vaccination_settings(epochs: int, batch_size: int, precision: str = "fp32"):
    """The training settings of the ``immuno`` defaults, with ``epochs``, ``batch_size``, ``precision``."""
    from openood_immuno.methods.immuno.params import ImmunoDISParams

    return ImmunoDISParams().replace({"epochs": epochs, "batch_size": batch_size, "precision": precision})


def vaccination_inputs(n: int, sizes: Scale, seed: int, device):
    """``n`` ID features, their labels, prototypes, kappa, antibodies and their owners."""
    feats = unit(n, sizes.dim, seed, device)
    labels = torch.arange(n, device=device) % sizes.n_classes
    protos = unit(sizes.n_classes, sizes.dim, seed + 1, device)
    antibodies = unit(sizes.n_antibodies, sizes.dim, seed + 2, device)
    owner = torch.arange(sizes.n_antibodies, device=device) % sizes.n_classes
    kappa = torch.full((sizes.n_classes,), 50.0, device=device)
    return feats, labels, protos, kappa, antibodies, owner


def vaccination_section(device, gpu: bool, sizes: Scale, fig: dict) -> None:
    """Seconds per epoch of vaccination (default settings, one epoch) on synthetic features."""
    from openood_immuno.methods.immuno.vaccination import vaccinate

    n = sizes.vaccination_features
    feats, labels, protos, kappa, antibodies, owner = vaccination_inputs(n, sizes, 4, device)
    cfg = vaccination_settings(1, 256)
    mem: dict = {}
    with peak_memory(device, mem, "peak"):
        t_epoch = timeit(lambda: vaccinate(feats, labels, protos, kappa, antibodies, owner, cfg, MARGIN, device,
                                           progress=False), device, sizes.vaccination_repeat, warmup=1)
    fig["vaccination"] = {"features": n, "antibodies": sizes.n_antibodies, "s_per_epoch": t_epoch,
                          "gpu_peak_mb": mem["peak"]}
    print(f"\nvaccination: {t_epoch:.2f} s/epoch on {n} features x {sizes.n_antibodies} antibodies "
          f"(batch 256), GPU peak {_mb(mem['peak'])} MB; 1.28M ImageNet images x 20 epochs would take "
          f"{t_epoch * PAPER_TRAIN / n * 20 / 60:.1f} min, 16 shots x 20 epochs "
          f"{t_epoch * 16_000 / n * 20:.1f} s")


def vaccination_paper_scale(device, sizes: Scale) -> dict:
    """Seconds per epoch of vaccination with every tensor on ``device``, for the default
    (fp32, batch 256) and the paper-scale setting (bf16 autocast, batch 4096), and the
    implied time of 1.28M features x 10 epochs. On a GPU the epoch runs on all 1.28M
    features; on a CPU on ``sizes.paper_features`` and is scaled."""
    from openood_immuno.methods.immuno.vaccination import vaccinate

    gpu = device.type == "cuda"
    n = sizes.paper_features
    feats, labels, protos, kappa, antibodies, owner = vaccination_inputs(n, sizes, 7, device)
    out = {"features": n, "antibodies": sizes.n_antibodies}
    for precision, batch in (("fp32", 256), ("bf16", 4096)):
        cfg = vaccination_settings(1, batch, precision)
        t = timeit(lambda: vaccinate(feats, labels, protos, kappa, antibodies, owner, cfg, MARGIN, device,
                                     progress=False), device, 1, warmup=1 if gpu else 0)
        total = t * PAPER_TRAIN / n * PAPER_EPOCHS
        out[f"{precision}_batch{batch}"] = {"s_per_epoch": t, "paper_regime_s": total}
        print(f"vaccination {precision}, batch {batch}: {t:.2f} s/epoch on {n} features x "
              f"{sizes.n_antibodies} antibodies; ImageNet-1K x {PAPER_EPOCHS} epochs: {total / 60:.2f} min")
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


def throughput_section(args, device, gpu: bool, sizes: Scale, fig: dict) -> None:
    """End-to-end extraction vs the encoder alone, the stages, and the loader options."""
    from openood_immuno.data.lists import ImglistDataset
    from openood_immuno.data.benchmarks import ListSpec
    from openood_immuno.data.decode import DecodeOptions

    model, batch = sizes.e2e_model, sizes.e2e_batch
    n_images = args.e2e_images or sizes.e2e_images
    net = random_clip(model, ["object"], device)
    with tempfile.TemporaryDirectory() as work:
        listed, distinct = repeated_jpeg_list(work, args.data_root, n_images)
        dataset = ImglistDataset(args.data_root, ListSpec("repeated", "", listed), net.preprocess)
        x = torch.randn(batch, 3, 224, 224, device=device)
        with autocast(device):
            t_enc = timeit(lambda: net.encode_image(x), device, sizes.encoder_repeat, warmup=1)
        enc_rate = batch / t_enc
        print(f"\nfeature extraction, {model} (random weights, {'fp16 autocast' if gpu else 'fp32'}), "
              f"batch {batch}: {n_images} JPEGs on disk ({distinct} distinct minibench images "
              f"repeated) -> cached features")
        print(f"  encoder alone on pre-decoded tensors: {enc_rate:.1f} images/s")
        workers = sizes.e2e_workers
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
        stages = stage_times(net, dataset, device, min(n_images, sizes.stage_images))
        fig["end_to_end"]["stage_ms_per_image"] = stages
        print("  where the time goes, one process, no workers (ms/image): "
              + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))


def truncated_list(work: str, data_root: str, spec, n: int):
    """``spec`` with only its first ``n`` images (a list file in ``work``); ``n = 0``: ``spec``."""
    from dataclasses import replace

    if not n:
        return spec
    with open(os.path.join(data_root, spec.imglist), encoding="utf-8") as fh:
        lines = [ln for ln in fh if ln.strip()][:n]
    path = os.path.join(work, f"{spec.name}_{n}.txt")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    return replace(spec, imglist=path)  # an absolute path: os.path.join(data_root, it) is it


def decode_difference_section(args, sizes: Scale, fig: dict) -> None:
    """Tensor decode path vs the reference PIL preprocessing: features and MCM AUROC on the
    minibench test lists, ImmunoTiny-ViT (random weights), CPU."""
    import numpy as np

    from openood_immuno.data.benchmarks import BENCHMARKS
    from openood_immuno.data.lists import ImglistDataset
    from openood_immuno.data.decode import DecodeOptions, make_image_loader
    from openood_immuno.data.features import extract_features
    from openood_immuno.core.metrics import compute_all_metrics
    from openood_immuno.scores.mcm import mcm_score

    from openood_immuno.data.classnames import resolve_class_names

    net = random_clip("ImmunoTiny-ViT", resolve_class_names("imagenet")[:sizes.decode_classes], "cpu")
    bench = BENCHMARKS["imagenet"]
    specs = {"imagenet": bench.id["test"], **bench.near, **bench.far}
    feats = {}
    with tempfile.TemporaryDirectory() as work:
        specs = {n: truncated_list(work, args.data_root, s, sizes.decode_images_per_list)
                 for n, s in specs.items()}
        for backend in ("pil", "tensor"):
            opt = DecodeOptions(backend, "cpu", 128, sizes.decode_workers)
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
          f"minibench test images, {len(net.class_names)} ImageNet classes): feature max |diff| {fig['decode_difference']['max_abs']:.2e}, "
          f"cosine min {cos.min():.6f} / mean {cos.mean():.6f}; MCM AUROC max |diff| over the 5 OOD "
          f"sets {100 * d_auroc:.3f} points")


def fused_ants_section(pp, x, device, repeat: int, t_bb: float, fig: dict) -> None:
    """The five grouped scores ANTS computes per batch: separately vs :func:`fused_ants_scores`."""
    from openood_immuno.scores.ants import balanced_bank_score, bank_score, fused_ants_scores
    from openood_immuno.scores.grouped import negative_label_score

    a, online = pp.args, pp.scorer
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


IMAGENET_VAL = 50_000   # ImageNet-1K validation images (OpenOOD's ID test set draws from them)


def negrefine_text_cost(sizes: Scale, device, t_bb: float, fig: dict) -> None:
    """NegRefine's row above times the scorer with its pair texts memoised (the bench's text net
    draws random vectors); each image's ``k_pos x k_neg`` pair texts, 8 prompts each, go through
    CLIP's text encoder when not yet memoised. Measured here: the text encoder of the benchmark's
    model on one batch of those prompts, i.e. the cost of an image whose 25 pairs are all new."""
    from openood_immuno.methods.negrefine.params import NegRefineParams

    p = NegRefineParams()
    n_prompts = p.k_pos * p.k_neg * len(p.noun_templates)
    net = random_clip(sizes.backbone_model, ["object"], device).eval()
    tokens = net.tokenizer([f"a photo of a class {i} and negative {i}." for i in range(n_prompts)]).to(device)

    @torch.no_grad()
    def encode():
        net.clip.encode_text(tokens)

    t = timeit(encode, device, 1, warmup=1)
    fig["negrefine_new_pairs"] = {"prompts_per_image": n_prompts, "ms_per_image": 1e3 * t,
                                  "ratio_to_backbone": t / t_bb}
    print(f"  negrefine: its row has the pair texts memoised; an image whose {p.k_pos} x {p.k_neg} pair "
          f"texts are all new encodes {n_prompts} prompts: {1e3 * t:.1f} ms = {t / t_bb:.2f} x the image encoder "
          f"({sizes.backbone_model} text encoder, same run)")


def glmcm_row(net, x, sizes: Scale, device, t_bb: float, fig: dict) -> None:
    """GL-MCM's row of the scoring table (global features plus ``n_patches`` per-patch ones per
    image, float16 as the cache stores them) and its cache bytes per image."""
    from openood_immuno import build_postprocessor
    from openood_immuno.data.local_features import LOCAL_DTYPE, local_bytes_per_image

    b, p = x.shape[0], sizes.n_patches
    pp = build_postprocessor("glmcm").fit(net, {})
    local = unit(b * p, sizes.dim, 5, device).view(b, p, sizes.dim).to(LOCAL_DTYPE)
    mem: dict = {}
    with peak_memory(device, mem, "peak"):
        t = timeit(lambda: pp.score_features(x, local=local), device, sizes.repeat) / b
    per_image = local_bytes_per_image(p, sizes.dim) + 4 * sizes.dim   # + the float32 global feature
    fig["scorers"]["glmcm"] = {"ms_per_image": 1e3 * t, "ratio_to_backbone": t / t_bb, "state_mb": state_mb(pp),
                               "gpu_peak_mb": mem["peak"]}
    fig["glmcm"] = {"patches": p, "cache_bytes_per_image": per_image,
                    "cache_gb_imagenet_val": per_image * IMAGENET_VAL / 1e9}
    print(f"{'glmcm':<16}{1e3 * t:>10.4f}{100 * t / t_bb:>10.2f}%{state_mb(pp):>10.1f}{_mb(mem['peak']):>13}")
    print(f"  glmcm memory: {per_image:,} cache bytes/image ({p} patches x {sizes.dim} x 2 B float16 + "
          f"{sizes.dim} x 4 B global); {IMAGENET_VAL:,} ImageNet-1K val images: "
          f"{fig['glmcm']['cache_gb_imagenet_val']:.2f} GB")


def scoring_sections(device, sizes: Scale, t_bb: float, ran: Sections, fig: dict) -> None:
    """Every scorer on one batch, the runner ratio, fused ANTS and NegLabel vs its bank size."""
    from openood_immuno.data.classnames import resolve_class_names

    classes = resolve_class_names("imagenet")[:sizes.n_classes]
    net = BenchTextNet(classes, sizes.dim, device)
    b, repeat = sizes.batch, sizes.repeat
    with tempfile.TemporaryDirectory() as work:
        inputs = synthetic_inputs(work, classes, sizes.n_neg, sizes.n_antibodies)
        protos = net.class_text_features
        id_features = {"train": synthetic_split(sizes.train, sizes.dim, sizes.n_classes, 1, device, protos),
                       "val": synthetic_split(sizes.val, sizes.dim, sizes.n_classes, 2, device, protos)}
        x = unit(b, sizes.dim, 3, device)
        print(f"\nscoring a batch of {b} (d={sizes.dim}, {sizes.n_classes} ID classes, {sizes.n_neg} negative "
              f"labels, {sizes.n_antibodies} antibodies, ANTS banks full"
              + (f"; {sizes.mode} settings {sizes.overrides}" if sizes.overrides else "") + ")")
        print(f"{'scorer':<16}{'ms/image':>10}{'/backbone':>11}{'state MB':>10}{'GPU peak MB':>13}")
        fig["scorers"], ants, adaneg = {}, None, None
        for scorer in SCORERS + CLASSIC:
            pp = fit_scorer(scorer, net, inputs, id_features, sizes)
            mem: dict = {}
            with peak_memory(device, mem, "peak"):
                t = timeit(lambda: pp.score_features(x), device, repeat) / b
            fig["scorers"][scorer] = {"ms_per_image": 1e3 * t, "ratio_to_backbone": t / t_bb,
                                      "state_mb": state_mb(pp), "gpu_peak_mb": mem["peak"]}
            print(f"{scorer:<16}{1e3 * t:>10.4f}{100 * t / t_bb:>10.2f}%{state_mb(pp):>10.1f}"
                  f"{_mb(mem['peak']):>13}")
            if scorer == "ants":
                ants = pp
            elif scorer == "adaneg":
                adaneg = pp
        negrefine_text_cost(sizes, device, t_bb, fig)
        glmcm_row(net, x, sizes, device, t_bb, fig)
        total = sum(v["ms_per_image"] for v in fig["scorers"].values()) / 1e3
        adaneg_memory(adaneg, fig)
        fig["runner_ratio"] = (t_bb + total) / t_bb
        print(f"\nrunner: one backbone pass + all {len(fig['scorers'])} scorers from cached features = "
              f"{fig['runner_ratio']:.4f} x one backbone pass")
        ran.done("scorers")
        fused_ants_section(ants, x, device, repeat, t_bb, fig)
        ran.done("ants_fused")

        print(f"\nNegLabel grouped score vs number of negative labels (batch {b}):")
        fig["neglabel_scaling"] = {}
        for n in sizes.neglabel_sizes:
            pp = fit_scorer("neglabel", net, {"labels": synthetic_labels(work, n)}, id_features, sizes)
            mem = {}
            with peak_memory(device, mem, "peak"):
                t = timeit(lambda: pp.score_features(x), device, repeat) / b
            fig["neglabel_scaling"][n] = {"ms_per_image": 1e3 * t, "state_mb": state_mb(pp),
                                          "gpu_peak_mb": mem["peak"]}
            print(f"  {n:>7} labels: {1e3 * t:.4f} ms/image, state {state_mb(pp):.1f} MB, "
                  f"GPU peak {_mb(mem['peak'])} MB")
        ran.done("neglabel_scaling")
        knn_section(net, x, device, sizes, t_bb, fig)
        ran.done("knn_bank")


def knn_section(net, x, device, sizes: Scale, t_bb: float, fig: dict) -> None:
    """KNN's exact search is linear in its bank: OpenOOD's bank is every ImageNet-1K train feature
    (``bank_ratio`` 1); the KNN paper's ImageNet script also runs a 1% bank (``bank_ratio`` 0.01)."""
    from openood_immuno import build_postprocessor

    b = sizes.batch
    print(f"\nKNN (K = 50) vs its bank of ID train features (batch {b}, d={sizes.dim}, "
          f"{sizes.knn_train} train features):")
    fig["knn_bank"] = {}
    train = {"train": synthetic_split(sizes.knn_train, sizes.dim, sizes.n_classes, 4, device)}
    for ratio in sizes.knn_ratios:
        pp = build_postprocessor("knn", bank_ratio=ratio).fit(net, train)
        t = timeit(lambda: pp.score_features(x), device, sizes.repeat) / b
        rows = int(pp.scorer.bank.shape[0])
        fig["knn_bank"][rows] = {"bank_ratio": ratio, "ms_per_image": 1e3 * t, "ratio_to_backbone": t / t_bb}
        print(f"  {rows:>9} features (bank_ratio {ratio:g}): {1e3 * t:.4f} ms/image = "
              f"{100 * t / t_bb:.3f}% of the backbone")


def evt_section(sizes: Scale, fig: dict) -> None:
    from openood_immuno.methods.immuno.evt import EVTCalibrator

    n, c = sizes.evt_scores, sizes.n_classes
    dis = torch.randn(n, dtype=torch.float64) * 0.05 + 0.3
    labels = torch.arange(n) % c
    t_evt = timeit(lambda: EVTCalibrator.fit(dis, labels, c, 0.5, 5), torch.device("cpu"), sizes.evt_repeat,
                   warmup=1)
    fig["evt_fit_s"] = t_evt
    print(f"EVT: one batched Weibull fit for {c} classes ({n // c} validation scores each), cpu: "
          f"{t_evt:.3f} s")


def later_sections(args, device, gpu: bool, sizes: Scale, ran: Sections, fig: dict) -> None:
    """Vaccination, EVT, end-to-end throughput and the decode difference."""
    vaccination_section(device, gpu, sizes, fig)
    ran.done("vaccination")
    fig["vaccination_paper_scale"] = vaccination_paper_scale(device, sizes)
    ran.done("vaccination_paper_scale")
    evt_section(sizes, fig)
    ran.done("evt")
    throughput_section(args, device, gpu, sizes, fig)
    ran.done("end_to_end")
    decode_difference_section(args, sizes, fig)
    ran.done("decode_difference")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer repeats, smaller CPU batches")
    mode.add_argument("--smoke", action="store_true",
                      help="every section at tiny sizes (seconds; figures not meaningful at scale)")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    parser.add_argument("--scoring-only", action="store_true",
                        help="only the encoder and the scoring sections (every scorer, ANTS fused, NegLabel and "
                             "KNN against their bank sizes): the figures of docs/benchmark.md's scorer tables")
    shared = os.environ.get("OPENOOD_IMMUNO_SHARED") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "shared")
    parser.add_argument("--data-root", default=os.path.join(shared, "data", "minibench"),
                        help="minibench data_root whose JPEGs the end-to-end figure decodes")
    parser.add_argument("--e2e-images", type=int, default=0,
                        help="images of the end-to-end figure (default 4096; --quick 512; --smoke 32)")
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data_root, "benchmark_imglist")):
        parser.error(f"--data-root {args.data_root!r} holds no benchmark_imglist/: pass the minibench "
                     "(shared/data/minibench) or set OPENOOD_IMMUNO_SHARED")
    device = torch.device(args.device)
    torch.manual_seed(0)
    gpu = device.type == "cuda"
    sizes = scale("smoke" if args.smoke else "quick" if args.quick else "full", gpu)
    start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if gpu else f"{platform.processor() or 'cpu'} x{os.cpu_count()}"
    fig: dict = {"device": name, "torch": torch.__version__, "mode": sizes.mode, "batch": sizes.batch}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    fig["load_average_start"] = load
    print(f"device: {name} | torch {torch.__version__} | python {sys.version.split()[0]} | "
          f"load average {load:.1f} on {os.cpu_count()} cores at start | mode {sizes.mode}")
    os.environ.setdefault("OPENOOD_IMMUNO_CACHE", tempfile.mkdtemp(prefix="bench-cache-"))
    if sizes.threads:
        torch.set_num_threads(sizes.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    ran = Sections()

    t_bb = backbone_seconds_per_image(sizes.backbone_model, device, sizes.backbone_batch, sizes.backbone_repeat)
    fig["backbone_model"], fig["backbone_ms_per_image"] = sizes.backbone_model, 1e3 * t_bb
    print(f"CLIP {sizes.backbone_model} image encoder (fp32, random weights, batch {sizes.backbone_batch}): "
          f"{1e3 * t_bb:.3f} ms/image")
    ran.done("backbone")
    scoring_sections(device, sizes, t_bb, ran, fig)
    if not args.scoring_only:
        later_sections(args, device, gpu, sizes, ran, fig)
    fig["sections"], fig["wall_s"] = ran.seconds, time.perf_counter() - start
    if hasattr(os, "getloadavg"):
        fig["load_average_end"] = os.getloadavg()[0]
        print(f"load average {fig['load_average_end']:.1f} at the end (other processes share the CPUs: "
              "CPU times scale with it)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(fig, fh, indent=1)
    print(f"sections run ({fig['wall_s']:.0f} s in all): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in ran.seconds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
