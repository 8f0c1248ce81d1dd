"""Spec strings and user table files (the CLI's boundary)."""

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pmilab as pl
from pmilab.errors import InputError


def test_named_specs_build_the_right_distributions():
    d = pl.dists.parse_spec("latent:nx=32,ny=30,k=4,seed=0")
    assert (d.nx, d.ny, d.k) == (32, 30, 4)
    assert np.allclose(
        d.table.numpy(), pl.dists.random_latent_class(32, 30, 4, seed=0).table.numpy()
    )
    g = pl.dists.parse_spec("gaussian:dx=4,dy=4,rho=0.9")
    assert float(g.mutual_information()) == pytest.approx(-0.5 * 4 * np.log(1 - 0.81), abs=1e-12)
    g2 = pl.dists.parse_spec("gaussian:dx=3,dy=2,rho=0.9/0.5")
    assert float(g2.mutual_information()) == pytest.approx(
        -0.5 * (np.log(1 - 0.81) + np.log(0.75)), abs=1e-12
    )
    assert pl.dists.parse_spec("mixture:k=3,dx=2,dy=1,seed=2").k == 3
    assert pl.dists.parse_spec("studentt:dx=1,dy=2,df=3").df == 3.0
    assert float(
        pl.dists.parse_spec("dense:dx=5,dy=5,corr=0.5").mutual_information()
    ) == pytest.approx(0.5928, abs=5e-5)
    t = pl.dists.parse_spec("gaussian:dx=2,dy=2,rho=0.5,transform=spiral")
    assert isinstance(t, pl.dists.Transformed)


def test_table_files(tmp_path):
    t = np.random.default_rng(0).random((5, 4))
    t /= t.sum()
    np.save(tmp_path / "t.npy", t)
    np.savetxt(tmp_path / "t.csv", t, delimiter=",")
    for name in ("t.npy", "t.csv"):
        d = pl.dists.parse_spec(str(tmp_path / name))
        np.testing.assert_allclose(d.table.numpy(), t, atol=1e-15)
    np.save(tmp_path / "u.npy", t * 3)
    with pytest.raises(InputError, match="normalize=True"):
        pl.dists.parse_spec(str(tmp_path / "u.npy"))
    assert pl.dists.parse_spec(str(tmp_path / "u.npy") + "?normalize").table.sum() == pytest.approx(
        1.0
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "non-empty string"),
        ("latent", None),  # all defaults: valid
        ("latent:nx", "malformed parameter 'nx'"),
        ("latent:nx=abc", "nx='abc' of 'latent' must be int"),
        ("latent:nx=4,foo=1", "unknown parameter(s) ['foo']"),
        ("latent:nx=0", "nx must be a positive integer"),
        ("gaussian:dx=2", "needs dy=..."),
        ("gaussian:dx=2,dy=2,rho=1.5", "|rho| < 1"),
        ("gaussian:dx=2,dy=2,rho=0.5,transform=warp", "unknown transform 'warp'"),
        ("latent:transform=spiral", "continuous distributions only"),
        ("banana:x=1", "unknown distribution 'banana'"),
    ],
)
def test_malformed_specs(spec, message):
    if message is None:
        pl.dists.parse_spec(spec)
        return
    with pytest.raises(InputError) as e:
        pl.dists.parse_spec(spec)
    assert message in str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        pl.dists.parse_spec(str(tmp_path / "missing.npy"))
    (tmp_path / "bad.npy").write_bytes(b"not a numpy file")
    with pytest.raises(InputError, match="cannot read table file"):
        pl.dists.parse_spec(str(tmp_path / "bad.npy"))
    (tmp_path / "bad.csv").write_text("0.5,0.5\nabc,0\n")
    with pytest.raises(InputError, match="cannot read table file"):
        pl.dists.parse_spec(str(tmp_path / "bad.csv"))
    (tmp_path / "ragged.csv").write_text("0.5,0.2\n0.3\n")
    with pytest.raises(InputError, match="cannot read table file"):
        pl.dists.parse_spec(str(tmp_path / "ragged.csv"))
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        pl.dists.parse_spec(str(tmp_path / "dir.npy"))
    (tmp_path / "table.txt").write_text("1")
    with pytest.raises(InputError, match=r"must end in \.npy or \.csv"):
        pl.dists.parse_spec(str(tmp_path / "table.txt"))


def test_builtin_distributions():
    b = pl.dists.builtin()
    assert len(b) >= 6
    for d in b.values():
        assert isinstance(d, pl.dists.JointDistribution)


LATENT_KEYS = {"nx": "7", "ny": "5", "k": "3", "seed": "2", "concentration": "0.7"}


