"""The app's micro-batcher: concurrent callers share passes, each gets its own result or its own error."""
import threading
import time

import pytest
import torch

from app.batching import MicroBatcher


def test_concurrent_callers_share_passes_and_get_their_own_results():
    batcher = MicroBatcher(max_batch=4)
    sizes = []

    def double(xs):
        sizes.append(len(xs))
        time.sleep(0.02)  # a forward pass: the others queue up meanwhile
        return [2 * x for x in xs]

    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher(double, i))) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: 2 * i for i in range(12)}
    assert sum(sizes) == 12 and max(sizes) > 1 and max(sizes) <= 4  # batched, never beyond max_batch
    assert batcher.passes == len(sizes) and batcher.items == 12


def test_a_bad_item_fails_only_its_caller():
    batcher = MicroBatcher()
    gate = threading.Event()

    def checked(xs):
        gate.wait(1)
        if any(x < 0 for x in xs):
            raise ValueError("negative")
        return xs

    outcomes = {}

    def call(x):
        try:
            outcomes[x] = batcher(checked, x)
        except ValueError as err:
            outcomes[x] = str(err)

    threads = [threading.Thread(target=call, args=(x,)) for x in (1, -1, 2, 3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join()
    assert outcomes == {1: 1, -1: "negative", 2: 2, 3: 3}


def test_served_histories_encoded_together_equal_each_alone(rec):
    """A history's vector from a shared pass is its vector alone (to float rounding: padding to a longer
    neighbour changes nothing the attention mask lets through)."""
    cases = rec.dataset.test_cases()[:6]
    alone = torch.stack([rec.embed_history([list(c.history)])[0] for c in cases])
    batcher = MicroBatcher()
    out = [None] * len(cases)
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, batcher(rec.embed_history, list(cases[i].history))))
               for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.allclose(torch.stack(out), alone, atol=2e-2 if rec.precision == "bf16" else 1e-5)


def test_max_batch_is_checked():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(max_batch=0)
