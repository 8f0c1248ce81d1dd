"""Similarity heads against float64 brute force, autograd and the special cases of docs/theory.md T2."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmilab.errors import InputError
from pmilab.similarity import KME, WPSE, Linear, Tabular, base


@pytest.fixture(params=["reference", "chunked"])
def pairwise_path(request, monkeypatch):
    """Run a test through both the materialising reference and the chunked kernel."""
    if request.param == "chunked":
        monkeypatch.setattr(base, "SMALL_PAIRWISE_ELEMENTS", -1)
    return request.param


def _point_sets(b, c, m, n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(b, m, d, generator=g, dtype=torch.float64)
    py = torch.randn(c, n, d, generator=g, dtype=torch.float64)
    wx = torch.randn(b, m, generator=g, dtype=torch.float64)
    wy = torch.randn(c, n, generator=g, dtype=torch.float64)
    return px, wx, py, wy


def _kme_brute(px, wx, py, wy, sigma):
    """Python double loop over pairs (i, j) and points (a, b): the definition, term by term."""
    out = torch.empty(px.shape[0], py.shape[0], dtype=torch.float64)
    for i in range(px.shape[0]):
        for j in range(py.shape[0]):
            terms = [
                wx[i, a].item()
                + wy[j, b].item()
                - ((px[i, a] - py[j, b]) ** 2).sum().item() / (2 * sigma**2)
                for a in range(px.shape[1])
                for b in range(py.shape[1])
            ]
            top = max(terms)
            out[i, j] = top + math.log(math.fsum(math.exp(t - top) for t in terms))
    return out


def _wpse_brute(px, wx, py, wy, sigma, a_lin, a_ker, kernel):
    out = torch.empty(px.shape[0], py.shape[0], dtype=torch.float64)
    m, n = px.shape[1], py.shape[1]
    for i in range(px.shape[0]):
        for j in range(py.shape[0]):
            total = 0.0
            for a in range(m):
                for b in range(n):
                    d2 = ((px[i, a] - py[j, b]) ** 2).sum().item()
                    k = (
                        math.exp(-d2 / (2 * sigma**2))
                        if kernel == "gaussian"
                        else 1 / math.sqrt(1 + d2 / sigma**2)
                    )
                    lin = (px[i, a] * py[j, b]).sum().item()
                    total += wx[i, a].item() * wy[j, b].item() * (a_lin * lin + a_ker * k)
            out[i, j] = total / (m * n)
    return out


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    b=st.integers(1, 4),
    c=st.integers(1, 4),
    m=st.integers(1, 3),
    n=st.integers(1, 3),
    d=st.integers(1, 4),
    sigma=st.floats(0.3, 3.0),
    seed=st.integers(0, 1000),
)
def test_kme_equals_brute_force(pairwise_path, b, c, m, n, d, sigma, seed):
    px, wx, py, wy = _point_sets(b, c, m, n, d, seed)
    head = KME(sigma=sigma).double()
    got = head.logit_matrix(px, wx, py, wy)
    sigma = head.sigma.item()  # log σ is stored in float32 before .double(): use the head's σ
    torch.testing.assert_close(got, _kme_brute(px, wx, py, wy, sigma), rtol=1e-10, atol=1e-10)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    b=st.integers(1, 4),
    c=st.integers(1, 4),
    m=st.integers(1, 3),
    n=st.integers(1, 3),
    d=st.integers(1, 4),
    sigma=st.floats(0.3, 3.0),
    a_lin=st.floats(-1.0, 1.0),
    kernel=st.sampled_from(["gaussian", "imq"]),
    seed=st.integers(0, 1000),
)
def test_wpse_equals_brute_force(pairwise_path, b, c, m, n, d, sigma, a_lin, kernel, seed):
    px, wx, py, wy = _point_sets(b, c, m, n, d, seed)
    head = WPSE(sigma=sigma, alpha_linear=a_lin, alpha_kernel=0.7, kernel=kernel).double()
    t = head.scale().item()
    got = head.logit_matrix(px, wx, py, wy)
    want = t * _wpse_brute(px, wx, py, wy, head.sigma.item(), a_lin, 0.7, kernel)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "head",
    [KME(sigma=0.7), WPSE(sigma=0.8, alpha_linear=0.5), WPSE(sigma=0.8, kernel="imq")],
    ids=["kme", "wpse-gauss", "wpse-imq"],
)
def test_paired_logits_are_the_diagonal(pairwise_path, head):
    head = head.double()
    px, wx, py, wy = _point_sets(5, 5, 3, 2, 3, seed=1)
    torch.testing.assert_close(
        head.paired_logits(px, wx, py, wy), head.logit_matrix(px, wx, py, wy).diagonal()
    )


def test_linear_and_tabular_paired_are_the_diagonal():
    g = torch.Generator().manual_seed(0)
    zx, zy = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    lin = Linear(normalize=True, bias=True)
    torch.testing.assert_close(lin.paired_logits(zx, zy), lin.logit_matrix(zx, zy).diagonal())
    tab = Tabular(4, 5)
    with torch.no_grad():
        tab.table.normal_(generator=g)
    x, y = torch.tensor([0, 3, 1]), torch.tensor([4, 0, 2])
    torch.testing.assert_close(tab.paired_logits(x, y), tab.logit_matrix(x, y).diagonal())
    assert tab.logit_matrix(x, y)[1, 0] == tab.table[3, 4]


def _gradcheck(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_every_head_in_float64(pairwise_path):
    px, wx, py, wy = (t.requires_grad_() for t in _point_sets(3, 2, 2, 3, 2, seed=3))
    kme = KME(sigma=0.9).double()
    _gradcheck(
        lambda a, b, c, d, s: KME.logit_matrix(_with(kme, log_sigma=s), a, b, c, d),
        px,
        wx,
        py,
        wy,
        kme.log_sigma.detach().clone().requires_grad_(),
    )
    _gradcheck(kme.paired_logits, px[:2], wx[:2], py, wy)
    for kernel in ("gaussian", "imq"):
        wp = WPSE(sigma=1.1, alpha_linear=0.3, kernel=kernel, learn_sigma=True).double()
        _gradcheck(wp.logit_matrix, px, wx, py, wy)
        _gradcheck(wp.paired_logits, px[:2], wx[:2], py, wy)
    rff = WPSE(sigma=1.1, alpha_linear=0.3, rff_features=16, dim=2).double().eval()
    _gradcheck(rff.logit_matrix, px, wx, py, wy)
    zx = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    zy = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    for normalize in (True, False):
        lin = Linear(normalize=normalize, bias=True).double()
        _gradcheck(lin.logit_matrix, zx, zy)
        _gradcheck(lin.paired_logits, zx, zy[:4])
    # parameters too: scale, bias, bandwidth and the tabular table get the autograd gradient
    for head, args in ((lin, (zx, zy)), (wp, (px, wx, py, wy)), (kme, (px, wx, py, wy))):
        head.zero_grad()
        head.logit_matrix(*args).sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    tab = Tabular(3, 4).double()
    x, y = torch.tensor([0, 2, 2]), torch.tensor([1, 3, 0, 1])
    _gradcheck(lambda t: t[x][:, y] * 1.0, tab.table.detach().clone().requires_grad_())
    tab.logit_matrix(x, y).sum().backward()
    counts = torch.zeros(3, 4, dtype=torch.float64)
    for i in x:
        for j in y:
            counts[i, j] += 1
    torch.testing.assert_close(tab.table.grad, counts)


def _with(head, **params):
    """`head` with some parameters replaced by the given tensors (for gradcheck over them)."""
    for k, v in params.items():
        delattr(head, k)
        setattr(head, k, v)
    return head


def test_wpse_one_point_linear_kernel_is_clip():
    """T2: one point, weight 1, linear kernel -> CLIP (unnormalised) with the same scale."""
    g = torch.Generator().manual_seed(5)
    zx = torch.randn(6, 4, generator=g, dtype=torch.float64)
    zy = torch.randn(7, 4, generator=g, dtype=torch.float64)
    ones_x, ones_y = torch.ones(6, 1, dtype=torch.float64), torch.ones(7, 1, dtype=torch.float64)
    wp = WPSE(alpha_linear=1.0, alpha_kernel=0.0, temperature=0.2).double()
    clip = Linear(normalize=False, temperature=0.2).double()
    torch.testing.assert_close(
        wp.logit_matrix(zx[:, None], ones_x, zy[:, None], ones_y), clip.logit_matrix(zx, zy)
    )


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 2.0])
def test_kme_one_unit_point_is_clip_with_scale_inverse_sigma_squared(pairwise_path, sigma):
    """T2 / KME Prop. 2: ℓ = ⟨u, v⟩/σ² − 1/σ² for unit-norm u, v and log-weight 0."""
    g = torch.Generator().manual_seed(6)
    zx = torch.randn(5, 3, generator=g, dtype=torch.float64)
    zy = torch.randn(4, 3, generator=g, dtype=torch.float64)
    ux, uy = torch.nn.functional.normalize(zx, dim=-1), torch.nn.functional.normalize(zy, dim=-1)
    kme = KME(sigma=sigma).double()
    got = kme.logit_matrix(
        ux[:, None], torch.zeros(5, 1).double(), uy[:, None], torch.zeros(4, 1).double()
    )
    s2 = kme.sigma.item() ** 2  # the head's σ (log σ was stored in float32 before .double())
    cosine = Linear(normalize=True, temperature=1.0).double().logit_matrix(zx, zy)  # t = 1
    torch.testing.assert_close(got, cosine / s2 - 1 / s2, rtol=1e-12, atol=1e-12)


def test_rff_converges_to_the_exact_kernel():
    """Each kernel estimate has sd <= 1/sqrt(D) (rff.py); the logit error is a weighted mean
    of such estimates times t·α₂, so we allow 5·t·max|w|²/sqrt(D) at every D (5 sd over the
    20 entries) and demand the error falls as D grows 16 -> 16384."""
    px, wx, py, wy = _point_sets(4, 5, 3, 2, 3, seed=7)
    exact = WPSE(sigma=1.0, alpha_linear=0.5).double()
    want = exact.logit_matrix(px, wx, py, wy)
    bound_scale = exact.scale().item() * wx.abs().max().item() * wy.abs().max().item()
    errs = []
    for d_feat in (16, 256, 4096, 16384):
        rff = WPSE(sigma=1.0, alpha_linear=0.5, rff_features=d_feat, dim=3, rff_seed=0).double()
        err = (rff.eval().logit_matrix(px, wx, py, wy) - want).abs().max().item()
        assert err <= 5 * bound_scale / math.sqrt(d_feat), (d_feat, err)
        errs.append(err)
    assert errs[-1] < errs[0] / 8  # 1/sqrt(D) predicts 32x over 16 -> 16384; demand 8x


def test_rff_redraws_in_training_and_is_fixed_in_eval():
    px, wx, py, wy = _point_sets(3, 3, 2, 2, 2, seed=8)
    head = WPSE(rff_features=32, dim=2).double()
    a = head.eval().logit_matrix(px, wx, py, wy)
    torch.testing.assert_close(head.logit_matrix(px, wx, py, wy), a)  # eval: fixed features
    head.train()
    head.redraw(torch.Generator().manual_seed(1))
    b = head.logit_matrix(px, wx, py, wy)
    head.redraw(torch.Generator().manual_seed(2))
    c = head.logit_matrix(px, wx, py, wy)
    assert not torch.allclose(b, c) and not torch.allclose(a, b)
    torch.testing.assert_close(head.eval().logit_matrix(px, wx, py, wy), a)


def test_logit_scale_init_and_clamp():
    lin = Linear(temperature=0.07, logit_cap=100.0)
    assert lin.scale().item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        lin.scale.log_scale.fill_(10.0)
    lin.clamp_()
    assert lin.scale().item() == pytest.approx(100.0)
    assert Linear(temperature=0.001, logit_cap=50.0).scale().item() == pytest.approx(50.0)
    fixed = Linear(temperature=0.5, learn_scale=False)
    assert [n for n, _ in fixed.named_parameters()] == []
    # a cosine logit never exceeds the cap (T5)
    z = torch.randn(20, 5)
    assert lin.logit_matrix(z, z).abs().max() <= 100.0 + 1e-4


def test_float64_via_double():
    px, wx, py, wy = _point_sets(2, 3, 2, 2, 2)
    for head in (KME(), WPSE(), WPSE(rff_features=8, dim=2)):
        assert head.double().logit_matrix(px, wx, py, wy).dtype == torch.float64
    assert Linear().double().logit_matrix(px[:, 0], py[:, 0]).dtype == torch.float64
    assert Tabular(2, 2).double().table.dtype == torch.float64


def test_shape_errors_are_clear():
    px, wx, py, wy = _point_sets(2, 3, 2, 2, 2)
    with pytest.raises(ValueError, match="weights must be"):
        KME().double().logit_matrix(px, wx[:, :1], py, wy)
    with pytest.raises(ValueError, match="point dims differ"):
        WPSE().double().logit_matrix(px, wx, py[..., :1], wy)
    with pytest.raises(ValueError, match="paired logits need equal batch sizes"):
        KME().double().paired_logits(px, wx, py, wy)
    with pytest.raises(ValueError, match=r"points must be \(B, M, d\)"):
        KME().double().logit_matrix(px[:, 0], wx, py, wy)
    with pytest.raises(ValueError, match="feature dims differ"):
        Linear().logit_matrix(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="integer state indices"):
        Tabular(2, 2).logit_matrix(torch.tensor([0.0]), torch.tensor([1]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: KME(sigma=0.0),
        lambda: KME(sigma=-1.0),
        lambda: WPSE(sigma=float("nan")),
        lambda: Linear(temperature=0.0),
        lambda: Linear(logit_cap=-1.0),
        lambda: WPSE(kernel="laplace"),
        lambda: WPSE(kernel="imq", rff_features=8, dim=2),
        lambda: WPSE(rff_features=8),
        lambda: Tabular(0, 3),
    ],
)
def test_bad_parameters_raise_input_error(make):
    with pytest.raises(InputError):
        make()


HEADS = {
    "linear": (Linear, "vectors"),
    "wpse": (WPSE, "sets"),
    "wpse-rff": (lambda: WPSE(rff_features=8, dim=3), "sets"),
    "kme": (KME, "sets"),
}
VECTOR_ARGS, SET_ARGS = ("zx", "zy"), ("px", "wx", "py", "wy")


def _inputs(kind: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if kind == "vectors":
        return {"zx": torch.randn(4, 3, generator=g), "zy": torch.randn(4, 3, generator=g)}
    return dict(zip(SET_ARGS, (t.float() for t in _point_sets(4, 4, 2, 2, 3)), strict=True))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("paired", [False, True])
def test_heads_name_the_argument_of_another_dtype(head, paired):
    """Mixed float32/float64 inputs (or an integer or non-tensor input) give an InputError that
    names the odd argument, not a raw torch RuntimeError from inside the head."""
    make, kind = HEADS[head]
    h = make()
    args = _inputs(kind)
    fn = h.paired_logits if paired else h.logit_matrix
    ref = fn(*args.values())  # all float32: fine
    assert ref.dtype == torch.float32
    for name in args:
        for bad, says in (
            (args[name].double(), (name, "float64", "float32", "one dtype")),
            (args[name].long(), (f"{name} must be a floating tensor, got dtype int64",)),
            (args[name].tolist(), (f"{name} must be a torch.Tensor, got list",)),
        ):
            with pytest.raises(InputError) as e:
                fn(*{**args, name: bad}.values())
            assert all(s in str(e.value) for s in says), (says, str(e.value))
    # all float64 together is fine, and equals the float32 result to float32 precision
    wide = fn(*(t.double() for t in args.values()))
    torch.testing.assert_close(wide.float(), ref, rtol=1e-4, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    nx=st.integers(1, 6),
    ny=st.integers(1, 6),
    x=st.lists(st.integers(-3, 8), min_size=1, max_size=6),
    y=st.lists(st.integers(-3, 8), min_size=1, max_size=6),
)
def test_tabular_indexes_outside_the_table_are_named_never_wrapped(nx, ny, x, y):
    """Indexes in [0, n) give table[x][:, y] (numpy indexing of the same table as reference);
    any other index (-1 included, which torch would wrap to the last state) is an InputError
    naming the argument and the valid range."""
    h = Tabular(nx, ny)
    with torch.no_grad():
        h.table.copy_(torch.arange(nx * ny, dtype=torch.float32).view(nx, ny))
    ref = h.table.detach().numpy()
    xt, yt = torch.tensor(x), torch.tensor(y)
    bad_x = any(not 0 <= v < nx for v in x)
    bad_y = any(not 0 <= v < ny for v in y)
    if bad_x or bad_y:
        with pytest.raises(InputError) as e:
            h.logit_matrix(xt, yt)
        name, size = ("x", nx) if bad_x else ("y", ny)
        assert str(e.value).startswith(f"{name} indices must lie in [0, {size - 1}]")
    else:
        assert h.logit_matrix(xt, yt).detach().numpy().tolist() == ref[x][:, y].tolist()
    if len(x) == len(y) and not (bad_x or bad_y):
        assert h.paired_logits(xt, yt).detach().numpy().tolist() == ref[x, y].tolist()
    elif len(x) == len(y):
        with pytest.raises(InputError):
            h.paired_logits(xt, yt)


def test_tabular_rejects_non_index_inputs():
    h = Tabular(3, 3)
    i = torch.tensor([0, 1])
    for bad, says in (
        ([0, 1], "x must be a 1-D torch.Tensor of state indices, got list"),
        (torch.tensor([0.0, 1.0]), "x must hold integer state indices, got dtype float32"),
        (torch.tensor([True, False]), "x must hold integer state indices, got dtype bool"),
        (torch.zeros(2, 1, dtype=torch.long), "x must be a 1-D tensor of state indices"),
    ):
        with pytest.raises(InputError, match=re.escape(says)):
            h.logit_matrix(bad, i)
