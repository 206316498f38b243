"""The general grey corpus: what it holds, what it leaves out, and how batches of several crop sizes are drawn."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgm_inverse.data import BrainSlices, GeneralCorpus
from sgm_inverse.data import general


@pytest.fixture(scope="module")
def sources():
    return general.load_sources()


def test_brain_sources_are_the_training_slabs_only(sources):
    train = BrainSlices("train", image_size=general.BRAIN_SIZE)
    assert len(sources["brain"]) == len(train)
    for split in ("val", "test"):          # no held-out slice is in the corpus, not even at another size
        held = BrainSlices(split, image_size=general.BRAIN_SIZE).images[:, 0]
        corpus = torch.stack(sources["brain"])
        d = torch.cdist(held.flatten(1).double(), corpus.flatten(1).double(),
                        compute_mode="donot_use_mm_for_euclid_dist")
        assert float(d.min()) > 1.0


def test_ellipse_phantoms_come_from_training_seeds(sources):
    from sgm_inverse.data import Ellipses, ellipse_phantom
    val_seed = Ellipses("val").seed(0)
    assert val_seed >= general.N_ELLIPSES
    np.testing.assert_array_equal(sources["phantoms"][5].numpy(), ellipse_phantom(5, 128))


def test_batches_have_one_size_and_a_fixed_pixel_budget():
    ds = GeneralCorpus()
    g = torch.Generator().manual_seed(0)
    sizes = set()
    for _ in range(12):
        b = ds.draw_batch(8, g)
        s = b.shape[-1]
        sizes.add(s)
        assert b.shape == (max(2, round(8 * (64 / s) ** 2)), 1, s, s)
    assert sizes == set(general.CROP_SIZES)
    # the same generator state gives the same batch
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(ds.draw_batch(8, g1), ds.draw_batch(8, g2), rtol=0, atol=0)


def test_items_are_fixed_by_seed_and_the_splits_differ():
    val, test = GeneralCorpus("val"), GeneralCorpus("test")
    torch.testing.assert_close(val[3], GeneralCorpus("val")[3], rtol=0, atol=0)
    assert not torch.equal(val[3], test[3])
    assert val[0].shape == (1, 64, 64)


def test_flat_crops_are_thinned_out():
    """Nearly flat crops (air around a scan) are kept with probability 1/2 only: among many crops their share
    must be clearly below what drawing without the rule gives."""
    rng = np.random.default_rng(0)
    kept = torch.stack([general.random_crop(32, rng) for _ in range(300)])
    flat_kept = float((kept.flatten(1).std(1) < general.FLAT_STD).float().mean())
    rng = np.random.default_rng(0)
    srcs = general.load_sources()
    groups, probs = list(general.GROUP_PROBS), np.array(list(general.GROUP_PROBS.values()))
    raw = []
    for _ in range(300):
        pool = srcs[groups[int(rng.choice(len(groups), p=probs / probs.sum()))]]
        raw.append(general._crop(pool[int(rng.integers(len(pool)))], 32, rng))
    flat_raw = float((torch.stack(raw).flatten(1).std(1) < general.FLAT_STD).float().mean())
    assert flat_raw > 0.05                      # the corpus does have flat regions
    assert flat_kept < 0.75 * flat_raw
