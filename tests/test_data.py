import pytest
import torch
from PIL import Image

from openood_immuno.cache import atomic_torch_save, torch_load_cached
from openood_immuno.data import ImglistDataset, ListSpec, load_rgb, read_imglist


def _write_list(tmp_path, lines):
    (tmp_path / "benchmark_imglist").mkdir(exist_ok=True)
    path = tmp_path / "benchmark_imglist" / "l.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return ListSpec("l", "imgs/", "benchmark_imglist/l.txt")


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    Image.new("RGB", (64, 64), "red").save(tmp_path / "imgs" / "ok.jpg", quality=90)
    data = (tmp_path / "imgs" / "ok.jpg").read_bytes()
    (tmp_path / "imgs" / "cut.jpg").write_bytes(data[: len(data) // 2])
    spec = _write_list(tmp_path, ["bad.jpg 0", "cut.jpg 1", "ok.jpg 2"])
    ds = ImglistDataset(str(tmp_path), spec, lambda img: torch.zeros(1))
    with pytest.raises(RuntimeError, match=r"bad\.jpg.*corrupt or truncated.*remove its line"):
        ds[0]
    with pytest.raises(RuntimeError, match=r"cut\.jpg.*corrupt or truncated"):
        ds[1]
    assert ds[2]["label"].item() == 2


def test_grayscale_and_cmyk_become_rgb(tmp_path):
    for mode in ("L", "CMYK", "P"):
        Image.new(mode, (8, 8)).save(tmp_path / f"{mode}.jpg" if mode != "P" else tmp_path / "P.png")
    for name in ("L.jpg", "CMYK.jpg", "P.png"):
        assert load_rgb(str(tmp_path / name)).mode == "RGB"


def test_list_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_imglist(str(empty))
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg 0\nb.jpg 1000\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: label 1000 out of range"):
        read_imglist(str(bad), num_classes=1000)
    broken = tmp_path / "broken.txt"
    broken.write_text("onlyapath\n")
    with pytest.raises(ValueError, match="expected 'relative/path label'"):
        read_imglist(str(broken))
    with pytest.raises(FileNotFoundError, match="--data-root"):
        read_imglist(str(tmp_path / "nope.txt"))


def test_interrupted_cache_write_leaves_nothing_readable(tmp_path, monkeypatch):
    target = tmp_path / "c.pt"
    atomic_torch_save({"v": 1}, target)

    def crash(obj, path):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"v": 2}, target)
    monkeypatch.undo()
    assert torch_load_cached(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    target.write_bytes(b"damaged")
    assert torch_load_cached(target) is None and not target.exists()
