"""AttributeState: the shared state_dict/load_state_dict of trainers restores modules, optimisers and RNGs."""

import io

import torch

from napari_medgen.training.checkpoint import AttributeState


class _Toy(AttributeState):
    state_attrs = ("net", "opt", "gen")

    def __init__(self, seed: int):
        torch.manual_seed(seed)
        self.net = torch.nn.Linear(3, 2)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=0.1)
        self.gen = torch.Generator().manual_seed(seed)

    def step(self) -> torch.Tensor:
        x = torch.randn(4, 3, generator=self.gen)
        loss = self.net(x).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return self.net.weight.detach().clone()


def test_restored_trainer_continues_exactly():
    a = _Toy(0)
    a.step()
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)  # as a checkpoint stores it (state_dict holds live tensors)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert set(saved) == {"net", "opt", "gen"}
    expected = [a.step() for _ in range(3)]
    b = _Toy(1)  # different weights, optimiser moments and RNG until restored
    b.load_state_dict(saved)
    assert all(torch.equal(e, b.step()) for e in expected)
