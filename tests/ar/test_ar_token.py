"""Per-token diffusion head (TokenAR): no leakage, cache exactness, annealing, learning."""

import pytest
import torch

from sciogen.ar import StepAnnealing, TokenAR, TokenARConfig, sample_token
from sciogen.ar.testing import MixtureChain, fit

from ..helpers import energy_distance, energy_test_pvalue

TASK = MixtureChain()



def _model(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=6, value_dim=2, value_token=1, max_len=32, dim=32, depth=2, heads=4, head_width=32, head_depth=2)
    cfg.update(kw)
    model = TokenAR(TokenARConfig(**cfg)).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # leave the zero init so outputs depend on every input
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def _sequence(b=3, n=12, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 6, (b, n), generator=g)
    tokens[:, 0] = 0
    tokens[:, 3::3] = 1  # some value positions
    values = torch.randn(b, n, 2, generator=g, dtype=dtype)
    return tokens, values


# -- configuration --------------------------------------------------------------------
def test_config_validation_and_round_trip():
    cfg = TokenARConfig(vocab_size=5, value_dim=3, value_token=2, eos_token=4)
    assert TokenARConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="value_token"):
        TokenARConfig(vocab_size=3, value_token=3)
    with pytest.raises(ValueError, match="must differ"):
        TokenARConfig(vocab_size=3, value_token=1, eos_token=1)
    with pytest.raises(ValueError, match="prediction must be one of .*; got 'score'"):
        TokenARConfig(vocab_size=3, prediction="score")
    with pytest.raises(ValueError, match="schedule must be one of"):
        TokenARConfig(vocab_size=3, schedule="sigmoid")


def test_input_errors():
    model = _model()
    tokens, values = _sequence()
    with pytest.raises(ValueError, match="pass their values"):
        model(tokens)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 40, dtype=torch.long))
    with pytest.raises(ValueError, match="cache holds"):
        model(tokens[:, :2], values[:, :2], cache=model.transformer.new_cache(), start=3)


# -- no leakage -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("what", ["token", "value"])
def test_later_inputs_leave_earlier_outputs_unchanged(mode, what):
    model = _model().train(mode == "train")
    tokens, values = _sequence()
    j = 6  # a value position
    t2, v2 = tokens.clone(), values.clone()
    if what == "token":
        t2[:, j] = 4
    else:
        v2[:, j] += 3.0
    h1, h2 = model(tokens, values), model(t2, v2)
    assert torch.equal(h1[:, :j], h2[:, :j])
    assert (h1[:, j:] - h2[:, j:]).abs().max() > 1e-4  # the change is visible from j on
    l1, l2 = model.logits(h1), model.logits(h2)
    assert torch.equal(l1[:, :j], l2[:, :j])


def test_cached_forward_equals_full_forward():
    model = _model()
    tokens, values = _sequence()
    full = model(tokens, values)
    cache = model.transformer.new_cache(capacity=4)
    parts = [model(tokens[:, :5], values[:, :5], cache=cache)]
    for i in range(5, 12):
        parts.append(model(tokens[:, i : i + 1], values[:, i : i + 1], cache=cache, start=i))
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-10, rtol=0)


# -- generation -----------------------------------------------------------------------
@pytest.mark.parametrize("solver, steps", [("ddim", 6), ("dpm++2m", StepAnnealing(8, 2)), ("ddpm", 5)])
def test_kv_cached_generation_equals_recomputing_the_prefix(solver, steps):
    model = _model(eos_token=5)
    tokens, values = _sequence()
    kw = dict(length=20, solver=solver, steps=steps, temperature=0.9)
    a = model.generate(tokens[:, :4], values[:, :4], generator=torch.Generator().manual_seed(7), use_cache=True, **kw)
    b = model.generate(tokens[:, :4], values[:, :4], generator=torch.Generator().manual_seed(7), use_cache=False, **kw)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.valid, b.valid)
    torch.testing.assert_close(a.values, b.values, atol=1e-9, rtol=0)
    assert a.is_value(1).any()  # values were generated, not only tokens
    assert torch.equal(a.tokens[:, :4], tokens[:, :4])


