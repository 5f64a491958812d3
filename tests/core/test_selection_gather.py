"""`batch` scope's gather across ranks, in process: two ranks simulated by two threads that share a fake
``torch.distributed`` (``all_gather`` exchanges the ranks' tensors through a barrier).

tests/core/test_selection_distributed.py runs the same code on real gloo processes, but mutmut only sees what runs
in the pytest process, so it could not judge ``_gather_valid_scores`` (docs/testing.md); these tests can. The fake
refuses what gloo refuses: tensors of different shapes or dtypes across ranks, an output list of the wrong length.
"""

import threading

import pytest
import torch

from videoktr.core import selection
from videoktr.core.selection import _gather_valid_scores, top_fraction_mask


class FakeDist:
    """``torch.distributed`` for ``world`` threads: each thread sets ``local.rank`` before calling in."""

    def __init__(self, world: int):
        self.world = world
        self.local = threading.local()
        self.barrier = threading.Barrier(world, timeout=10)
        self.slots: list[torch.Tensor | None] = [None] * world
        self.calls = 0  # all_gather calls made by rank 0

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def get_world_size(self) -> int:
        return self.world

    def all_gather(self, tensor_list: list[torch.Tensor], tensor: torch.Tensor) -> None:
        rank = self.local.rank
        if rank == 0:
            self.calls += 1
        self.slots[rank] = tensor.clone()
        self.barrier.wait()
        shapes = {(tuple(t.shape), t.dtype) for t in self.slots}
        if len(shapes) != 1:
            raise RuntimeError(f"all_gather: ranks sent different shapes/dtypes {shapes}")
        if len(tensor_list) != self.world:
            raise RuntimeError(f"all_gather: {len(tensor_list)} outputs for world size {self.world}")
        for out, sent in zip(tensor_list, self.slots):
            if (out.shape, out.dtype) != (sent.shape, sent.dtype):
                raise RuntimeError(
                    f"all_gather: output {out.shape} {out.dtype} for {sent.shape} {sent.dtype}"
                )
            out.copy_(sent)
        self.barrier.wait()  # nobody overwrites a slot before every rank has read it


def _run_ranks(monkeypatch, fn, inputs):
    """``fn(*inputs[rank])`` on each rank's thread; returns the results in rank order (re-raises an error)."""
    fake = FakeDist(len(inputs))
    monkeypatch.setattr(selection, "dist", fake)
    results, errors = [None] * len(inputs), []

    def run(rank):
        fake.local.rank = rank
        try:
            results[rank] = fn(*inputs[rank])
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            errors.append(err)
            fake.barrier.abort()  # the other rank must not wait for a call that will not come

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:  # the first real error, not the other rank's broken barrier
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    assert not any(thread.is_alive() for thread in threads), "a rank is still waiting in all_gather"
    return results, fake


@pytest.mark.parametrize(
    "rank0, rank1",
    [
        ([0.1, 0.25], [0.75]),  # rank 0 has more: rank 1's score is padded to 2, its padding cut off again
        ([0.5], [0.1, 0.2, 0.3]),  # rank 1 has more
        ([], [1.5, 2.5]),  # rank 0 has nothing: it still receives rank 1's scores
        ([0.3], []),  # max size 1: still gathered (only a max of 0 skips the exchange)
    ],
)
def test_gather_concatenates_the_ranks_in_order_without_padding(monkeypatch, rank0, rank1):
    # float64 scores: a padding buffer of the default dtype (float32) would round 0.1 and change the dtype
    inputs = [(torch.tensor(rank0, dtype=torch.float64),), (torch.tensor(rank1, dtype=torch.float64),)]
    results, fake = _run_ranks(monkeypatch, _gather_valid_scores, inputs)
    for got in results:  # every rank gets the same concatenation, rank 0's scores first
        assert got.dtype == torch.float64
        assert got.tolist() == rank0 + rank1
    assert fake.calls == 2  # the counts, then the padded scores


def test_gather_with_no_score_on_any_rank_returns_the_empty_local(monkeypatch):
    inputs = [(torch.zeros(0, dtype=torch.float64),), (torch.zeros(0, dtype=torch.float64),)]
    results, fake = _run_ranks(monkeypatch, _gather_valid_scores, inputs)
    for got, (local,) in zip(results, inputs):
        assert got is local  # returned as it is: nothing to exchange
    assert fake.calls == 1  # only the counts


def test_gather_on_three_ranks(monkeypatch):
    inputs = [(torch.tensor([3.0]),), (torch.tensor([]),), (torch.tensor([1.0, 2.0]),)]
    results, _ = _run_ranks(monkeypatch, _gather_valid_scores, inputs)
    assert [r.tolist() for r in results] == [[3.0, 1.0, 2.0]] * 3


def test_batch_scope_threshold_comes_from_every_rank(monkeypatch):
    # Rank 0 valid scores 9, 1, 4 (the 4th position is padding), rank 1 valid 8, 7 (+ two padded positions).
    # All 5 valid scores 9, 8, 7, 4, 1; k = ceil(0.4 * 5) = 2 -> threshold 8: rank 0 keeps 9, rank 1 keeps 8.
    # Alone, rank 0 would keep ceil(0.4 * 3) = 2 of its own (9 and 4): the gather is what changes the answer.
    inputs = [
        (torch.tensor([[9.0, 1.0], [4.0, 100.0]]), torch.tensor([[True, True], [True, False]])),
        (torch.tensor([[8.0, 100.0], [7.0, 100.0]]), torch.tensor([[True, False], [True, False]])),
    ]
    results, _ = _run_ranks(monkeypatch, lambda s, v: top_fraction_mask(s, v, 0.4, scope="batch"), inputs)
    assert results[0].tolist() == [[True, False], [False, False]]
    assert results[1].tolist() == [[True, False], [False, False]]
