"""Cost of the cache identities (issue 18 B): image lists by git's index rule, checkpoints by BLAKE3.

    python benchmarks/cache_identity.py --minibench ../shared/data/minibench --files 50000 --ckpt-mib 600

For every image list of the minibench, and for one list of N small files made in a temporary
folder (``--files``), it times, best of ``--repeat``:

* **before**: the identity of round 2, ``(size, mtime_ns)`` of every image in the cache key
  (``os.stat`` per image, then the key of the lines and the stats);
* **after, write**: :meth:`ListIdentity.of` (``(size, mtime_ns, ctime_ns, inode)`` per image, the
  lines' digest, content digests of the racy images) plus the key, what a cache miss adds;
* **after, load**: the same plus :meth:`ListIdentity.mismatch` against a matching entry, what
  every cache hit costs.

The N files are timed twice: just written (those of the last 2 s are racy: each is read and
hashed on every use) and with their times put an hour back (the usual case: nothing racy). Then the
content digest of one ``--ckpt-mib`` MiB file (a checkpoint) with BLAKE3, SHA-256 and BLAKE2b,
streamed in 1 MiB chunks from the page cache.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from openood_immuno.core.cache import content_key
from openood_immuno.data.features import ListIdentity, _lines_digest


class _List:
    def __init__(self, data_dir: str, lines: list[str]):
        self.data_dir, self.imglist = data_dir, lines


def _before(ds: _List) -> str:
    lines = [line.strip() for line in ds.imglist]
    stats = []
    for line in lines:
        try:
            st = os.stat(os.path.join(ds.data_dir, line.split()[0]))
            stats.append((st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((-1, -1))
    return content_key("img-v2", "net", "pre", os.path.abspath(ds.data_dir), lines, stats)


def _after_write(ds: _List) -> ListIdentity:
    content_key("img-v3", "net", "pre", os.path.abspath(ds.data_dir),
                _lines_digest([line.strip() for line in ds.imglist]))
    return ListIdentity.of(ds)


def _after_load(ds: _List, entry: dict) -> None:
    assert _after_write(ds).mismatch(entry) is None


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _entry(ds: _List) -> dict:
    ident = ListIdentity.of(ds)
    return {"features": torch.zeros(ident.n, 1), "labels": torch.zeros(ident.n, dtype=torch.long),
            "image_paths": list(ident.paths), "list": ident.entry_fields()}


def time_list(name: str, ds: _List, repeat: int) -> None:
    entry = _entry(ds)
    racy = len(ListIdentity.of(ds).racy)
    b = _best(lambda: _before(ds), repeat)
    w = _best(lambda: _after_write(ds), repeat)
    ld = _best(lambda: _after_load(ds, entry), repeat)
    n = len(ds.imglist)
    print(f"| {name} | {n} | {racy} | {b * 1e3:.1f} ms ({b / n * 1e6:.1f} us/file) | "
          f"{w * 1e3:.1f} ms ({w / n * 1e6:.1f} us/file) | {ld * 1e3:.1f} ms ({ld / n * 1e6:.1f} us/file) |")


def digests(mib: int, repeat: int) -> None:
    from blake3 import blake3

    fd, path = tempfile.mkstemp(prefix="ckpt-", suffix=".bin")
    with os.fdopen(fd, "wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))
    try:
        Path(path).read_bytes()  # into the page cache

        def stream(h):
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            return h.hexdigest()

        for name, make in (("blake3", blake3), ("sha256", hashlib.sha256), ("blake2b", hashlib.blake2b)):
            t = _best(lambda: stream(make()), repeat)
            print(f"| {name} | {mib} MiB | {t:.3f} s | {mib / t:.0f} MiB/s |")
    finally:
        os.unlink(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minibench", default=None, help="a data_root with benchmark_imglist/imagenet/*.txt")
    ap.add_argument("--files", type=int, default=50_000, help="small files made in a temporary folder")
    ap.add_argument("--ckpt-mib", type=int, default=600, help="size of the checkpoint file hashed")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print("| list | files | racy | before: size+mtime key | after: identity (miss) | after: identity + check (hit) |")
    print("|---|---|---|---|---|---|")
    if args.minibench:
        lists = sorted((Path(args.minibench) / "benchmark_imglist" / "imagenet").glob("*.txt"))
        lines = [(p.name, p.read_text().splitlines()) for p in lists]
        for name, ls in lines:
            time_list(f"minibench {name}", _List(args.minibench, ls), args.repeat)
        every = [line for _, ls in lines for line in ls]
        time_list("minibench, all lists as one", _List(args.minibench, every), args.repeat)
    if args.files:
        root = tempfile.mkdtemp(prefix="ident-")
        try:
            names = [f"d{i // 1000:03d}/{i:06d}.jpg" for i in range(args.files)]
            for i in range(0, args.files, 1000):
                os.mkdir(os.path.join(root, f"d{i // 1000:03d}"))
            for name in names:
                with open(os.path.join(root, name), "wb") as fh:
                    fh.write(os.urandom(2048))
            ds = _List(root, [f"{n} 0" for n in names])
            time_list(f"{args.files} files of 2 KiB, just written", ds, args.repeat)
            old = time.time_ns() - 3600 * 10**9
            for name in names:
                os.utime(os.path.join(root, name), ns=(old, old))
            time_list(f"{args.files} files of 2 KiB, an hour old", ds, args.repeat)
        finally:
            shutil.rmtree(root)
    if args.ckpt_mib:
        print()
        print("| digest | file | time (page cache) | throughput |")
        print("|---|---|---|---|")
        digests(args.ckpt_mib, args.repeat)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
