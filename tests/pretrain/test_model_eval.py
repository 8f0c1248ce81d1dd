"""Towers, tokenizer, zero-shot mixtures and eval metrics against brute-force references."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.pretrain.evaluate import class_scores, class_text_outputs, pmi_metrics, recall_at
from pmilab.pretrain.model import ModelConfig, build_model
from pmilab.pretrain.tokenizer import encode, load_tokenizer, save_tokenizer, train_tokenizer
from pmilab.runtime.distributed import gather_with_grad, local_infonce

CAPTIONS = ["a red circle", "a big blue square", "the number seven", "a tiny green cross"]


def tiny(sim: str, tower: str = "cnn", vocab: int = 20):
    torch.manual_seed(0)
    cfg = ModelConfig(
        similarity=sim,
        tower=tower,
        vocab=vocab,
        context=8,
        width=16,
        dim=6,
        points=3,
        image_size=16,
    )
    return build_model(cfg).double().eval()


def test_tokenizer_roundtrip_cls_unk_and_truncation(tmp_path):
    tok = train_tokenizer(CAPTIONS)
    save_tokenizer(tok, tmp_path / "tok.json")
    tok2 = load_tokenizer(tmp_path / "tok.json")
    ids, mask = encode(tok, CAPTIONS + ["a purple circle"], context=4)
    ids2, _ = encode(tok2, CAPTIONS + ["a purple circle"], context=4)
    assert torch.equal(ids, ids2)
    assert (ids[:, 0] == tok.token_to_id("[CLS]")).all()
    assert ids[-1, 2].item() == tok.token_to_id("[UNK]")  # "purple" was never seen
    assert ids[0].tolist()[1:] == [tok.token_to_id(w) for w in ("a", "red", "circle")]
    assert mask.sum(1).tolist() == [4, 4, 4, 4, 4]  # [CLS] + 3 words, truncated at 4
    assert torch.equal(encode(tok, ["A RED Circle"], 6)[0], encode(tok, ["a red circle"], 6)[0])


@pytest.mark.parametrize("sim,tower", [("linear", "vit"), ("wpse", "cnn"), ("kme", "vit")])
def test_outputs_are_per_sample_and_padding_invariant(sim, tower):
    """A sample's embedding ignores its batch mates and trailing padding (needed for DDP)."""
    m = tiny(sim, tower)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 16, 16, generator=g, dtype=torch.float64)
    ids = torch.randint(3, 20, (5, 8), generator=g)
    ids[:, 0], ids[:, 5:] = 2, 0
    mask = ids != 0
    batch = m.encode_image(x)
    single = m.encode_image(x[2:3])
    assert all(torch.allclose(b[2:3], s, atol=1e-12) for b, s in zip(batch, single, strict=True))
    t8 = m.encode_text(ids, mask)
    t5 = m.encode_text(ids[:, :5], mask[:, :5])
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(t8, t5, strict=True))
    if sim == "kme":  # log-weights of a probability vector
        assert torch.allclose(batch[1].exp().sum(1), torch.ones(5, dtype=torch.float64))
    if sim != "linear":
        assert torch.allclose(batch[0].norm(dim=-1), torch.ones(5, 3, dtype=torch.float64))


def test_single_process_loss_is_symmetric_infonce_by_brute_force():
    m = tiny("kme")
    g = torch.Generator().manual_seed(2)
    img = (
        torch.randn(4, 3, 6, generator=g, dtype=torch.float64),
        torch.randn(4, 3, generator=g, dtype=torch.float64).log_softmax(-1),
    )
    txt = (
        torch.randn(4, 3, 6, generator=g, dtype=torch.float64),
        torch.randn(4, 3, generator=g, dtype=torch.float64).log_softmax(-1),
    )
    assert gather_with_grad(img[0]) is img[0]
    loss = local_infonce(m.logit_matrix, img, txt)
    lm = m.logit_matrix(*img, *txt).detach()
    ref = 0.0
    for i in range(4):  # the docs/theory.md formula, term by term
        ref += (-lm[i, i] + torch.logsumexp(lm[i], 0)) / 8
        ref += (-lm[i, i] + torch.logsumexp(lm[:, i], 0)) / 8
    assert math.isclose(loss.item(), ref.item(), rel_tol=1e-12)