@settings(max_examples=40, deadline=None)
@given(
    keys=st.lists(st.sampled_from(sorted(LATENT_KEYS)), min_size=1, max_size=5, unique=True),
    data=st.data(),
)
def test_every_spec_key_counts_once(keys, data):
    """A spec with distinct keys, in any order, builds the same law as the factory called
    directly; repeating any key (even with the same value) is an InputError naming it."""
    keys = data.draw(st.permutations(keys))
    twice = data.draw(st.sampled_from(keys))
    spec = "latent:" + ",".join(f"{k}={LATENT_KEYS[k]}" for k in keys)
    kwargs = {"nx": 32, "ny": 32, "k": 4, "seed": 0, "concentration": 0.5}
    kwargs.update({k: type(kwargs[k])(LATENT_KEYS[k]) for k in keys})
    ref = pl.dists.random_latent_class(
        kwargs["nx"], kwargs["ny"], kwargs["k"], kwargs["concentration"], kwargs["seed"]
    )
    assert torch.equal(pl.dists.parse_spec(spec).table, ref.table)
    with pytest.raises(InputError) as e:
        pl.dists.parse_spec(f"{spec},{twice}={LATENT_KEYS[twice]}")
    assert f"{twice!r} is given twice" in str(e.value) and "'concentration'" in str(e.value)


@pytest.mark.parametrize(
    "query, message",
    [
        ("normalise", "unknown table option 'normalise' in"),
        ("normalise", "valid options: ?normalize, ?drop_empty"),
        ("normalize&Normalize", "unknown table option 'Normalize'"),
        ("", "an empty option"),
        ("normalize&", "an empty option"),
        ("drop_empty&drop_empty", "table option 'drop_empty' is given twice"),
    ],
)
def test_unknown_or_repeated_table_options_are_refused(tmp_path, query, message):
    np.save(tmp_path / "t.npy", np.full((2, 2), 0.25))
    with pytest.raises(InputError) as e:
        pl.dists.parse_spec(f"{tmp_path / 't.npy'}?{query}")
    assert message in str(e.value)


def test_table_options_and_their_keyword_arguments(tmp_path):
    t = np.array([[0.2, 0.0, 0.4], [0.0, 0.0, 0.0], [0.6, 0.0, 0.2]])  # row 1, column 1 empty
    np.save(tmp_path / "t.npy", t)
    path = str(tmp_path / "t.npy")
    want = t[[0, 2]][:, [0, 2]] / t.sum()
    for d in (
        pl.dists.parse_spec(path + "?normalize&drop_empty"),
        pl.dists.parse_spec(path + "?drop_empty&normalize"),
        pl.dists.parse_spec(path + "?drop_empty", normalize=True),
        pl.dists.parse_spec(path, normalize=True, drop_empty=True),
    ):
        np.testing.assert_allclose(d.table.numpy(), want / want.sum(), rtol=0, atol=1e-15)
    with pytest.raises(InputError, match=r"--drop-empty, or SPEC\?drop_empty"):
        pl.dists.parse_spec(path + "?normalize")
    with pytest.raises(InputError, match="apply to .npy/.csv table files only"):
        pl.dists.parse_spec("latent:nx=4?normalize")
    with pytest.raises(InputError, match="normalize apply to .npy/.csv table files only"):
        pl.dists.parse_spec("latent:nx=4", normalize=True)


def test_confusing_files_get_a_message_about_what_they_are(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "blank.csv").write_text("\n\n")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    (tmp_path / "text.npy").write_text("0.5,0.5\n0.0,0.0\n")
    np.save(tmp_path / "complex.npy", np.full((2, 2), 0.25 + 0j))
    np.save(tmp_path / "objects.npy", np.array([[0.5, "a"]], dtype=object), allow_pickle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy or torch warning reaches the user
        for name, says in (
            ("empty.csv", "holds no numbers"),
            ("blank.csv", "holds no numbers"),
            ("empty.npy", "holds no numbers"),
            ("text.npy", "is not a NumPy .npy file (no .npy header)"),
            ("complex.npy", "holds complex numbers (dtype complex128)"),
            ("objects.npy", "Object arrays cannot be loaded"),  # numpy's own words fit
        ):
            with pytest.raises(InputError, match=re.escape(says)):
                pl.dists.parse_spec(str(tmp_path / name))
        for table in (np.full((2, 2), 0.25 + 0j), torch.full((2, 2), 0.25 + 0j), [[0.5 + 0j, 0.5]]):
            with pytest.raises(InputError, match="complex numbers"):
                pl.dists.Discrete(table)
