"""A plugin for pmilab, written as a researcher outside the repository would: a head
(`heads.MixtureHead`) and a joint with exact PMI (`joints.NoisyChannel`), each one file, with
no edit to pmilab. `broken.py` holds a head that breaks the contract (for the tests)."""
