"""The TSDiff denoiser: S4D kernel against its recurrence, the two-sided convolution
against a direct sum, shapes."""

from __future__ import annotations

import torch

from sciogen.timeseries.network import S4DKernel, TSDiffDenoiser, bidirectional_convolution


def test_s4d_kernel_equals_the_zero_order_hold_recurrence():
    torch.manual_seed(0)
    kernel = S4DKernel(channels=3, state=8, kernels=1)
    length = 25
    k = kernel(length)[0].double()  # (H, L)
    u = torch.randn(3, length, dtype=torch.float64)
    dt = kernel.log_dt.exp()[0].double()[:, None]
    a = torch.complex(-kernel.log_a_real.exp()[0].double(), kernel.a_imag[0].double())
    c = torch.view_as_complex(kernel.c[0].double().contiguous())
    da = torch.exp(a * dt)
    db = (da - 1.0) / a
    state = torch.zeros(3, 4, dtype=torch.complex128)
    ys = []
    for i in range(length):  # s_i = exp(dt A) s_{i-1} + (exp(dt A) - 1) / A u_i,  y_i = 2 Re(C s_i)
        state = da * state + db * u[:, i : i + 1]
        ys.append(2.0 * (c * state).sum(-1).real)
    recurrence = torch.stack(ys, dim=-1)
    conv = torch.stack([sum(k[:, j] * u[:, i - j] for j in range(i + 1)) for i in range(length)], dim=-1)
    torch.testing.assert_close(conv, recurrence, rtol=1e-4, atol=1e-6)


def test_bidirectional_convolution_equals_the_direct_sum():
    torch.manual_seed(1)
    b, length, h = 2, 9, 3
    u = torch.randn(b, length, h, dtype=torch.float64)
    k0, k1 = torch.randn(h, length, dtype=torch.float64), torch.randn(h, length, dtype=torch.float64)
    direct = torch.zeros(b, length, h, dtype=torch.float64)
    for i in range(length):
        for j in range(length):
            direct[:, i] += (k0[:, i - j] if j <= i else k1[:, j - i - 1]) * u[:, j]
    torch.testing.assert_close(bidirectional_convolution(u, k0, k1), direct)


def test_denoiser_shapes_any_length_and_time_dependence():
    torch.manual_seed(0)
    model = TSDiffDenoiser(channels=4, hidden=16, blocks=2, state=8, num_steps=100)
    for length in (7, 50):
        x = torch.randn(3, length, 4)
        assert model(x, torch.full((3,), 0.5)).shape == (3, length, 4)
    x = torch.randn(2, 20, 4)
    assert not torch.allclose(model(x, torch.full((2,), 0.01)), model(x, torch.full((2,), 1.0)))
    # the output layer sees the whole sequence: changing the last step moves the first output (bidirectional)
    y = x.clone()
    y[:, -1] += 1.0
    assert not torch.allclose(model(x, torch.full((2,), 0.5))[:, 0], model(y, torch.full((2,), 0.5))[:, 0])
