"""CITATION.cff parses and carries the keys CFF 1.2.0 requires, with the implemented papers."""

from pathlib import Path

import yaml

CFF = Path(__file__).resolve().parents[1] / "CITATION.cff"
REQUIRED = {"cff-version", "message", "title", "authors"}
PAPERS = ["DDPM", "DDIM", "DPM-Solver", "DPM-Solver++", "PARD", "UniGenX", "DRDM", "TSDiff", "SADM", "DiffCSP", "MAR"]
TITLE_WORDS = {
    "DDPM": "Denoising Diffusion Probabilistic Models",
    "DDIM": "Denoising Diffusion Implicit Models",
    "DPM-Solver": "DPM-Solver: A Fast ODE Solver",
    "DPM-Solver++": "DPM-Solver++",
    "PARD": "Autoregressive Diffusion Model for Graph Generation",
    "UniGenX": "UniGenX",
    "DRDM": "DRDM",
    "TSDiff": "Self-Guiding Diffusion Models",
    "SADM": "SADM",
    "DiffCSP": "Crystal Structure Prediction by Joint Equivariant Diffusion",
    "MAR": "Autoregressive Image Generation without Vector Quantization",
}


def test_citation_file_is_valid_cff():
    data = yaml.safe_load(CFF.read_text())
    assert REQUIRED <= set(data), REQUIRED - set(data)
    assert data["cff-version"] == "1.2.0"
    assert all("name" in a or "family-names" in a for a in data["authors"])
    for ref in data["references"]:
        assert {"type", "title", "authors"} <= set(ref), ref.get("title")
        assert all("name" in a or "family-names" in a for a in ref["authors"])


def test_citation_references_every_implemented_paper():
    titles = [r["title"] for r in yaml.safe_load(CFF.read_text())["references"]]
    for paper in PAPERS:
        assert any(TITLE_WORDS[paper] in t for t in titles), f"{paper} missing from CITATION.cff references"
