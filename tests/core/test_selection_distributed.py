"""`batch` scope across 2 gloo processes: every rank must use the threshold of the concatenated batch."""

import datetime
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from videoktr.core.selection import key_token_mask, top_fraction_mask

PAD = 100.0  # padding scores are huge: selecting one would show up immediately


def _rank_inputs(rank: int, case: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 4) scores and valid per rank; different numbers of valid tokens on each rank."""
    if case == "nothing":  # no valid token on any rank (e.g. every completion masked as truncated)
        return torch.full((2, 4), PAD), torch.zeros(2, 4, dtype=torch.bool)
    if rank == 0:  # 7 valid tokens: 9, 1, 4, 2 | 7, 0.5, 3
        scores = torch.tensor([[9.0, 1.0, 4.0, 2.0], [7.0, 0.5, 3.0, PAD]])
        valid = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    elif case == "uneven":  # 3 valid tokens: 8, 7, 0
        scores = torch.tensor([[8.0, 7.0, PAD, PAD], [0.0, PAD, PAD, PAD]])
        valid = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    else:  # "empty": rank 1 has no valid token at all
        scores = torch.full((2, 4), PAD)
        valid = torch.zeros(2, 4, dtype=torch.bool)
    return scores, valid


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        results = {}
        for case in ("uneven", "empty", "nothing"):
            scores, valid = _rank_inputs(rank, case)
            results[case] = top_fraction_mask(scores, valid, 0.3, scope="batch")
        scores, valid = _rank_inputs(rank, "uneven")
        mask, _ = key_token_mask({"e": scores, "v": -scores}, valid, {"e": 0.3, "v": 0.1}, scope="batch")
        results["key"] = mask
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _single_process(case: str) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_rank_inputs(rank, case) for rank in (0, 1)]
    scores = torch.cat([p[0] for p in parts])
    valid = torch.cat([p[1] for p in parts])
    return top_fraction_mask(scores, valid, 0.3, scope="batch"), valid


def _import_root() -> str:
    """The sys.path entry this module was imported from, so that spawned children can unpickle ``_worker``."""
    return str(Path(__file__).resolve().parents[len(__name__.split(".")) - 1])


@pytest.mark.distributed
def test_batch_scope_on_two_gloo_ranks_matches_the_concatenated_batch(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(_import_root())  # spawn copies sys.path to the children
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]

    # "uneven": all 10 valid scores 9, 8, 7, 7, 4, 3, 2, 1, 0.5, 0; k = ceil(0.3 * 10) = 3 -> threshold 7,
    # and both 7s are kept (a tie across ranks): rank 0 keeps 9 and 7, rank 1 keeps 8 and 7.
    assert got[0]["uneven"].tolist() == [[True, False, False, False], [True, False, False, False]]
    assert got[1]["uneven"].tolist() == [[True, True, False, False], [False, False, False, False]]
    # Rank 0 alone would have used k = ceil(0.3 * 7) = 3 -> threshold 4 and kept 4 too.
    alone = top_fraction_mask(*_rank_inputs(0, "uneven"), 0.3, scope="batch")
    assert alone[0, 2] and not got[0]["uneven"][0, 2]

    for case in ("uneven", "empty", "nothing"):
        expected, valid = _single_process(case)
        assert torch.equal(torch.cat([got[0][case], got[1][case]]), expected)
        assert not (expected & ~valid).any()
    # "empty": rank 1 contributes nothing; 7 valid scores, k = 3 -> 9, 7, 4 on rank 0
    assert got[0]["empty"].tolist() == [[True, False, True, False], [True, False, False, False]]
    assert not got[1]["empty"].any()
    # "nothing": no eligible token on any rank selects nothing (it used to raise on an empty tensor)
    assert not got[0]["nothing"].any() and not got[1]["nothing"].any()

    # key_token_mask passes the scope through: "v" (= -scores, fraction 0.1 -> k = 1) adds the lowest score 0
    # (rank 1, row 1) to the union of the "e" selection above.
    assert got[1]["key"].tolist() == [[True, True, False, False], [True, False, False, False]]
    assert torch.equal(got[0]["key"], got[0]["uneven"])
