import pytest
import torch
from PIL import Image

from openood_immuno.core.cache import atomic_torch_save, torch_load_cached
from openood_immuno.data.lists import ImglistDataset, load_rgb, read_imglist
from openood_immuno.data.benchmarks import ListSpec


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


def test_list_encodings_are_named_with_the_fix(tmp_path, caplog):
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfa.jpg 0\nb.jpg 1\n")
    with caplog.at_level("WARNING", logger="openood_immuno.data.lists"):
        assert read_imglist(str(bom)) == [("a.jpg", 0), ("b.jpg", 1)]  # the BOM is not in the path
    assert "bom.txt starts with a UTF-8 byte-order mark" in caplog.text
    latin = tmp_path / "latin.txt"
    latin.write_bytes("a.jpg 0\ncaf\u00e9.jpg 1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt', line 2: not UTF-8 \(byte 0xe9; Latin-1\?\): convert "
                                         r"it with `iconv -f LATIN1 -t UTF-8 .*latin\.txt >"):
        read_imglist(str(latin))
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("a.jpg 0\n".encode("utf-16"))
    with pytest.raises(ValueError, match=r"utf16\.txt' is UTF-16, not UTF-8: convert it with `iconv "
                                         r"-f UTF-16 -t UTF-8"):
        read_imglist(str(utf16))


def test_id_lists_refuse_ood_labels_and_duplicates_are_reported(tmp_path):
    spec = _write_list(tmp_path, ["a.jpg 0", "b.jpg -1"])
    assert ImglistDataset(str(tmp_path), spec, str).samples[1] == ("b.jpg", -1)  # an OOD list
    with pytest.raises(ValueError, match=r"l\.txt:2: label -1 in an ID list: ID labels are class "
                                         r"indices in \[0, 1000\)"):
        ImglistDataset(str(tmp_path), spec, str, 1000, id_list=True)
    spec = _write_list(tmp_path, ["a.jpg 0", "b.jpg 1", "a.jpg 2", "c.jpg 3", "b.jpg 1", "a.jpg 0"])
    with pytest.raises(ValueError, match=r"l\.txt' lists 3 image\(s\) more than once \(e\.g\. 'a\.jpg' "
                                         r"at lines 1 and 3, 'b\.jpg' at lines 2 and 5, 'a\.jpg' at "
                                         r"lines 1 and 6\): remove the duplicated lines"):
        read_imglist(str(tmp_path / spec.imglist))


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_bit_depth_images_are_scaled_by_their_range_not_clipped(tmp_path, mode):
    import numpy as np

    ramp = np.linspace(0, 4095, 64).reshape(8, 8)  # a 12-bit scan: all above 255
    arr = {"I;16": ramp.astype(np.uint16), "I": ramp.astype(np.int32) - 1000,
           "F": (ramp / 4095).astype(np.float32)}[mode]
    path = tmp_path / ("img.png" if mode == "I;16" else "img.tiff")
    Image.fromarray(arr).save(path)
    with Image.open(path) as img:
        assert img.mode == mode
    rgb = np.asarray(load_rgb(str(path)))
    assert rgb.shape == (8, 8, 3) and rgb.min() == 0 and rgb.max() == 255
    assert np.all(np.diff(rgb[..., 0].ravel().astype(int)) >= 0)  # order kept: a ramp stays a ramp
    assert len(np.unique(rgb)) > 50  # not an all-white (clipped) or two-level frame
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((4, 4), 60000, np.uint16)).save(flat)
    assert np.asarray(load_rgb(str(flat))).min() == 255


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x64 > 2x the limit: PIL refuses
    with pytest.raises(RuntimeError, match=r"image '.*big\.png' \(listed in l\.txt\) is too large to "
                                           r"open safely .*MAX_IMAGE_PIXELS"):
        load_rgb(str(tmp_path / "big.png"), "l.txt")
