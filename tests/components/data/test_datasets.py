import re
import shutil

import numpy as np
import pytest
from PIL import Image

from anomalyops.components.data.datasets import DatasetError, FolderDataset
from anomalyops.components.data.synthetic import make_synthetic_dataset


def test_real_weld_layout_pairs_masks_by_stem(weld):
    dataset = FolderDataset(weld)
    test = dataset.test_samples()
    assert len(dataset.train_samples()) == 37
    assert sum(s.label for s in test) == 93 and len(test) == 121
    for sample in test:
        if sample.label:
            assert sample.mask_path.name == f"{sample.path.stem}_mask.png"
            assert sample.mask_path.parent.name == sample.defect_type


def test_category_without_ground_truth_has_no_pixel_labels(weld_copy):
    shutil.rmtree(weld_copy / "ground_truth")  # like mvtec_ad/bottle as shared here
    dataset = FolderDataset(weld_copy)
    assert not dataset.has_pixel_labels
    assert all(s.mask_path is None for s in dataset.test_samples())


def test_loaded_masks_match_images(weld_splits):
    _, test = weld_splits
    assert test.images.shape[1:] == (256, 256, 3) and test.images.dtype == np.uint8
    assert test.masks.shape == test.images.shape[:3]
    assert not test.masks[test.labels == 0].any()
    assert all(test.masks[i].any() for i in np.flatnonzero(test.labels))


def test_a_kept_aspect_places_masks_and_records_what_each_image_fills(weld):
    """Weld's crops are 400 wide and 89-392 high: each keeps its shape, centred."""
    from anomalyops.components.data.synthetic import paste_defects
    from anomalyops.serving.images.decode import content_box, decode_image

    dataset = FolderDataset(weld)
    test = dataset.load_test((256, 256), progress=False, keep_aspect=True)
    stretched = dataset.load_test((256, 256), progress=False)
    assert stretched.content is None and test.content.shape == test.masks.shape
    for i in range(0, len(test.samples), len(test.samples) // 8):
        box = content_box(decode_image(test.samples[i].path).shape[:2], (256, 256), True)
        assert test.content[i][box].all() and test.content[i].sum() == test.content[i][box].sum()
        assert not test.images[i][~test.content[i]].any()  # black outside its box
        assert test.masks[i].sum() == test.masks[i][box].sum()
    assert test.masks.sum() == pytest.approx(stretched.masks.sum(), rel=0.5)
    train = dataset.load_train((256, 256), progress=False, keep_aspect=True)
    assert {int(c.sum(1).max()) for c in train.content} == {256}  # one scale: 400 -> 256 wide
    pasted, masks = paste_defects(train.images, seed=3, boxes=train.boxes)
    assert masks.any(axis=(1, 2)).all() and not (masks & ~train.content).any()
    assert (pasted[~train.content] == 0).all()  # the border stays black


@pytest.fixture
def weld_copy(weld, tmp_path):
    root = tmp_path / "weld"
    shutil.copytree(weld, root)
    return root


@pytest.mark.parametrize("damage", ["zero", "truncated", "garbage"])
def test_corrupt_image_raises_or_is_skipped(weld_copy, damage):
    victim = sorted((weld_copy / "train" / "good").glob("*.png"))[3]
    data = victim.read_bytes()
    victim.write_bytes(
        {"zero": b"", "truncated": data[: len(data) // 3], "garbage": b"\x89PNGxx"}[damage]
    )
    dataset = FolderDataset(weld_copy)
    with pytest.raises(DatasetError, match=re.escape(victim.name)):
        dataset.load_train((64, 64), on_error="raise", progress=False)
    split = dataset.load_train((64, 64), on_error="skip", progress=False)
    assert len(split.images) == 36 and victim.name in split.skipped[0]
    assert str(victim) not in split.paths


def test_mask_size_mismatch_names_both_files(weld_copy):
    mask = next((weld_copy / "ground_truth").rglob("*_mask.png"))
    Image.new("L", (7, 7)).save(mask)
    with pytest.raises(DatasetError) as error:
        FolderDataset(weld_copy).load_test((64, 64), progress=False)
    assert mask.name in str(error.value) and mask.name.replace("_mask", "") in str(error.value)


def test_missing_train_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="train/good"):
        FolderDataset(tmp_path)


def test_content_hash_changes_with_a_pixel(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", train=3, test_good=1, test_defect=1, size=32)
    before = FolderDataset(root).content_hash()
    path = root / "train" / "good" / "000.png"
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(path)
    assert FolderDataset(root).content_hash() != before


def test_synthetic_defects_have_masks(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", train=2, test_good=1, test_defect=2, size=64)
    test = FolderDataset(root).load_test((64, 64), progress=False)
    assert test.labels.sum() == 4 and all(test.masks[test.labels == 1].reshape(4, -1).any(1))


def test_every_common_format_and_16_bit_mask_is_read(tmp_path):
    # A plant's folder: JPEG, BMP, TIFF and 16-bit PNG images, a 16-bit TIFF mask.
    root = tmp_path / "plant"
    for folder in ("train/good", "test/good", "test/dent", "ground_truth/dent"):
        (root / folder).mkdir(parents=True)
    grey = np.full((40, 60), 120, dtype=np.uint8)
    Image.fromarray(grey).convert("RGB").save(root / "train/good/a.jpg", quality=95)
    Image.fromarray(grey).save(root / "train/good/b.bmp")
    Image.fromarray(grey).save(root / "train/good/c.tiff")
    Image.fromarray(grey.astype(np.uint16) * 257).save(root / "train/good/d.png")
    Image.fromarray(grey).save(root / "test/good/e.jpeg")
    Image.fromarray(grey).save(root / "test/dent/f.tif")
    mask = np.zeros((40, 60), dtype=np.uint16)
    mask[10:20, 5:15] = 65535
    Image.fromarray(mask).save(root / "ground_truth/dent/f_mask.tif")
    dataset = FolderDataset(root)
    train = dataset.load_train((40, 60), progress=False)
    assert [p.rsplit("/", 1)[1] for p in train.paths] == ["a.jpg", "b.bmp", "c.tiff", "d.png"]
    assert np.abs(train.images.astype(int) - 120).max() <= 2
    test = dataset.load_test((40, 60), progress=False)
    assert test.masks[test.labels == 1].sum() == 100 and not test.masks[test.labels == 0].any()


def test_pasted_defects_change_only_their_masks(weld_splits):
    from anomalyops.components.data.synthetic import paste_defects

    good = weld_splits[0].images[:8]
    pasted, masks = paste_defects(good, seed=3)
    assert pasted.shape == good.shape and masks.shape == good.shape[:3]
    assert (pasted[~masks] == good[~masks]).all()
    share = masks.reshape(8, -1).mean(1)
    assert ((share > 0.0005) & (share < 0.02)).all()
    changed = (pasted != good).any(-1)
    assert all(changed[i][masks[i]].mean() > 0.5 for i in range(8))


def test_a_flat_folder_of_good_images_is_given_the_mvtec_layout(tmp_path):
    from anomalyops.components.data.datasets import FolderDataset, arrange_flat

    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"image bytes")
    (tmp_path / "notes.txt").write_text("stays")
    assert arrange_flat(tmp_path)
    names = sorted(s.path.name for s in FolderDataset(tmp_path).train_samples())
    assert names == ["a.png", "b.jpg"]
    assert (tmp_path / "notes.txt").is_file()
    assert not arrange_flat(tmp_path)  # already in the layout: left as it is
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not arrange_flat(empty) and not (empty / "train").exists()
