"""A plugin for pmilab, written as a researcher outside the repository would: a head
(`heads.MixtureHead`), a joint with exact PMI (`joints.NoisyChannel`) and a claim (`claim`:
the mixture head reaches PMI), each one file, with no edit to pmilab. `broken.py` holds heads
and a joint that break the contract (for the tests)."""
