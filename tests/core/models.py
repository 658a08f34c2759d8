"""Tiny models covering every supported layer type (shared by the core tests)."""

import torch
from torch import nn


class ConvNet(nn.Module):
    def __init__(self, dim=2, bias=True, bn=True):
        super().__init__()
        Conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
        BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dim]
        self.c1 = Conv(2, 4, 3, padding=1, bias=bias)
        self.b1 = BN(4) if bn else nn.Identity()
        self.c2 = Conv(4, 6, 3, padding=1, bias=bias, groups=2)
        self.b2 = BN(6) if bn else nn.Identity()
        self.c3 = Conv(6, 5, 1, bias=bias)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        x = self.c3(x)
        return self.fc(x.flatten(2).mean(-1))


class DeconvNet(nn.Module):
    def __init__(self, dim=2):
        super().__init__()
        Conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
        Deconv = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dim]
        self.c1 = Conv(2, 4, 3, padding=1)
        self.d1 = Deconv(4, 6, 2, stride=2, groups=2)
        self.d2 = Deconv(6, 3, 3, padding=1, bias=False)

    def forward(self, x):
        return self.d2(torch.tanh(self.d1(torch.tanh(self.c1(x)))))


class RecurrentNet(nn.Module):
    def __init__(self, cell="lstm", bidirectional=True):
        super().__init__()
        RNN = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.inp = nn.Linear(3, 5)
        self.rnn = RNN(5, 4, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.out = nn.Linear(4 * (2 if bidirectional else 1), 2)

    def forward(self, x):
        h, _ = self.rnn(torch.tanh(self.inp(x)))
        return self.out(h[:, -1])


class AttentionNet(nn.Module):
    def __init__(self, same_dim=True):
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.mem = nn.Linear(8, 8 if same_dim else 6)
        kw = {} if same_dim else {"kdim": 6, "vdim": 6}
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True, **kw)
        self.out = nn.Linear(8, 3)

    def forward(self, tokens):
        e = self.emb(tokens)
        m = self.mem(e)
        a, _ = self.attn(e, m, m)
        return self.out(a.mean(1))


class EmbedNet(nn.Module):
    """First layer Linear so the Embedding is masked too (it is not first in forward order)."""

    def __init__(self):
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.emb = nn.Embedding(7, 6)
        self.out = nn.Linear(6 + 4, 2)

    def forward(self, tokens, feats):
        return self.out(torch.cat([self.emb(tokens).mean(1), self.pre(feats)], -1))


class OutOfOrder(nn.Module):
    """Modules registered in the reverse of their forward order."""

    def __init__(self):
        super().__init__()
        self.last = nn.Linear(4, 2)
        self.middle = nn.Linear(4, 4)
        self.first = nn.Linear(3, 4)

    def forward(self, x):
        return self.last(torch.relu(self.middle(torch.relu(self.first(x)))))


def cases():
    """(name, model factory, example inputs factory)."""
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    return [
        ("conv1d", lambda: ConvNet(1), lambda: torch.randn(4, 2, 9, generator=g())),
        ("conv2d", lambda: ConvNet(2), lambda: torch.randn(4, 2, 6, 6, generator=g())),
        ("conv3d", lambda: ConvNet(3), lambda: torch.randn(4, 2, 4, 4, 4, generator=g())),
        ("conv2d-nobias-nobn", lambda: ConvNet(2, bias=False, bn=False), lambda: torch.randn(4, 2, 6, 6, generator=g())),
        ("deconv1d", lambda: DeconvNet(1), lambda: torch.randn(2, 2, 5, generator=g())),
        ("deconv2d", lambda: DeconvNet(2), lambda: torch.randn(2, 2, 5, 5, generator=g())),
        ("deconv3d", lambda: DeconvNet(3), lambda: torch.randn(2, 2, 3, 3, 3, generator=g())),
        ("lstm", lambda: RecurrentNet("lstm"), lambda: torch.randn(3, 5, 3, generator=g())),
        ("gru", lambda: RecurrentNet("gru"), lambda: torch.randn(3, 5, 3, generator=g())),
        ("rnn", lambda: RecurrentNet("rnn", False), lambda: torch.randn(3, 5, 3, generator=g())),
        ("mha", lambda: AttentionNet(True), lambda: torch.randint(11, (3, 5), generator=g())),
        ("mha-kdim", lambda: AttentionNet(False), lambda: torch.randint(11, (3, 5), generator=g())),
        ("embedding", EmbedNet, lambda: (torch.randint(7, (3, 5), generator=g()), torch.randn(3, 4, generator=g()))),
    ]


def randomize_bn(model, seed=0):
    """Give BatchNorm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model