def test_generation_ends_at_eos_and_marks_the_rest_invalid():
    model = _model(eos_token=5)
    force_eos = {7: 0, 9: 1, 10: 2}  # position -> row that must stop there

    def processor(i, logits, prefix):
        logits = logits.clone()
        logits[:, 5] = -1e9
        if i in force_eos:
            logits[force_eos[i], 5] = 1e9
        return logits

    out = model.generate(torch.zeros(3, 1, dtype=torch.long), length=16, steps=3, logits_processor=processor,
                         generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (3, 11)  # stops once every row has ended
    for pos, row in force_eos.items():
        assert out.tokens[row, pos] == 5
        assert out.valid[row, : pos + 1].all() and not out.valid[row, pos + 1 :].any()
        assert (out.tokens[row, pos:] == 5).all()


def test_generation_prefix_does_not_depend_on_later_choices():
    """Forcing a different token from position j on leaves everything before j unchanged."""
    model = _model()
    j = 8

    def force(token):
        def processor(i, logits, prefix):
            if i >= j:
                logits = torch.full_like(logits, -1e9)
                logits[:, token] = 0.0
            return logits
        return processor

    kw = dict(length=14, steps=4, temperature=1.0)
    a = model.generate(torch.zeros(4, 1, dtype=torch.long), logits_processor=force(1), generator=torch.Generator().manual_seed(3), **kw)
    b = model.generate(torch.zeros(4, 1, dtype=torch.long), logits_processor=force(2), generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a.tokens[:, :j], b.tokens[:, :j]) and torch.equal(a.values[:, :j], b.values[:, :j])
    assert (a.tokens[:, j:] == 1).all() and (b.tokens[:, j:] == 2).all()


def test_step_annealing_spends_fewer_solver_steps_on_later_positions():
    model = _model()
    calls = []
    model.head.register_forward_hook(lambda mod, args, out: calls.append(len(calls)))
    per_position = []

    def processor(i, logits, prefix):  # every position is a value
        per_position.append(len(calls))
        logits = torch.full_like(logits, -1e9)
        logits[:, 1] = 0.0
        return logits

    anneal = StepAnnealing(upper=12, lower=2, kind="linear")
    model.generate(torch.zeros(2, 1, dtype=torch.long), length=7, solver="ddim", steps=anneal, logits_processor=processor,
                   generator=torch.Generator().manual_seed(0))
    per_position.append(len(calls))
    nfe = [b - a for a, b in zip(per_position[:-1], per_position[1:])]
    assert nfe == [anneal.steps(i, 6) for i in range(6)] == [12, 10, 8, 6, 4, 2]


def test_step_annealing_schedules():
    assert [StepAnnealing(50, 5).steps(i, 10) for i in (0, 9)] == [50, 5]
    cos = [StepAnnealing(50, 5, "cosine").steps(i, 11) for i in range(11)]
    assert cos[0] == 50 and cos[-1] == 5 and cos == sorted(cos, reverse=True)
    assert StepAnnealing(20, 20).steps(3, 4) == 20 and StepAnnealing(7, 1, "constant").steps(5, 6) == 7
    with pytest.raises(ValueError, match="lower <= upper"):
        StepAnnealing(5, 10)
    with pytest.raises(ValueError, match="unknown annealing kind"):
        StepAnnealing(kind="exp")


def test_value_temperature():
    model = _model()
    h = torch.randn(1, 32, dtype=torch.float64).expand(400, 32)
    spread = [
        model.sample_values(h, solver="ddim", steps=8, temperature=tau, generator=torch.Generator().manual_seed(0)).std(0).sum()
        for tau in (1.0, 0.5, 0.0)
    ]
    assert spread[0] > spread[1] > spread[2] and spread[2] < 1e-9  # temperature 0 + DDIM: one point


def test_sample_token():
    logits = torch.tensor([[0.0, 3.0, 0.0]]).expand(2000, 3)
    assert (sample_token(logits, 0.0) == 1).all()
    g = torch.Generator().manual_seed(0)
    freq = torch.bincount(sample_token(logits, 1.0, g), minlength=3) / 2000
    expected = torch.softmax(torch.tensor([0.0, 3.0, 0.0]), 0)
    torch.testing.assert_close(freq, expected, atol=0.03, rtol=0)
    hot = torch.bincount(sample_token(logits, 3.0, g), minlength=3) / 2000
    assert hot[1] < freq[1] - 0.2  # higher temperature flattens


# -- loss -----------------------------------------------------------------------------
def test_loss_masks_and_repeats():
    model = _model(diffusion_repeats=3).train()
    tokens, values = _sequence()
    out = model.loss(tokens, values, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "token_nll", "value_loss"} and out["loss"].requires_grad
    out["loss"].backward()
    assert model.head.final.linear.weight.grad.abs().sum() > 0 and model.token_embed.weight.grad.abs().sum() > 0
    # padding: changing padded positions changes nothing
    valid = torch.ones_like(tokens, dtype=torch.bool)
    valid[:, 9:] = False
    t2, v2 = tokens.clone(), values.clone()
    t2[:, 9:], v2[:, 9:] = 2, 5.0
    a = model.loss(tokens, values, valid=valid, generator=torch.Generator().manual_seed(0))
    b = model.loss(t2, v2, valid=valid, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a["loss"], b["loss"])
    # a value mask leaves out masked components: change component 1 of the last value
    tokens[:, -1] = 1
    mask = torch.zeros_like(values, dtype=torch.bool)
    mask[..., 0] = True
    v3 = values.clone()
    v3[:, -1, 1] += 10.0
    losses = [
        model.loss(tokens, v, value_mask=m, generator=torch.Generator().manual_seed(0))["value_loss"]
        for v, m in ((values, mask), (v3, mask), (values, None), (v3, None))
    ]
    torch.testing.assert_close(losses[0], losses[1], atol=0, rtol=0)
    assert abs(float(losses[2] - losses[3])) > 1e-3


# -- learning -------------------------------------------------------------------------
def _train_chain(steps, seed=0, length=3):
    task = MixtureChain(length=length)
    torch.manual_seed(seed)
    cfg = TokenARConfig(vocab_size=task.vocab_size, value_dim=2, value_token=task.VALUE, max_len=task.seq_len,
                        dim=64, depth=2, heads=4, head_width=64, head_depth=3, diffusion_repeats=4)
    model = TokenAR(cfg)
    untrained = TokenAR(cfg).eval()

    def batch(g):
        tokens, values = task.sample(128, g)
        return {"tokens": tokens, "values": values}

    if steps:
        fit(model, batch, steps, lr=2e-3, seed=seed)
    return task, model.eval(), untrained


def _conditional_pvalue(model, task, prefix, n=400, seed=0, solver="ddim", steps=20):
    """p-value of the energy test between model draws of the next value after the values
    ``prefix`` (list of (2,) tensors) and exact draws of x_{k+1} | x_k = prefix[-1]."""
    g = torch.Generator().manual_seed(seed)
    k = len(prefix)
    tokens = torch.tensor([[task.BOS] + [task.VALUE] * k]).expand(n, k + 1)
    values = torch.zeros(n, k + 1, 2)
    values[:, 1:] = torch.stack(prefix)
    with torch.no_grad():
        h = model(tokens, values)[:, -1]
    x = model.sample_values(h, solver=solver, steps=steps, generator=g)
    truth = task.conditional(prefix[-1]).sample(n, g).float()
    return energy_test_pvalue(x, truth, permutations=200, seed=seed), energy_distance(x, truth)


# in-distribution prefixes: x_1 near a mode of its law; (x_1, x_2) with x_2 at a component mean
PREFIXES = [[torch.tensor([0.4, 1.2])], [torch.tensor([-0.5, -1.0]), torch.tensor([0.66, 0.46])]]


STEPS = 500


def test_learns_a_conditional_mixture_and_the_token_that_follows():
    """x_{k+1} | x_k is a two-component mixture whose means rotate with x_k. After a short
    CPU run the model's draws of the next value pass the energy two-sample test against
    exact draws (p > 0.01) after two prefixes (x_1; x_1, x_2); the untrained model and
    the exact law after a *different* value fail it (p < 0.01), so the test has power.
    The end token (sign of x_T) is predicted with > 95 % accuracy (chance: 50 %)."""
    task, model, untrained = _train_chain(steps=STEPS)
    for prefix in PREFIXES:
        p, ed = _conditional_pvalue(model, task, prefix)
        assert p > 0.01, f"trained model fails the energy test after {[v.tolist() for v in prefix]}: p={p:.3f}, ED={ed:.4f}"
        p_untrained, _ = _conditional_pvalue(untrained, task, prefix)
        assert p_untrained < 0.01
    # power: the exact conditional after another value is rejected
    g = torch.Generator().manual_seed(5)
    a = task.conditional(torch.tensor([0.4, 1.2])).sample(400, g)
    b = task.conditional(torch.tensor([0.0, 0.0])).sample(400, g)
    assert energy_test_pvalue(a, b, permutations=200) < 0.01
    tokens, values = task.sample(1000, torch.Generator().manual_seed(9))
    with torch.no_grad():
        pred = model.logits(model(tokens[:, :-1], values[:, :-1])[:, -1]).argmax(-1)
        chance = untrained.logits(untrained(tokens[:, :-1], values[:, :-1])[:, -1]).argmax(-1)
    assert (pred == tokens[:, -1]).float().mean() > 0.95
    assert (chance == tokens[:, -1]).float().mean() < 0.7


@pytest.mark.slow
def test_generated_sequences_match_the_joint_law():
    """Longer run: whole sequences [BOS, x_1..x_4, S] generated with the KV cache and DiSA
    annealing match exact sequences (energy test on the joint (x_1..x_4), 8-D), and the
    end token agrees with the generated x_4."""
    task, model, _ = _train_chain(steps=1500, length=4)
    n = 500
    g = torch.Generator().manual_seed(11)
    out = model.generate(torch.zeros(n, 1, dtype=torch.long), length=task.seq_len, solver="dpm++2m",
                         steps=StepAnnealing(20, 8), generator=g)
    assert (out.tokens[:, 1:-1] == task.VALUE).float().mean() > 0.99
    x = out.values[:, 1:-1].reshape(n, -1)
    truth = task.sample_values(n, g).reshape(n, -1).float()
    p = energy_test_pvalue(x, truth, permutations=200)
    assert p > 0.01, f"joint energy test p={p:.3f}"
    agree = (out.tokens[:, -1] == task.end_token(out.values[:, -2])).float().mean()
    assert agree > 0.95


def test_toy_chain_conditionals_match_its_sampler():
    """The exact laws the learning tests compare against agree with the data sampler."""
    from sciogen.ar.testing import BlockMixtureChain

    g = torch.Generator().manual_seed(0)
    prev = torch.tensor([0.3, -0.8])
    draws = TASK.sample_values(600, g, first=prev)[:, 0]
    assert energy_test_pvalue(draws, TASK.conditional(prev).sample(600, g), permutations=100) > 0.01
    blocks = BlockMixtureChain()
    first = torch.tensor([0.5, -1.0, 0.2])
    draws = blocks.sample_blocks(600, g, first=first)[:, 0]
    assert energy_test_pvalue(draws, blocks.conditional(first).sample(600, g), permutations=100) > 0.01
    tokens, values = TASK.sample(50, g)
    assert (tokens[:, -1] == TASK.end_token(values[:, -2])).all()
