"""Spec strings and user table files (the CLI's boundary)."""

import numpy as np
import pytest

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
