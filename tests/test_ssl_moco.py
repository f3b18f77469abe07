"""MoCo v2 module: queue ring buffer, momentum (EMA) update, loss wiring."""

import copy

import torch
from torch import nn

from noisevision.ssl.losses import infonce_loss
from noisevision.ssl.moco import MoCo


class TinyBackbone(nn.Module):
    feature_dim = 8

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.net(x)


def _moco(**kw):
    torch.manual_seed(0)
    return MoCo(TinyBackbone(), dim=4, queue_size=10, **kw)


def test_queue_ring_buffer():
    m = _moco()
    keys = [torch.nn.functional.normalize(torch.randn(4, 4), dim=1) for _ in range(3)]
    before = m.queue.clone()
    m.enqueue(keys[0])
    assert torch.equal(m.queue[:, :4], keys[0].T) and torch.equal(m.queue[:, 4:], before[:, 4:])
    assert int(m.queue_ptr) == 4
    m.enqueue(keys[1])
    m.enqueue(keys[2])  # columns 8, 9, then wraps to 0, 1
    assert int(m.queue_ptr) == 2
    assert torch.equal(m.queue[:, 8:10], keys[2][:2].T)
    assert torch.equal(m.queue[:, 0:2], keys[2][2:].T)
    assert torch.equal(m.queue[:, 4:8], keys[1].T)


def test_momentum_update_formula():
    m = _moco(momentum=0.9)
    with torch.no_grad():
        for p in m.encoder_q.parameters():
            p.add_(torch.randn_like(p))
    q = [p.clone() for p in m.encoder_q.parameters()]
    k = [p.clone() for p in m.encoder_k.parameters()]
    m.momentum_update()
    for pq, pk, new in zip(q, k, m.encoder_k.parameters(), strict=True):
        assert torch.allclose(new, 0.9 * pk + 0.1 * pq, atol=1e-6)
        assert not new.requires_grad


def test_forward_loss_and_queue_side_effect():
    m = _moco(momentum=0.5, temperature=0.3)
    im_q, im_k = torch.rand(4, 3, 12, 12), torch.rand(4, 3, 12, 12)
    ref = copy.deepcopy(m)
    loss, logits = m(im_q, im_k)
    # Recompute by hand from the copy: EMA first, then keys, then InfoNCE on the old queue.
    ref.momentum_update()
    q = ref.encoder_q(im_q)
    with torch.no_grad():
        k = ref.encoder_k(im_k)
    expect, _ = infonce_loss(q, k, ref.queue, 0.3)
    assert torch.allclose(loss, expect, atol=1e-5)
    assert logits.shape == (4, 11)
    assert torch.allclose(m.queue[:, :4], k.T, atol=1e-6) and int(m.queue_ptr) == 4
    loss.backward()
    assert all(p.grad is None for p in m.encoder_k.parameters())
    assert all(p.grad is not None for p in m.encoder_q.parameters())
