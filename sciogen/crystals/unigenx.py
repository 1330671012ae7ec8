"""UniGenX for crystals: one causal sequence of element tokens, lattice rows and coordinates.

UniGenX (Zhang et al. 2025, "UniGenX: Unified generation of sequence and structure with
autoregressive diffusion") writes a crystal of n atoms as one sequence and generates it
token by token with :class:`~sciogen.ar.TokenAR`: discrete tokens by a softmax head,
numbers by a per-token diffusion head conditioned on the previous hidden state. The
layout (positions 0 .. 2n + 5, then PAD up to ``max_len = 2 * max_atoms + 6``)::

    position   0     1 .. n        n + 1     n + 2 .. n + 4      n + 5 .. 2n + 4      2n + 5
    token      BOS   element_1..n  COORD     NUM NUM NUM         NUM x n              EOS
    value      -     -             -         lattice rows a,b,c  site 1..n frac       -

- Elements (the composition) come sorted by (Z, then the site's index in the input);
  coordinate vector k belongs to the site of element token k. Ties keep the input order,
  so a periodic translation (the augmentation) never reorders the sites. (UniGenX breaks
  ties by the coordinates instead; with random translations that order is itself random.)
- Lattice rows are in Å divided by the per-crystal length ``scale * n^(1/3)``
  (:func:`~sciogen.crystals.diffcsp.lattice_scale`), so they are O(1).
- Fractional coordinates f in [0, 1) are stored centred and stretched,
  ``v = frac_scale * (f - 0.5)`` (default ``frac_scale = 2``: v in [-1, 1), a spread like
  that of the head's unit-variance noise); decoding inverts it and wraps to [0, 1).

The lattice is in the canonical orientation of pymatgen's ``Lattice.from_parameters``
(:func:`~sciogen.crystals.representation.canonical_structure`), a function of the
lengths and angles alone, so random rotations (UniGenX's rotation augmentation) would only
show the model orientations it never has to produce: the sole augmentation is a random
periodic translation of the fractional coordinates.

Tasks: de novo generation (prompt BOS; the grammar lets the model pick the elements and
their number) and crystal structure prediction (CSP: the composition is given and forced,
the model generates lattice and coordinates). :class:`CrystalGrammar` is the
``logits_processor`` that keeps every generated sequence in the layout above.

    >>> import torch
    >>> from sciogen.crystals.representation import CrystalSpec
    >>> spec = CrystalSpec((8, 22, 38), max_atoms=5)          # O, Ti, Sr
    >>> tok = CrystalTokenizer(spec)
    >>> model = build_unigenx(spec, dim=32, depth=1, heads=2, head_width=32, head_depth=2)
    >>> out = sample_unigenx(model, tok, 2, 2.5, steps=2, generator=torch.Generator().manual_seed(0))
    >>> out["ok"].tolist(), out["lattice"].shape
    ([True, True], torch.Size([2, 3, 3]))
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from sciogen.ar.annealing import StepAnnealing
from sciogen.ar.token_head import SequenceSample, TokenAR, TokenARConfig

from .diffcsp import lattice_scale
from .representation import CrystalSpec, CrystalTensors

__all__ = ["CrystalTokenizer", "CrystalGrammar", "build_unigenx", "unigenx_loss", "sample_unigenx"]

#: ids of the special tokens; element i of the spec is token ``FIRST_ELEMENT + i``
PAD, BOS, EOS, COORD, NUM = 0, 1, 2, 3, 4
FIRST_ELEMENT = 5


class CrystalTokenizer:
    """Crystals <-> UniGenX sequences (layout in the module docstring).

    Args:
        spec: the element vocabulary and ``max_atoms``.
        frac_scale: values store ``frac_scale * (frac - 0.5)``.

    Attributes:
        vocab_size: ``5 + spec.num_types`` (PAD, BOS, EOS, COORD, NUM, the elements).
        max_len: ``2 * spec.max_atoms + 6``, the longest sequence.
    """

    pad, bos, eos, coord, num = PAD, BOS, EOS, COORD, NUM

    def __init__(self, spec: CrystalSpec, frac_scale: float = 2.0):
        if not frac_scale > 0:
            raise ValueError(f"frac_scale must be > 0, got {frac_scale}")
        self.spec = spec
        self.frac_scale = float(frac_scale)
        self.vocab_size = FIRST_ELEMENT + spec.num_types
        self.max_len = 1 + spec.max_atoms + 1 + 3 + spec.max_atoms + 1

    def element_token(self, types: torch.Tensor) -> torch.Tensor:
        """Token ids of element indices (any shape)."""
        return types + FIRST_ELEMENT

    def site_order(self, types: torch.Tensor) -> torch.Tensor:
        """The sequence order of the sites: (M, N) indices sorting each row by (Z, site index),
        padding (-1) last."""
        m, n = types.shape
        z = torch.tensor(self.spec.elements, dtype=torch.long, device=types.device)[types.clamp_min(0)]
        site = torch.arange(n, device=types.device).expand(m, n)
        key = torch.where(types >= 0, z * n + site, torch.full_like(site, (max(self.spec.elements) + 1) * n) + site)
        return key.argsort(dim=1)

    def _check(self, types: torch.Tensor, num_atoms: torch.Tensor) -> None:
        counts = (types >= 0).sum(1)
        if bool((counts != num_atoms).any()):
            i = int((counts != num_atoms).nonzero()[0, 0])
            raise ValueError(f"crystal {i}: types hold {int(counts[i])} atoms (entries >= 0) "
                             f"but num_atoms is {int(num_atoms[i])}")
        if bool(((num_atoms < 1) | (num_atoms > self.spec.max_atoms)).any()):
            raise ValueError(f"num_atoms must lie in [1, {self.spec.max_atoms}] (spec.max_atoms), got {num_atoms.tolist()}")
        if bool((types >= self.spec.num_types).any()):
            raise ValueError(f"element indices must be < spec.num_types = {self.spec.num_types}")

    def encode(self, tensors: CrystalTensors | Mapping[str, torch.Tensor], scale: float,
               generator: torch.Generator | None = None, augment: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sequences of a padded batch of crystals.

        Args:
            tensors: a :class:`CrystalTensors` (or a dict with its fields): types (M, N)
                long, -1 on padding; frac (M, N, 3) fractional; lattice (M, 3, 3) Å, rows =
                lattice vectors; num_atoms (M,) in [1, max_atoms].
            scale: the lattice length scale (Å), as in :func:`lattice_scale`.
            generator: the source of the augmentation's translations.
            augment: add one random translation t ~ U[0, 1)^3 per crystal to its fractional
                coordinates (wrapped to [0, 1)); for training only.

        Returns:
            tokens (M, L) long, values (M, L, 3) float (0 off value positions), valid
            (M, L) bool (True through EOS), with L = ``max_len``.
        """
        get = tensors.__getitem__ if isinstance(tensors, Mapping) else lambda k: getattr(tensors, k)
        types, frac, lattice, num_atoms = get("types"), get("frac"), get("lattice"), get("num_atoms")
        num_atoms = num_atoms.to(types.device).long()
        self._check(types, num_atoms)
        dtype = frac.dtype if frac.is_floating_point() else torch.get_default_dtype()
        frac = frac.to(dtype)
        if augment:
            shift = torch.rand(frac.shape[0], 1, 3, generator=generator, device=frac.device, dtype=dtype)
            frac = _wrap(frac + shift)
        order = self.site_order(types)
        types = types.gather(1, order)
        frac = frac.gather(1, order[..., None].expand(-1, -1, 3))
        m, n = types.shape
        lat = (lattice / lattice_scale(scale, num_atoms).to(lattice.device)).to(dtype)

        pos = torch.arange(self.max_len, device=types.device).expand(m, -1)
        k = num_atoms[:, None]
        is_element = (pos >= 1) & (pos <= k)
        is_lattice = (pos >= k + 2) & (pos <= k + 4)
        is_site = (pos >= k + 5) & (pos <= 2 * k + 4)
        tokens = torch.full((m, self.max_len), PAD, dtype=torch.long, device=types.device)
        tokens[:, 0] = BOS
        elements = self.element_token(types.gather(1, (pos - 1).clamp(0, n - 1)))
        tokens = torch.where(is_element, elements, tokens)
        tokens = torch.where(pos == k + 1, torch.full_like(tokens, COORD), tokens)
        tokens = torch.where(is_lattice | is_site, torch.full_like(tokens, NUM), tokens)
        tokens = torch.where(pos == 2 * k + 5, torch.full_like(tokens, EOS), tokens)

        rows = lat.gather(1, (pos - k - 2).clamp(0, 2)[..., None].expand(-1, -1, 3))
        sites = self.frac_scale * (frac.gather(1, (pos - k - 5).clamp(0, n - 1)[..., None].expand(-1, -1, 3)) - 0.5)
        zero = torch.zeros((), dtype=dtype, device=frac.device)
        values = torch.where(is_lattice[..., None], rows, torch.where(is_site[..., None], sites, zero))
        return tokens, values, pos <= 2 * k + 5

    def parse(self, tokens: list[int]) -> int:
        """The number of atoms of one sequence (its valid tokens), or -1 if it breaks the layout."""
        if len(tokens) < 6 or tokens[0] != BOS:
            return -1
        n = 1
        while n < len(tokens) and tokens[n] >= FIRST_ELEMENT:
            n += 1
        n -= 1
        if not 1 <= n <= self.spec.max_atoms or len(tokens) != 2 * n + 6 or tokens[n + 1] != COORD:
            return -1
        if any(t != NUM for t in tokens[n + 2 : 2 * n + 5]) or tokens[2 * n + 5] != EOS:
            return -1
        return n

    def decode(self, sample: SequenceSample, scale: float) -> dict[str, torch.Tensor]:
        """Crystals of sequences (the inverse of :meth:`encode` without augmentation).

        Args:
            sample: a :class:`SequenceSample` (tokens (M, L), values (M, L, 3), valid (M, L)).
            scale: the lattice length scale (Å) used in :meth:`encode`.

        Returns:
            dict(types (M, N) long, -1 on padding; frac (M, N, 3) in [0, 1); lattice
            (M, 3, 3) Å; num_atoms (M,) long; ok (M,) bool) with N = ``max_atoms``, sites
            in sequence order. A sequence that breaks the layout (possible only without
            :class:`CrystalGrammar`) gets ok False, no atoms and a NaN lattice.
        """
        dev = sample.tokens.device
        rows = [t[v].tolist() for t, v in zip(sample.tokens.cpu(), sample.valid.cpu().bool())]
        k = torch.tensor([self.parse(r) for r in rows], dtype=torch.long, device=dev)
        ok = k > 0
        k = k.clamp_min(0)
        m, length = sample.tokens.shape
        n = self.spec.max_atoms
        values = sample.values
        site = torch.arange(n, device=dev).expand(m, n)
        mask = site < k[:, None]
        idx = (1 + site).clamp(max=length - 1)  # element tokens
        types = torch.where(mask, sample.tokens.gather(1, idx) - FIRST_ELEMENT, torch.full_like(site, -1))
        idx = (k[:, None] + 5 + site).clamp(0, length - 1)
        frac = _wrap(values.gather(1, idx[..., None].expand(-1, -1, 3)) / self.frac_scale + 0.5)
        frac = torch.where(mask[..., None], frac, torch.zeros((), dtype=frac.dtype, device=dev))
        idx = (k[:, None] + 2 + torch.arange(3, device=dev)).clamp(0, length - 1)
        lattice = values.gather(1, idx[..., None].expand(-1, -1, 3))
        lattice = lattice * lattice_scale(scale, k).to(device=dev, dtype=lattice.dtype)
        lattice = torch.where(ok[:, None, None], lattice, torch.full((), float("nan"), dtype=lattice.dtype, device=dev))
        return {"types": types, "frac": frac, "lattice": lattice, "num_atoms": k, "ok": ok}


