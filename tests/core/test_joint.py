"""Several fields with different processes: one noising call, one loss, joint sampling."""

import math

import pytest
import torch

from sciogen.diffusion import (
    CategoricalProcess,
    GaussianMixture,
    GaussianProcess,
    JointProcess,
    LinearSchedule,
    WrappedNormalProcess,
)

P_DATA = torch.tensor([0.6, 0.1, 0.3])
GMM = GaussianMixture([[-1.5], [1.5]], [0.3, 0.3], [0.25, 0.75])
MU, WIDTH = 0.8, 0.05


def _processes():
    return JointProcess({
        "types": CategoricalProcess(3, "uniform"),
        "lattice": GaussianProcess(LinearSchedule(), "eps"),
        "frac": WrappedNormalProcess(),
    })


def _exact_model(joint):
    cat, gauss, torus = (joint.processes[k] for k in ("types", "lattice", "frac"))
    gauss_model = GMM.denoiser(gauss.schedule, "eps")

    def model(x, t):
        tt = t["types"]
        # categorical: p(x0 | x_t) ∝ p_data(x0) q(x_t | x0), elementwise
        q = cat.q_probs(torch.arange(3).expand(x["types"].shape[0], 3), tt)  # (B, x0, x_t)
        like = q[torch.arange(q.shape[0])[:, None], :, x["types"]]  # (B, N, x0)
        logits = torch.log(P_DATA * like + 1e-30)
        # torus: the noised law is a wrapped normal of variance WIDTH^2 + sigma^2
        sigma = torus.sigma(t["frac"]).double()[:, None]
        total = torch.sqrt(WIDTH**2 + sigma**2)
        score = torus.score(x["frac"].double(), torch.full_like(x["frac"], MU).double(), total)
        pred = (score / torus.score_norm(sigma).sqrt()).float()
        return {"types": logits, "lattice": gauss_model(x["lattice"], t["lattice"]), "frac": pred}

    return model


def test_joint_noise_with_shared_and_per_field_times():
    joint = _processes()
    b = 4
    x0 = {"types": torch.zeros(b, 5, dtype=torch.long), "lattice": torch.ones(b, 1), "frac": torch.full((b, 3), 0.5)}
    g = torch.Generator().manual_seed(0)
    x_t, times, aux = joint.noise(x0, torch.full((b,), 1e-4), generator=g)
    assert bool((x_t["types"] == 0).all()) and torch.allclose(x_t["lattice"], x0["lattice"], atol=0.02)
    assert set(times) == set(x0) and aux["types"] is None
    per_field = {"types": torch.full((b,), 0.999), "lattice": torch.full((b,), 1e-4), "frac": torch.full((b, 3), 1e-4)}
    x_t, _, _ = joint.noise(x0, per_field, generator=g)
    assert torch.allclose(x_t["lattice"], x0["lattice"], atol=0.02)
    with pytest.raises(ValueError, match="no time given for fields"):
        joint.noise(x0, {"types": torch.ones(b)})
    with pytest.raises(ValueError, match="has fields"):
        joint.noise({"types": x0["types"]})


def test_joint_loss_is_lower_for_the_exact_model():
    joint = _processes()
    n = 2000
    g = torch.Generator().manual_seed(0)
    x0 = {
        "types": torch.multinomial(P_DATA, n * 4, replacement=True, generator=g).reshape(n, 4),
        "lattice": GMM.sample(n, g).float(),
        "frac": (MU + WIDTH * torch.randn(n, 3, generator=g)) % 1.0,
    }
    exact = _exact_model(joint)
    total, parts = joint.loss(exact, x0, generator=torch.Generator().manual_seed(1))

    def wrong(x, t):
        out = exact(x, t)
        return {k: v * 0.5 for k, v in out.items()}

    total_wrong, _ = joint.loss(wrong, x0, generator=torch.Generator().manual_seed(1))
    assert total.shape == (n,) and set(parts) == set(x0)
    assert float(total.mean()) < float(total_wrong.mean())


def test_joint_sampling_with_exact_models_recovers_every_field():
    joint = _processes()
    n = 1500
    g = torch.Generator().manual_seed(0)
    x_T = joint.prior({"types": (n, 4), "lattice": (n, 1), "frac": (n, 3)}, generator=g)
    out = joint.sample(_exact_model(joint), x_T, steps=100, generator=g)
    freq = torch.bincount(out["types"].flatten(), minlength=3).float() / out["types"].numel()
    assert torch.allclose(freq, P_DATA, atol=4 * math.sqrt(0.25 / out["types"].numel()) + 0.01), freq
    frac_pos = float((out["lattice"] > 0).float().mean())
    assert abs(frac_pos - 0.75) < 4 * math.sqrt(0.75 * 0.25 / n), frac_pos
    d = (out["frac"] - MU + 0.5) % 1.0 - 0.5
    assert abs(float(d.mean())) < 0.01 and abs(float(d.std()) - WIDTH) < 0.01, (float(d.mean()), float(d.std()))


