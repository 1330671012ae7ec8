"""Several fields with different processes: one noising call, one loss, joint sampling."""

import math

import pytest
import torch

from sciogen.diffusion import CategoricalProcess, GaussianMixture, GaussianProcess, JointProcess, LinearSchedule, WrappedNormalProcess

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