@pytest.mark.parametrize("sim", ["linear", "wpse", "kme"])
def test_zeroshot_prompt_mixture_is_the_T3_class_score(sim):
    """WPSE: mixture score = mean prompt logit (E_q l); KME: log mean exp l; linear: mean."""
    tok = train_tokenizer(CAPTIONS)
    m = tiny(sim, vocab=tok.get_vocab_size())
    prompts = [["a red circle", "a big blue square", "a tiny green cross"], ["the number seven"]]
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    img = m.encode_image(x.double())
    scores = class_scores(m, img, class_text_outputs(m, tok, prompts))
    for c, ps in enumerate(prompts):
        ids, mask = encode(tok, ps, m.cfg.context)
        per_prompt = m.logit_matrix(*img, *m.encode_text(ids, mask)).detach()  # (6, T)
        if sim == "kme":
            ref = torch.logsumexp(per_prompt, 1) - math.log(len(ps))
        else:
            ref = per_prompt.mean(1)
        assert torch.allclose(scores[:, c], ref, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 12), k=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_recall_at_matches_a_loop(n, k, seed):
    lm = torch.randn(n, n, generator=torch.Generator().manual_seed(seed))
    hits = 0
    for i in range(n):  # rank of the true partner = number of strictly larger entries
        hits += int((lm[i] > lm[i, i]).sum().item() < k)
    assert recall_at(lm, k) == hits / n


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 8), seed=st.integers(0, 10_000), ties=st.booleans())  # 8! orders at most
def test_retrieval_metrics_are_expectations_over_random_tie_breaking(n, seed, ties):
    """Against brute force: every order of the tied entries, enumerated, is equally likely."""
    import itertools

    from pmilab.pretrain.evaluate import retrieval_metrics

    lm = torch.randn(n, n, generator=torch.Generator().manual_seed(seed))
    if ties:
        lm = lm.round()
    res = retrieval_metrics(lm)
    for name, m in (("i2t", lm), ("t2i", lm.T)):
        exp_rank, hits = [], {1: 0.0, 5: 0.0, 10: 0.0}
        for i in range(n):
            above = sum(int(m[i, j] > m[i, i]) for j in range(n))
            tied = [j for j in range(n) if m[i, j] == m[i, i]]  # the partner itself included
            ranks = [1 + above + order.index(i) for order in itertools.permutations(tied)]
            exp_rank.append(sum(ranks) / len(ranks))
            for k in hits:
                hits[k] += sum(r <= k for r in ranks) / len(ranks) / n
        assert res[f"retrieval_mean_rank_{name}"] == pytest.approx(sum(exp_rank) / n)
        assert res[f"retrieval_median_rank_{name}"] == sorted(exp_rank)[(n - 1) // 2]  # lower
        for k in hits:
            assert res[f"retrieval_r{k}_{name}"] == pytest.approx(hits[k])
            if not ties:
                assert res[f"retrieval_r{k}_{name}"] == pytest.approx(recall_at(m, k))
    flat = retrieval_metrics(torch.zeros(n, n))  # a collapsed model scores chance
    assert flat["retrieval_r1_i2t"] == pytest.approx(1 / n)
    assert flat["retrieval_mean_rank_t2i"] == pytest.approx((n + 1) / 2)


def test_pmi_metrics_vanish_for_pmi_plus_constant_and_not_otherwise():
    rng = np.random.default_rng(0)
    pmi = torch.as_tensor(rng.normal(size=(200, 200)))
    exact = pmi_metrics(pmi + 3.0, pmi)
    assert exact["pmi_rmse_product"] < 1e-12 and exact["pmi_rmse_joint"] < 1e-12
    assert exact["pmi_delta"] < 1e-12 and abs(exact["pmi_corr"] - 1) < 1e-12
    blocks = [(pmi + 3.0)[i : i + 100, i : i + 100] for i in (0, 100)]  # two held-out batches
    ref = np.mean(
        [math.log(100) - (torch.logsumexp(b, 1) - b.diagonal()).mean().item() for b in blocks]
    )
    assert math.isclose(exact["mi_infonce"], ref, rel_tol=1e-12)
    noisy = pmi_metrics(pmi + torch.as_tensor(rng.normal(size=(200, 200))), pmi)
    assert abs(noisy["pmi_rmse_product"] - 1.0) < 0.02  # unit-variance residual
    assert abs(noisy["pmi_rmse_constant"] - pmi.std().item()) < 0.01


def test_report_table_puts_runs_side_by_side(tmp_path):
    import json

    from pmilab.pretrain.report import table

    paths = []
    for sim, z in (("linear", 0.5), ("kme", 0.75)):
        p = tmp_path / f"{sim}.json"
        p.write_text(
            json.dumps(
                {
                    "similarity": sim,
                    "zeroshot_top1": z,
                    "zeroshot_chance": 0.0625,
                    "pmi_rmse_product": 2 * z,
                    "pmi_rmse_product_se": 0.01,
                    "n_eval": 10,
                }
            )
        )
        paths.append(p)
    lines = table(paths).splitlines()
    assert lines[0] == "| metric | linear | kme |"
    assert "| zero-shot top-1 | 0.500 | 0.750 |" in lines
    assert "| pmi_rmse_product | 1.000 ± 0.010 | 1.500 ± 0.010 |" in lines


def test_labels_and_templates_files_relabel_the_data():
    from pmilab.errors import InputError
    from pmilab.pretrain.data import ImageText
    from pmilab.pretrain.evaluate import zeroshot_from_files

    data = ImageText(["a", "b", "c"], ["x", "y", "z"], "t", np.array([1, 0, 1]), ["cat", "dog"])
    zeroshot_from_files(data, ["dog", "cat", "bird"], ["a {c}.", "{} here"])
    assert data.labels.tolist() == [0, 1, 0] and data.class_names == ["dog", "cat", "bird"]
    assert data.prompts[2] == ["a bird.", "bird here"]
    idx = ImageText(["a", "b"], ["x", "y"], "t", np.array([2, 0]))  # shards' .cls indices
    zeroshot_from_files(idx, ["zero", "one", "two"], None)
    assert idx.labels.tolist() == [2, 0] and idx.prompts[0] == [
        "a photo of a zero",
        "a picture of a zero",
    ]
    bad = ImageText(["a"], ["x"], "t", np.array([0]), ["emu"])
    with pytest.raises(InputError, match="'emu'"):
        zeroshot_from_files(bad, ["dog"], None)
    with pytest.raises(InputError, match="outside the 1 labels"):
        zeroshot_from_files(ImageText(["a"], ["x"], "t", np.array([3])), ["dog"], None)
