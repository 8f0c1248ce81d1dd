"""Task functions the sweeps run: `task(params: dict) -> metrics dict`.

Each trains or samples from plain-text parameters only, with explicit seeds, so a run is
reproducible from its row of the results table. A task knows no claim and no verdict; the
claims (`pmilab.experiments.claims`) decide what the numbers mean.
"""
