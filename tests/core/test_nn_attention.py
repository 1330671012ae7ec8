"""Self-attention with a key/value cache: incremental decoding equals the full pass."""

import pytest
import torch

from sciogen.nn.attention import KVCache, LayerKV, SelfAttention, causal_mask


def _attn(seed=0):
    torch.manual_seed(seed)
    return SelfAttention(16, 4).double().eval()


def _x(b=2, n=9, seed=1):
    return torch.randn(b, n, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("chunks", [[1] * 9, [4, 1, 3, 1], [9]])
def test_cached_causal_attention_equals_the_full_pass(chunks):
    attn, x = _attn(), _x()
    full = attn(x, causal=True)
    cache = LayerKV(capacity=2)  # forces the buffer to grow
    outs, start = [], 0
    for n in chunks:
        outs.append(attn(x[:, start : start + n], causal=True, cache=cache))
        start += n
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-12, rtol=0)
    assert cache.length == 9


def test_uncommitted_tokens_are_not_kept():
    attn, x = _attn(), _x()
    cache = LayerKV()
    attn(x[:, :5], causal=True, cache=cache)
    probe = attn(x[:, 5:7], cache=cache, commit=False)
    assert cache.length == 5
    # the probe saw the 5 cached positions and both of its own tokens (no mask)
    mask = torch.ones(7, 7, dtype=torch.bool)
    mask[:5, 5:] = False
    mask[:5, :5] = causal_mask(5, 5)
    torch.testing.assert_close(probe, attn(x[:, :7], mask=mask)[:, 5:], atol=1e-12, rtol=0)
    # the next committed token overwrites the probe's slots
    nxt = attn(x[:, 5:6], causal=True, cache=cache)
    torch.testing.assert_close(nxt, attn(x[:, :6], causal=True)[:, 5:], atol=1e-12, rtol=0)


def test_causal_mask_matches_sdpa_is_causal():
    assert torch.equal(causal_mask(4, 4), torch.ones(4, 4, dtype=torch.bool).tril())
    # the last 2 queries of 5 keys see the 3 earlier keys and themselves causally
    assert causal_mask(2, 5).int().tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def test_later_tokens_do_not_change_earlier_outputs():
    attn, x = _attn(), _x()
    y = x.clone()
    y[:, 6:] += 1.0
    a, b = attn(x, causal=True), attn(y, causal=True)
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=0, rtol=0)
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-3


def test_kv_cache_crop_and_errors():
    attn, x = _attn(), _x()
    cache = KVCache(1)
    attn(x[:, :6], causal=True, cache=cache[0])
    assert len(cache) == 6
    cache.crop(3)
    out = attn(x[:, 3:4], causal=True, cache=cache[0])
    torch.testing.assert_close(out, attn(x[:, :4], causal=True)[:, 3:], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="crop"):
        cache.crop(10)
    with pytest.raises(ValueError, match="one cache per batch"):
        attn(x[:1, 4:5], causal=True, cache=cache[0])
    with pytest.raises(ValueError, match="either a mask or causal"):
        attn(x, causal=True, mask=torch.ones(9, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention(10, 4)
