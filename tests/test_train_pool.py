import torch

from cyclegan.train.pool import ImagePool


def test_empty_pool_passes_images_through():
    x = torch.randn(3, 3, 4, 4, requires_grad=True)
    out = ImagePool(0).query(x)
    assert torch.equal(out, x) and not out.requires_grad  # no gradient path from D's loss into G


def test_pool_fills_then_mixes_old_and_new():
    pool = ImagePool(size=4, seed=1)
    first = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    assert torch.equal(pool.query(first), first)
    assert len(pool.images) == 4
    seen_old = seen_new = False
    for i in range(20):
        new = torch.full((1, 3, 2, 2), 100.0 + i)
        out = pool.query(new)
        assert out.shape == new.shape
        seen_new |= bool(torch.equal(out, new))
        seen_old |= bool(out[0, 0, 0, 0] < 100 + i)
    assert seen_old and seen_new
    assert len(pool.images) == 4


def test_pool_state_replays_exactly():
    pool = ImagePool(size=3, seed=7)
    for i in range(5):
        pool.query(torch.full((2, 3, 2, 2), float(i)))
    copy = ImagePool(size=3, seed=0)
    copy.load_state_dict(pool.state_dict())
    batch = torch.full((4, 3, 2, 2), 50.0)
    assert torch.equal(pool.query(batch), copy.query(batch))


def test_a_skipped_steps_fakes_stay_out_of_the_pool():
    pool = ImagePool(size=2, seed=3)
    skip, keep = torch.ones(()), torch.zeros(())
    pool.query(torch.full((1, 3, 2, 2), float("nan")), skip)  # filling: a blank image takes the slot
    pool.query(torch.full((1, 3, 2, 2), 1.0), keep)
    assert torch.equal(pool.images[0], torch.zeros(1, 3, 2, 2)) and torch.equal(pool.images[1], torch.ones(1, 3, 2, 2))
    for _ in range(10):  # full: NaN fakes may be answered with stored images but never replace them
        pool.query(torch.full((1, 3, 2, 2), float("nan")), skip)
    assert all(torch.isfinite(image).all() for image in pool.images)
    for i in range(10):
        pool.query(torch.full((1, 3, 2, 2), 5.0 + i), keep)
    assert any(image[0, 0, 0, 0] >= 5 for image in pool.images)  # kept steps still enter it