def test_fixed_fields_stay_fixed():
    joint = _processes()
    n = 16
    g = torch.Generator().manual_seed(0)
    x_T = joint.prior({"types": (n, 4), "lattice": (n, 1), "frac": (n, 3)}, generator=g)
    fixed = {"types": torch.ones(n, 4, dtype=torch.long)}
    out = joint.sample(_exact_model(joint), x_T, steps=10, generator=g, fixed=fixed)
    assert torch.equal(out["types"], fixed["types"])


def test_sampler_options_fixed_time_corrector_grid_project_and_checks():
    joint = _processes()
    n, steps, corrector = 4, 5, 2
    x_T = joint.prior({"types": (n, 4), "lattice": (n, 1), "frac": (n, 3)}, generator=torch.Generator().manual_seed(0))
    calls, hooks = [], []

    def model(x, t):
        calls.append({k: float(v[0]) for k, v in t.items()})
        return {"types": torch.zeros(n, 4, 3), "lattice": torch.zeros(n, 1), "frac": torch.zeros(n, 3)}

    def on_prediction(pred, step, t, c):
        hooks.append((step, round(t, 6), c))
        return pred

    fixed = {"types": torch.ones(n, 4, dtype=torch.long)}
    out = joint.sample(model, x_T, steps, torch.Generator().manual_seed(1), fixed, corrector_steps=corrector,
                       on_prediction=on_prediction, project=lambda x: {**x, "lattice": x["lattice"].clamp(-0.1, 0.1)})
    assert len(calls) == steps + corrector * (steps - 1)  # DiffCSP: no corrector after the last step
    assert all(c["types"] == 0.0 for c in calls) and calls[0]["lattice"] == 1.0  # fixed fields are clean: t = 0
    assert hooks[:3] == [(0, 1.0, 0), (0, 0.8, 1), (0, 0.8, 2)] and hooks[-1] == (steps - 1, 0.2, 0)
    assert torch.equal(out["types"], fixed["types"]) and float(out["lattice"].abs().max()) <= 0.1 + 1e-6
    grid = torch.tensor([1.0, 0.5, 0.0])
    joint.sample(model, x_T, 2, grid=grid, on_prediction=on_prediction)
    assert [h[1] for h in hooks[-2:]] == [1.0, 0.5]
    with pytest.raises(ValueError, match="grid must hold steps \\+ 1 = 4 times"):
        joint.sample(model, x_T, 3, grid=grid)
    with pytest.raises(ValueError, match="corrector_steps must be >= 0"):
        joint.sample(model, x_T, 3, corrector_steps=-1)


def test_sampler_names_the_field_that_became_non_finite_and_masks_padding():
    joint = _processes()
    n = 3
    x_T = joint.prior({"types": (n, 4), "lattice": (n, 1), "frac": (n, 3)}, generator=torch.Generator().manual_seed(0))

    def model(x, t):
        frac = torch.zeros(n, 3)
        frac[0] = float("nan")  # only the first sample's coordinates go bad
        return {"types": torch.zeros(n, 4, 3), "lattice": torch.zeros(n, 1), "frac": frac}

    with pytest.raises(FloatingPointError, match=r"field 'frac' at solver step 0 \(t = 0\.66667\)"):
        joint.sample(model, x_T, 3)
    padding = torch.tensor([False, True, True])  # the first sample is padding: its values are not checked
    out = joint.sample(model, x_T, 3, masks={"frac": padding})
    assert bool(torch.isfinite(out["frac"][1:]).all())


def test_loss_weights_for_one_call():
    joint = _processes()
    n = 8
    g = torch.Generator().manual_seed(0)
    x0 = {"types": torch.zeros(n, 4, dtype=torch.long), "lattice": torch.randn(n, 1, generator=g),
          "frac": torch.rand(n, 3, generator=g)}
    model = _exact_model(joint)
    total, parts = joint.loss(model, x0, generator=torch.Generator().manual_seed(1))
    weighted, _ = joint.loss(model, x0, generator=torch.Generator().manual_seed(1), weights={"types": 0.0, "frac": 2.0})
    assert torch.allclose(weighted, parts["lattice"] + 2.0 * parts["frac"])
    assert torch.allclose(total, sum(parts.values()))
    with pytest.raises(ValueError, match="weights for unknown fields"):
        joint.loss(model, x0, weights={"coords": 1.0})