def _wrap(frac: torch.Tensor) -> torch.Tensor:
    """Wrap to [0, 1) (``remainder`` can round a tiny negative number up to exactly 1)."""
    frac = torch.remainder(frac, 1.0)
    return torch.where(frac >= 1.0, torch.zeros_like(frac), frac)


class CrystalGrammar:
    """``logits_processor`` for :meth:`TokenAR.generate` that enforces the UniGenX layout.

    At position i, from the tokens so far (n elements, COORD or not, v NUM markers):

    - before COORD: an element (one of ``composition`` in order for CSP; any allowed one
      for de novo) while n < the target count, COORD once n reaches it; without a target
      count, elements while n < max_atoms and COORD once n >= 1;
    - after COORD: NUM while v < 3 + n, then EOS.

    PAD and BOS are never allowed, so every generated sequence parses.

    Args:
        tokenizer: the :class:`CrystalTokenizer`.
        counts: (B,) long, atoms per crystal (de novo with a drawn size), or None.
        composition: (B, N) element indices in sequence order (CSP), -1 on padding, or None.
        allowed_types: (K,) bool, the elements de novo samples may contain (default: all).
    """

    def __init__(self, tokenizer: CrystalTokenizer, counts: torch.Tensor | None = None,
                 composition: torch.Tensor | None = None, allowed_types: torch.Tensor | None = None):
        self.tokenizer = tokenizer
        k = tokenizer.spec.num_types
        if allowed_types is not None and (tuple(allowed_types.shape) != (k,) or not bool(allowed_types.any())):
            raise ValueError(f"allowed_types must be a (spec.num_types,) = ({k},) bool tensor with at least one True, "
                             f"got shape {tuple(allowed_types.shape)}")
        if composition is not None:
            counts = (composition >= 0).sum(1)
        self.counts = counts
        self.composition = composition
        self.allowed_types = allowed_types
        #: the sequence position being generated (for error messages)
        self.position = 0

    def __call__(self, position: int, logits: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        self.position = position
        if not math.isfinite(float(logits.sum())):
            raise FloatingPointError(f"non-finite token logits at UniGenX sequence position {position} "
                                     f"({_slot(position, prefix)}); check the checkpoint's weights")
        b, v = logits.shape
        dev = logits.device
        n_el = (prefix >= FIRST_ELEMENT).sum(1)
        after = (prefix == COORD).any(1)
        n_num = (prefix == NUM).sum(1)
        vocab = torch.arange(v, device=dev)
        is_el = vocab >= FIRST_ELEMENT
        if self.allowed_types is not None:
            specials = torch.zeros(FIRST_ELEMENT, dtype=torch.bool, device=dev)
            is_el = is_el & torch.cat([specials, self.allowed_types.to(dev).bool()])

        def one(tok: int) -> torch.Tensor:
            return (vocab == tok).expand(b, v)

        if self.counts is None:
            want_el = n_el < self.tokenizer.spec.max_atoms
            want_coord = n_el >= 1
        else:
            want_el = n_el < self.counts.to(dev)
            want_coord = ~want_el
        if self.composition is not None:
            comp = self.composition.to(dev)
            nxt = comp.gather(1, n_el.clamp(max=comp.shape[1] - 1)[:, None]) + FIRST_ELEMENT
            el = vocab[None, :] == nxt
        else:
            el = is_el.expand(b, v)
        before = (el & want_el[:, None]) | (one(COORD) & want_coord[:, None])
        numbers = torch.where((n_num < 3 + n_el)[:, None], one(NUM), one(EOS))
        allowed = torch.where(after[:, None], numbers, before)
        return logits.masked_fill(~allowed, float("-inf"))


def _slot(position: int, prefix: torch.Tensor) -> str:
    """What the layout puts at ``position`` (from the first sequence's tokens so far)."""
    first = prefix[0].tolist() if prefix.numel() else []
    return "a number" if COORD in first else "an element or COORD"


def build_unigenx(spec: CrystalSpec, dim: int = 128, depth: int = 4, heads: int = 4, head_width: int = 256,
                  head_depth: int = 3, **options) -> TokenAR:
    """A :class:`TokenAR` sized for ``spec``: value_dim 3, value_token NUM, eos_token EOS,
    max_len ``2 * max_atoms + 6``. ``options`` go to :class:`TokenARConfig` (schedule,
    prediction, diffusion_repeats, dropout, ...)."""
    tok = CrystalTokenizer(spec)
    config = TokenARConfig(vocab_size=tok.vocab_size, value_dim=3, value_token=NUM, eos_token=EOS, max_len=tok.max_len,
                           dim=dim, depth=depth, heads=heads, head_width=head_width, head_depth=head_depth, **options)
    return TokenAR(config)


def unigenx_loss(model: TokenAR, tokenizer: CrystalTokenizer, batch: Mapping[str, torch.Tensor], scale: float,
                 generator: torch.Generator | None = None, augment: bool = True) -> torch.Tensor:
    """Training loss, shaped (B,) as the trainer expects.

    ``batch``: types (B, N) long (-1 padding), frac (B, N, 3), lattice (B, 3, 3) Å,
    num_atoms (B,) (Dataset items stacked by ``default_collate``). ``augment``: random
    periodic translations (see :meth:`CrystalTokenizer.encode`).

    :meth:`TokenAR.loss` averages over all tokens and values of the batch (token
    cross-entropy + diffusion loss); that batch scalar is returned expanded to (B,), so the
    trainer's mean is the batch loss (a sum over the B entries would count it B times).
    """
    tokens, values, valid = tokenizer.encode(batch, scale, generator=generator, augment=augment)
    end = int(valid.sum(1).max())  # right padding does not change a causal model's outputs
    out = model.loss(tokens[:, :end], values[:, :end], valid=valid[:, :end], generator=generator)
    return out["loss"].expand(tokens.shape[0])


@torch.no_grad()
def sample_unigenx(model: TokenAR, tokenizer: CrystalTokenizer, n: int, scale: float, *,
                   types: torch.Tensor | None = None, atom_count_probs: torch.Tensor | None = None,
                   steps: int | StepAnnealing = 20, solver: str = "ddim", generator: torch.Generator | None = None,
                   temperature: float = 1.0, token_temperature: float = 1.0,
                   allowed_types: torch.Tensor | None = None, **sample_options) -> dict[str, torch.Tensor]:
    """Generate ``n`` crystals: structure prediction when ``types`` is given, else de novo.

    Args:
        model, tokenizer: a :func:`build_unigenx` model and its :class:`CrystalTokenizer`.
        scale: the lattice length scale (Å) of training.
        types: (n, N) element indices, -1 on padding (CSP). The composition, sorted as in
            :meth:`CrystalTokenizer.encode`, is forced after BOS (a prompt of ragged length,
            fed through :class:`CrystalGrammar`), then COORD; the model writes the numbers.
            The output keeps the sites in the order of ``types``.
        atom_count_probs: (max_atoms + 1,) probabilities of the atom count (de novo; entry
            0 must be 0); the count is drawn first and COORD forced when reached. None: the
            model decides when to emit COORD.
        steps, solver, sample_options: the value head's solver (:meth:`TokenAR.generate`).
        generator: the only source of randomness.
        temperature: scale of the value solver's starting noise; token_temperature: the
            element softmax temperature.
        allowed_types: (K,) bool, the elements de novo samples may contain.

    Returns:
        as :meth:`CrystalTokenizer.decode`: types (n, max_atoms), frac (n, max_atoms, 3) in
        [0, 1), lattice (n, 3, 3) Å, num_atoms (n,), ok (n,) (always True: the grammar
        admits only well-formed sequences).
    """
    spec = tokenizer.spec
    if model.config.max_len < tokenizer.max_len or model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the model (vocab_size {model.config.vocab_size}, max_len {model.config.max_len}) does not "
                         f"fit the tokenizer (vocab_size {tokenizer.vocab_size}, max_len {tokenizer.max_len}); "
                         "build it with build_unigenx(spec)")
    dev = next(model.parameters()).device
    counts = order = comp = None
    if types is not None:
        if atom_count_probs is not None:
            raise ValueError("give types (structure prediction) or atom_count_probs (de novo), not both")
        if types.shape[0] != n:
            raise ValueError(f"types has {types.shape[0]} rows for n={n} samples")
        if types.shape[1] > spec.max_atoms:
            if bool((types[:, spec.max_atoms:] >= 0).any()):
                raise ValueError(f"a composition has more than max_atoms={spec.max_atoms} atoms")
            types = types[:, : spec.max_atoms]
        types = torch.cat([types, types.new_full((n, spec.max_atoms - types.shape[1]), -1)], 1).to(dev)
        num = (types >= 0).sum(1)
        tokenizer._check(types, num)
        order = tokenizer.site_order(types)
        comp = types.gather(1, order)
    elif atom_count_probs is not None:
        probs = torch.as_tensor(atom_count_probs, dtype=torch.float64)
        if probs.shape != (spec.max_atoms + 1,) or not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
            raise ValueError(f"atom_count_probs must be {spec.max_atoms + 1} finite non-negative numbers "
                             f"(counts 0 .. max_atoms), got shape {tuple(probs.shape)}")
        if probs[0] > 0 or probs.sum() <= 0:
            raise ValueError("atom_count_probs must give count 0 no mass and counts 1 .. max_atoms some")
        gdev = generator.device if generator is not None else torch.device("cpu")
        counts = torch.multinomial(probs.float().to(gdev), n, replacement=True, generator=generator).to(dev)
    grammar = CrystalGrammar(tokenizer, counts=counts, composition=comp, allowed_types=allowed_types)
    prompt = torch.full((n, 1), BOS, dtype=torch.long, device=dev)
    try:
        seq = model.generate(prompt, length=tokenizer.max_len, solver=solver, steps=steps, temperature=temperature,
                             token_temperature=token_temperature, generator=generator, logits_processor=grammar,
                             **sample_options)
    except FloatingPointError as err:
        if "UniGenX sequence position" in str(err):
            raise
        raise FloatingPointError(f"UniGenX sequence position {grammar.position} (a number's diffusion head): "
                                 f"{err}") from None
    out = tokenizer.decode(seq, scale)
    ok = out["ok"]
    if not (math.isfinite(float(out["lattice"][ok].sum())) and math.isfinite(float(out["frac"][ok].sum()))):
        raise FloatingPointError("UniGenX sampling produced a non-finite lattice or coordinate; "
                                 "check the checkpoint's weights")
    if order is not None:  # back to the order of the given types
        inverse = order.argsort(dim=1)
        out["types"] = out["types"].gather(1, inverse)
        out["frac"] = out["frac"].gather(1, inverse[..., None].expand(-1, -1, 3))
    return out
