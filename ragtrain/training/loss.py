"""Contrastive loss and the isotropy regulariser, as pure functions of embeddings.

Nothing here touches the model: the training step embeds queries and documents, then calls
`contrastive_loss`. That keeps the loss testable on hand-made tensors and lets a distributed step pass
gathered embeddings, laid out as one process would lay out the combined batch, without changing the maths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Quadrature grid of the Epps-Pulley integral: the integrand is even in t, so integrate over [0, T_MAX]
# and double. Beyond t = 5 the Gaussian weight exp(-t^2/2) is below 4e-6: nothing is lost.
EP_T_MAX = 5.0
EP_POINTS = 33
ISOTROPY_DIRECTIONS = 256  # random unit directions per step; SIGReg's default order of magnitude
STEP_SEED_STRIDE = 1_000_003  # a prime above any step count: each (seed, step) draws its own directions
SEED_MODULUS = 2**63 - 1  # torch generators take a seed that fits in a signed 64-bit integer


@dataclass(frozen=True)
class LossOptions:
    """What the training loss computes, fixed for a run: the options, and from the model its normalisation and
    Matryoshka dimensions (the encoder's settings, so the loss scores as the saved model will)."""

    kind: str = "infonce"  # or "distill": learn the teacher scores the triples carry
    temperature: float = 0.05
    normalize: bool = True  # cosine scores; False: dot products of raw embeddings
    symmetric: bool = False  # add the documents -> queries direction
    isotropy_weight: float = 0.0
    matryoshka_dims: tuple[int, ...] = ()
    distill_objective: str = "margin-mse"
    teacher_temperature: float = 1.0
    infonce_weight: float = 0.0  # under distillation: this times the InfoNCE loss is added

    def part_names(self) -> list[str]:
        """The loss parts a step reports besides the total (an empty slice reports them as 0)."""
        if self.kind == "distill":
            return ["loss_distill"] + ["loss_q2d"] * (self.infonce_weight > 0)
        return ([f"loss_dim{d}" for d in self.matryoshka_dims] + ["loss_q2d"] + ["loss_d2q"] * self.symmetric
                + ["loss_isotropy"] * (self.isotropy_weight > 0))


def info_nce(query_emb: torch.Tensor, doc_emb: torch.Tensor, temperature: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE over in-batch negatives plus hard negatives: mean cross-entropy over queries.

    query_emb: (B, D). doc_emb: (M, D) with query i's positive at row i; every other row (the other
    positives and all hard negatives) is a negative for every query, except where `mask` (B, M) is True:
    those candidates (another copy of the query's positive) are left out of that query's softmax, so they
    get no gradient from it. The mask never covers a query's own positive.
    """
    scores = query_emb @ doc_emb.T / temperature  # (B, M)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    labels = torch.arange(query_emb.size(0), device=query_emb.device)  # (B,)
    return F.cross_entropy(scores, labels)


def contrastive_loss(
    query_emb: torch.Tensor,
    doc_emb: torch.Tensor,
    temperature: float,
    normalize: bool = True,
    symmetric: bool = False,
    isotropy_weight: float = 0.0,
    directions: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    dims: tuple[int, ...] = (),
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss from embeddings before normalisation, and each part on its own for the log.

    query_emb: (B, D); doc_emb: (B + N, D), the B positives first, then the batch's hard negatives.
    symmetric adds documents -> queries (each positive must pick its query among the B queries); the two
    directions are averaged so the loss keeps its scale. The isotropy term (weight `isotropy_weight`, random
    unit `directions` of shape (D, K)) is computed in fp32 on the raw embeddings of queries and documents.
    mask: (B, B + N) bool, the candidates left out of each query's softmax (`data.false_negative_mask`); in
    the symmetric term, positive i leaves out query j where query j's candidate i is masked.
    dims (Matryoshka): the contrastive part is the mean over these prefix sizes of the loss of the first d
    dimensions, each prefix normalised on its own; () is the whole embedding alone.
    """
    query_emb, doc_emb = at_least_fp32(query_emb), at_least_fp32(doc_emb)
    parts: dict[str, float] = {}
    sizes = dims or (query_emb.size(1),)
    forward, backward = [], []
    for size in sizes:
        q, d = query_emb[:, :size], doc_emb[:, :size]  # (B, d), (B + N, d)
        q = F.normalize(q, dim=-1) if normalize else q
        d = F.normalize(d, dim=-1) if normalize else d
        forward.append(info_nce(q, d, temperature, mask))
        if symmetric:
            rows = q.size(0)
            backward_mask = mask[:, :rows].T if mask is not None else None  # (B, B): positive i, query j
            backward.append(info_nce(d[:rows], q, temperature, backward_mask))  # positives (B, d) against queries
        if dims:
            parts[f"loss_dim{size}"] = forward[-1].item()
    loss = torch.stack(forward).mean()
    parts["loss_q2d"] = loss.item()
    if symmetric:
        back = torch.stack(backward).mean()
        parts["loss_d2q"] = back.item()
        loss = (loss + back) / 2
    if isotropy_weight > 0:
        if directions is None:
            raise ValueError("isotropy_weight > 0 needs random directions")
        iso = sigreg(torch.cat([query_emb, doc_emb]), directions)
        parts["loss_isotropy"] = iso.item()
        loss = loss + isotropy_weight * iso
    parts["loss"] = loss.item()
    return loss, parts


def random_directions(dim: int, count: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """(dim, count) unit vectors drawn uniformly on the sphere (normalised Gaussians), on the CPU generator."""
    directions = torch.randn(dim, count, generator=generator)
    return (directions / directions.norm(dim=0, keepdim=True)).to(device)


def sigreg(emb: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """SIGReg (LeJEPA): mean Epps-Pulley distance to N(0, 1) of the embeddings projected on each direction.

    emb: (n, D) raw embeddings; directions: (D, K) unit vectors. It tends to zero (as n grows) exactly
    when every 1-D projection is standard normal, i.e. when the embeddings are an isotropic Gaussian.
    """
    projected = at_least_fp32(emb) @ directions.to(at_least_fp32(emb).dtype)  # (n, K)
    return epps_pulley(projected).mean()


def epps_pulley(samples: torch.Tensor) -> torch.Tensor:
    """Per column of samples (n, K): integral of |phi_emp(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt over the real line.

    phi_emp(t) = mean_j exp(i t x_j). The integrand is even, so the trapezoid rule runs on [0, EP_T_MAX]
    and is doubled. Unlike the test statistic, there is no factor n: the value estimates a distance that
    does not grow with the batch. Returns (K,).
    """
    samples = at_least_fp32(samples)
    t = torch.linspace(0, EP_T_MAX, EP_POINTS, device=samples.device, dtype=samples.dtype)  # (T,)
    target = torch.exp(-0.5 * t**2)  # standard normal characteristic function, also the weight
    weights = torch.full_like(t, t[1].item() - t[0].item())
    weights[0] = weights[-1] = weights[0] / 2  # trapezoid
    angles = samples.unsqueeze(-1) * t  # (n, K, T)
    real = torch.cos(angles).mean(dim=0) - target  # (K, T)
    imag = torch.sin(angles).mean(dim=0)  # (K, T)
    return 2 * ((real**2 + imag**2) * target) @ weights  # (K,)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32 (softmax and cos/sin sums lose too much in half precision); fp32/fp64 unchanged."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def isotropy_generator(seed: int, step: int) -> torch.Generator:
    """A generator for one step's directions: a pure function of (seed, step), so resume draws the same ones."""
    return torch.Generator().manual_seed((seed * STEP_SEED_STRIDE + step) % SEED_MODULUS)



# ---- distillation: the student learns the teacher scores the triples carry (train --loss distill)
MASKED_LOGIT = -1e4  # a padded candidate's score: exp() of it is exactly 0 in fp32, and every term stays finite


def candidate_scores(query_emb: torch.Tensor, doc_emb: torch.Tensor, candidates: torch.Tensor,
                     temperature: float, normalize: bool = True) -> torch.Tensor:
    """(B, 1 + N) student scores of each query's own candidates: its positive, then its negatives.

    query_emb: (B, D); doc_emb: (M, D); candidates: (B, 1 + N) row indices into doc_emb (padding may point
    anywhere: the objectives leave padded columns out). Score = q . d / temperature, cosine when normalize."""
    query_emb, doc_emb = at_least_fp32(query_emb), at_least_fp32(doc_emb)
    q = F.normalize(query_emb, dim=-1) if normalize else query_emb  # (B, D)
    d = F.normalize(doc_emb, dim=-1) if normalize else doc_emb  # (M, D)
    return torch.einsum("bd,bkd->bk", q, d[candidates]) / temperature  # (B, 1 + N)


def margin_mse(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Margin-MSE (Hofstaetter et al.): mean over real negatives of ((s_pos - s_neg) - (t_pos - t_neg))^2.

    student, teacher: (B, 1 + N) scores, the positive in column 0; valid: (B, 1 + N) bool, False on padding."""
    student_margin = student[:, :1] - student[:, 1:]  # (B, N)
    teacher_margin = (teacher[:, :1] - teacher[:, 1:]).to(student.dtype)  # (B, N)
    negatives = valid[:, 1:].to(student.dtype)  # (B, N)
    return ((student_margin - teacher_margin) ** 2 * negatives).sum() / negatives.sum().clamp(min=1)


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) between the softmaxes over each query's real candidates, mean over queries.

    student, teacher: (B, 1 + N) scores; valid: (B, 1 + N) bool, False on padding (left out of both softmaxes)."""
    log_student = torch.log_softmax(student.masked_fill(~valid, MASKED_LOGIT), dim=-1)  # (B, 1 + N)
    log_teacher = torch.log_softmax(teacher.to(student.dtype).masked_fill(~valid, MASKED_LOGIT), dim=-1)
    return (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1).mean()


def distill_loss(query_emb: torch.Tensor, doc_emb: torch.Tensor, candidates: torch.Tensor, valid: torch.Tensor,
                 teacher: torch.Tensor, objective: str, temperature: float, teacher_temperature: float,
                 normalize: bool = True, infonce_weight: float = 0.0,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The distillation loss (margin-mse or kl) on student scores q.d / temperature against teacher scores /
    teacher_temperature, plus `infonce_weight` times InfoNCE over the batch (`mask` as contrastive_loss's).

    query_emb: (B, D); doc_emb: (B + N_all, D) as collate lays them out; candidates, valid, teacher: (B, 1 + N)."""
    student = candidate_scores(query_emb, doc_emb, candidates, temperature, normalize)  # (B, 1 + N)
    scaled_teacher = teacher / teacher_temperature  # (B, 1 + N)
    objective_fn = margin_mse if objective == "margin-mse" else distill_kl
    loss = objective_fn(student, scaled_teacher, valid)
    parts = {"loss_distill": loss.item()}
    if infonce_weight > 0:
        contrastive, _ = contrastive_loss(query_emb, doc_emb, temperature, normalize, mask=mask)
        parts["loss_q2d"] = contrastive.item()
        loss = loss + infonce_weight * contrastive
    parts["loss"] = loss.item()
    return loss, parts
