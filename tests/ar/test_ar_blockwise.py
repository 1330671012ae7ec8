"""Block-wise autoregressive diffusion (BlockAR): mask, no leakage, cache exactness, learning."""

import pytest
import torch

from sciogen.ar import BlockAR, BlockARConfig, BlockSpec, FieldConfig, StepAnnealing, block_causal_mask, skip_causal_mask
from sciogen.ar.testing import BlockCategoricalChain, BlockMixtureChain, fit
from sciogen.diffusion import CategoricalProcess

from ..helpers import energy_distance, energy_test_pvalue

BLOCKS = torch.tensor([0, 0, 1, 1, 1, 2, 2])
MIXED = {"x": FieldConfig("gaussian", 2), "c": FieldConfig("categorical", 3), "f": FieldConfig("torus", 3)}



def _model(fields=None, seed=0, cond_dim=2, **kw):
    torch.manual_seed(seed)
    cfg = BlockARConfig(fields=fields or {"x": FieldConfig("gaussian", 2)}, cond_dim=cond_dim, max_len=32, dim=32,
                        depth=2, heads=4, **kw)
    model = BlockAR(cfg).double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # leave the zero init so outputs depend on every input
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def _data(fields, b=3, n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, f in fields.items():
        if f.kind == "categorical":
            out[name] = torch.randint(0, f.dim, (b, n), generator=g)
        elif f.kind == "torus":
            out[name] = torch.rand(b, n, f.dim, generator=g, dtype=torch.float64)
        else:
            out[name] = torch.randn(b, n, f.dim, generator=g, dtype=torch.float64)
    return out


# -- the mask -------------------------------------------------------------------------
def test_block_causal_mask_by_hand():
    m = block_causal_mask(torch.tensor([0, 1, 1])).int()
    #          clean 0 1 1 | noisy 0 1 1
    expected = [[1, 0, 0, 0, 0, 0],  # clean, block 0
                [1, 1, 1, 0, 0, 0],  # clean, block 1
                [1, 1, 1, 0, 0, 0],
                [0, 0, 0, 1, 0, 0],  # noisy block 0: nothing clean, itself
                [1, 0, 0, 0, 1, 1],  # noisy block 1: clean block 0, itself
                [1, 0, 0, 0, 1, 1]]
    assert m.tolist() == expected
    assert block_causal_mask(torch.tensor([0, 1, 1]), noisy=False).int().tolist() == [r[:3] for r in expected[:3]]


def test_block_causal_mask_rules_and_padding():
    bi = torch.tensor([[0, 0, 1, 2, 2, -1], [0, 1, 1, 1, -1, -1]])
    m = block_causal_mask(bi)
    assert m.shape == (2, 12, 12)
    n = 6
    for b in range(2):
        for i in range(n):
            for j in range(n):
                bi_, bj = int(bi[b, i]), int(bi[b, j])
                ok = bi_ >= 0 and bj >= 0
                assert m[b, i, j] == (ok and bj <= bi_) or (i == j and bi_ < 0)
                assert m[b, n + i, j] == (ok and bj < bi_)
                assert m[b, n + i, n + j] == (ok and bj == bi_) or (i == j and bi_ < 0)
                assert not m[b, i, n + j]
    assert m.any(-1).all()  # every row attends somewhere (padding: to itself)
    # generation: a prefix of blocks 0..1 and a noisy block 2
    g = skip_causal_mask(torch.tensor([0, 0, 1]), torch.tensor([2, 2]))
    assert g[3:, :].all()
    with pytest.raises(ValueError, match="integer"):
        block_causal_mask(torch.tensor([0.0, 1.0]))


# -- configuration --------------------------------------------------------------------
def test_config_validation_and_round_trip():
    cfg = BlockARConfig(fields=MIXED, cond_dim=4)
    again = BlockARConfig.from_dict(cfg.to_dict())
    assert again == cfg and isinstance(again.fields["c"], FieldConfig)
    with pytest.raises(ValueError, match="unknown field kind 'graph'"):
        FieldConfig("graph")
    with pytest.raises(ValueError, match="2 classes"):
        FieldConfig("categorical", 1)
    with pytest.raises(ValueError, match="unknown prediction"):
        BlockARConfig(prediction="score")
    with pytest.raises(TypeError, match="must be a GaussianProcess"):
        BlockAR(BlockARConfig(), processes={"x": CategoricalProcess(3)})
    marginal = BlockARConfig(fields={"c": FieldConfig("categorical", 3, "marginal")})
    with pytest.raises(ValueError, match="class frequencies"):
        BlockAR(marginal)
    model = BlockAR(marginal, processes={"c": CategoricalProcess(3, "marginal", [0.5, 0.3, 0.2])})
    assert model.joint.processes["c"].transition == "marginal"
    with pytest.raises(ValueError, match="unknown fields"):
        BlockAR(BlockARConfig(), processes={"y": CategoricalProcess(3)})


# -- no leakage in training -----------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_training_pass_has_no_leakage(mode):
    model = _model(MIXED).train(mode == "train")
    x0 = _data(MIXED)
    x_t = _data(MIXED, seed=1)
    t = torch.rand(3, 7, dtype=torch.float64)
    cond = torch.randn(3, 7, 2, dtype=torch.float64)

    def run(clean=x0, noisy=x_t, tc=cond):
        return model(noisy, t, clean=clean, block_index=BLOCKS, token_cond=tc)

    base = run()
    block1 = BLOCKS == 1
    # change clean block 1: noisy predictions of blocks 0 and 1 (!) stay, block 2 moves
    clean2 = {k: v.clone() for k, v in x0.items()}
    clean2["x"][:, block1] += 1.0
    clean2["c"][:, block1] = (clean2["c"][:, block1] + 1) % 3
    out = run(clean=clean2)
    for name in MIXED:
        assert torch.equal(out[name][:, BLOCKS <= 1], base[name][:, BLOCKS <= 1])
        assert (out[name][:, BLOCKS == 2] - base[name][:, BLOCKS == 2]).abs().max() > 1e-4
    # change noisy block 1: only block 1's predictions move (noisy blocks never see each other)
    noisy2 = {k: v.clone() for k, v in x_t.items()}
    noisy2["f"][:, block1] = (noisy2["f"][:, block1] + 0.3) % 1.0
    out = run(noisy=noisy2)
    for name in MIXED:
        assert torch.equal(out[name][:, ~block1], base[name][:, ~block1])
        assert (out[name][:, block1] - base[name][:, block1]).abs().max() > 1e-4
    # known features of a later block do not leak either
    cond2 = cond.clone()
    cond2[:, BLOCKS == 2] += 1.0
    out = run(tc=cond2)
    assert torch.equal(out["x"][:, BLOCKS <= 1], base["x"][:, BLOCKS <= 1])


def test_loss_ignores_padding_and_trains_every_field():
    model = _model(MIXED).train()
    x0 = _data(MIXED, n=8)
    bi = torch.tensor([[0, 0, 1, 1, 2, 2, 2, 3], [0, 1, 1, 2, 2, 3, -1, -1], [0, 0, 0, 1, 1, 2, 2, -1]])
    cond = torch.randn(3, 8, 2, dtype=torch.float64)
    out = model.loss(x0, bi, token_cond=cond, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "x", "c", "f"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    for name in MIXED:
        assert model.decoders[name].weight.grad.abs().sum() > 0
    x2 = {k: v.clone() for k, v in x0.items()}
    x2["x"][bi < 0] += 5.0
    x2["c"][bi < 0] = (x2["c"][bi < 0] + 1) % 3
    again = model.loss(x2, bi, token_cond=cond, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again["loss"], out["loss"])


# -- generation -----------------------------------------------------------------------
@pytest.mark.parametrize("fields, solver, steps", [
    ({"x": FieldConfig("gaussian", 2)}, "ddim", 5),
    ({"x": FieldConfig("gaussian", 2)}, "dpm++2m", StepAnnealing(8, 3)),
    (MIXED, "ancestral", 4),
])
def test_kv_cached_generation_equals_recomputing_the_prefix(fields, solver, steps):
    model = _model(fields)
    x0 = _data(fields, n=3)
    cond = torch.randn(3, 12, 2, dtype=torch.float64)
    kw = dict(prompt={k: v[:, :3] for k, v in x0.items()}, prompt_blocks=torch.tensor([0, 0, 1]), token_cond=cond,
              solver=solver, steps=steps, temperature=0.8)
    a = model.generate(3, [2, 3, 1, 2], generator=torch.Generator().manual_seed(4), use_cache=True, **kw)
    b = model.generate(3, [2, 3, 1, 2], generator=torch.Generator().manual_seed(4), use_cache=False, **kw)
    assert a.block_index.tolist() == [0, 0, 1, 2, 2, 3, 3, 3, 4, 5, 5]
    for name, f in fields.items():
        assert a.x[name].shape[:2] == (3, 11)
        if f.kind == "categorical":
            assert torch.equal(a.x[name], b.x[name])
        else:
            torch.testing.assert_close(a.x[name], b.x[name], atol=1e-9, rtol=0)
        assert torch.equal(a.x[name][:, :3], x0[name][:, :3].to(a.x[name].dtype))


def test_generated_blocks_depend_on_the_prefix_only():
    model = _model(cond_dim=0)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    a = model.generate(2, [2, 2, 3], generator=g())
    b = model.generate(2, [2, 2, 1, 4], generator=g())  # a different later plan
    torch.testing.assert_close(a.x["x"][:, :4], b.x["x"][:, :4], atol=0, rtol=0)
    prompt = {"x": torch.zeros(2, 2, 2, dtype=torch.float64)}
    c = model.generate(2, [2], prompt=prompt, generator=g())
    d = model.generate(2, [2], prompt={"x": prompt["x"] + 1.0}, generator=g())
    assert (c.x["x"][:, 2:] - d.x["x"][:, 2:]).abs().max() > 1e-4  # ... and on the prefix


def test_a_plan_decides_block_sizes_and_stops():
    model = _model(cond_dim=2)
    seen = []

    def plan(k, prefix):
        seen.append((k, prefix["x"].shape[1]))
        if k == 3:
            return None
        return BlockSpec(k + 1, token_cond=torch.zeros(2, k + 1, 2, dtype=torch.float64))

    out = model.generate(2, plan, steps=3, generator=torch.Generator().manual_seed(0))
    assert seen == [(0, 0), (1, 1), (2, 3), (3, 6)]
    assert out.block_index.tolist() == [0, 1, 1, 2, 2, 2]
    cond = torch.zeros(2, 8, 2, dtype=torch.float64)
    assert model.generate(2, [2, 0, 3], token_cond=cond, steps=2).block_index.tolist() == [0, 0]  # 0 stops
    with pytest.raises(ValueError, match="non-negative"):
        BlockSpec(-1)
    with pytest.raises(ValueError, match="needs max_blocks"):
        model.generate(2, plan, steps=StepAnnealing(4, 2))
    with pytest.raises(ValueError, match="use solver='ancestral'"):
        _model(MIXED).generate(2, [2], solver="ddim", token_cond=torch.zeros(2, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_len"):
        model.generate(2, [40], token_cond=torch.zeros(2, 40, 2, dtype=torch.float64))


# -- learning -------------------------------------------------------------------------
def _fit_blocks(task, fields, steps, seed=0):
    torch.manual_seed(seed)
    cfg = BlockARConfig(fields=fields, max_len=16, dim=64, depth=2, heads=4)
    model, untrained = BlockAR(cfg), BlockAR(cfg).eval()
    fit(model, lambda g: {"x0": task.sample(128, g), "block_index": task.block_index}, steps, lr=2e-3, seed=seed)
    return model.eval(), untrained


def _next_block_pvalue(model, task, first, n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    prompt = {"x": first.float().expand(n, task.block_size)[..., None]}
    out = model.generate(n, [task.block_size], prompt=prompt, solver="ddim", steps=20, generator=g)
    x = out.x["x"][:, task.block_size:, 0]
    truth = task.conditional(first).sample(n, g).float()
    return energy_test_pvalue(x, truth, permutations=200, seed=seed), energy_distance(x, truth)


def test_learns_the_conditional_law_of_the_next_block():
    """Block k | block k-1 is a 3-D two-component mixture (shared sign couples the block's
    values; the centre follows the previous block's mean). After a short CPU run the
    generated next block passes the energy test against exact draws (p > 0.01) for two
    prompts; the untrained model and the exact law for the negated prompt fail it."""
    task = BlockMixtureChain()
    model, untrained = _fit_blocks(task, {"x": FieldConfig("gaussian", 1)}, steps=300)
    for first in (torch.tensor([1.0, -0.5, 0.5]), torch.tensor([-1.2, 0.6, -0.4])):
        p, ed = _next_block_pvalue(model, task, first)
        assert p > 0.01, f"trained model fails the energy test for prompt {first.tolist()}: p={p:.3f}, ED={ed:.4f}"
        assert _next_block_pvalue(untrained, task, first)[0] < 0.01
        g = torch.Generator().manual_seed(3)
        wrong = energy_test_pvalue(task.conditional(first).sample(400, g), task.conditional(-first).sample(400, g))
        assert wrong < 0.01


def test_learns_categorical_and_gaussian_fields_together():
    """A block's tokens share a class that follows a Markov transition (0.7 / 0.3), and each
    token's value sits at its class mean. After a short run, generated next blocks given a
    prompt have class-pair frequencies within total variation 0.12 of the exact law (the
    untrained model: > 0.5) and values within 0.15 of their class mean on average."""
    task = BlockCategoricalChain()
    fields = {"c": FieldConfig("categorical", 3), "x": FieldConfig("gaussian", 1)}
    model, untrained = _fit_blocks(task, fields, steps=250)
    n = 400
    for c0 in (0, 2):
        prompt = {"c": torch.full((n, 2), c0), "x": task.value_mean(torch.full((n, 2, 1), c0)).float()}
        for m, trained in ((model, True), (untrained, False)):
            out = m.generate(n, [2], prompt=prompt, solver="ancestral", steps=20, generator=torch.Generator().manual_seed(c0))
            c, x = out.x["c"][:, 2:], out.x["x"][:, 2:, 0]
            freq = torch.bincount(c[:, 0] * 3 + c[:, 1], minlength=9).double() / n
            truth = torch.zeros(9, dtype=torch.float64)
            truth[[0, 4, 8]] = task.transition(c0)
            tv = 0.5 * float((freq - truth).abs().sum())
            err = float((x.double() - task.value_mean(c)).abs().mean())
            if trained:
                assert tv < 0.12 and err < 0.15, f"tv={tv:.3f}, value error={err:.3f}"
            else:
                assert tv > 0.5


@pytest.mark.slow
def test_generated_block_sequences_match_the_joint_law():
    """Longer run: three blocks generated from scratch with the cache and step annealing
    match exact sequences (energy test on the joint 9-D law)."""
    task = BlockMixtureChain()
    model, _ = _fit_blocks(task, {"x": FieldConfig("gaussian", 1)}, steps=1200)
    n = 500
    g = torch.Generator().manual_seed(5)
    out = model.generate(n, [3, 3, 3], solver="dpm++2m", steps=StepAnnealing(20, 8), generator=g)
    truth = task.sample(n, g)["x"][..., 0]
    p = energy_test_pvalue(out.x["x"][..., 0], truth, permutations=200)
    assert p > 0.01, f"joint energy test p={p:.3f}"


# -- the shared block loop --------------------------------------------------------------
def test_generate_blocks_rows_finish_on_their_own_and_rejected_blocks_are_drawn_again():
    from sciogen.ar import BlockSampler, generate_blocks

    class Counting(BlockSampler):
        """Sample i gets blocks of size i + 1 until it holds >= 4 tokens; a block is rejected
        while its draw number is odd, so every block is drawn twice when retries allow."""

        def __init__(self, num):
            self.tokens = [[] for _ in range(num)]
            self.draws, self.log = 0, []

        def prefix(self, k, rows):
            return {"rows": rows}

        def select(self, prefix, rows):
            return {"rows": prefix["rows"][rows]}

        def plan(self, k, prefix, generator):
            size = torch.tensor([0 if len(self.tokens[r]) >= 4 else r + 1 for r in prefix["rows"].tolist()])
            return {"size": size, "row": prefix["rows"]}

        def draw(self, k, prefix, plan, generator):
            self.draws += 1
            self.log.append((k, plan["row"].tolist()))
            return {"v": torch.full((len(plan["size"]),), self.draws)}

        def reject(self, k, prefix, plan, block):
            return block["v"] % 2 == 1

        def commit(self, k, rows, prefix, plan, block):
            assert torch.equal(rows, plan["row"])
            for r, s, v in zip(rows.tolist(), plan["size"].tolist(), block["v"].tolist()):
                self.tokens[r] += [(k, v)] * s

    run = Counting(3)
    made = generate_blocks(run, 3, first_block=2, retries=1)
    assert made == 4  # sample 0 needs four blocks of one token, sample 1 two of two, sample 2 two of three
    assert [len(t) for t in run.tokens] == [4, 4, 6]
    assert run.log[:2] == [(2, [0, 1, 2]), (2, [0, 1, 2])] and run.log[-2:] == [(5, [0]), (5, [0])]
    assert all(v % 2 == 0 for t in run.tokens for _, v in t)  # every kept block is a redrawn one
    assert [k for k, _ in run.tokens[0]] == [2, 3, 4, 5]
    run = Counting(3)
    assert generate_blocks(run, 3, max_blocks=1) == 1 and [len(t) for t in run.tokens] == [1, 2, 3]
    assert any(v % 2 == 1 for t in run.tokens for _, v in t)  # no retries: the rejected block stays


def test_generate_needs_a_sample():
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        _model().generate(0, [2])
